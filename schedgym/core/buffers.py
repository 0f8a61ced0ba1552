"""Append-only numpy buffers: compact logs whose memory is the values themselves.

A Python list of floats costs 32 bytes per value (pointer plus float object) and a list of
small arrays or tuples far more; a :class:`GrowingArray` stores 8 bytes per float64 or int64
value and grows by doubling, so appending is amortised O(1) and the values are copied in (no
reference to the caller's array is kept alive).

Appended values (and lists of them) are staged in a short Python list and written to the array
in batches: one numpy assignment per value costs far more than a list append, and a decode step
logs a few values at a time. Every read sees the staged values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Staged values written to the array at once (bounds the Python list's memory).
_STAGE_ROWS = 256


class GrowingArray:
    """An append-only array of ``dtype`` rows of ``width`` values (``width=None``: scalars).

    Args:
        dtype: the numpy dtype of the values.
        width: values per row, or None for a 1-D array.
        initial_rows: capacity allocated up front (grows by doubling).
    """

    def __init__(self, dtype: Any = np.float64, width: int | None = None, initial_rows: int = 64):
        if initial_rows < 1:
            raise ValueError(f"initial_rows: must be >= 1, got {initial_rows}")
        shape = (initial_rows,) if width is None else (initial_rows, width)
        self._data = np.empty(shape, dtype)
        self._size = 0
        self._staged: list[Any] = []  # appended, not yet written to _data

    def __len__(self) -> int:
        return self._size + len(self._staged)

    def _flush(self) -> None:
        """Write the staged values to the array, in order."""
        if self._staged:
            values = np.array(self._staged, self._data.dtype)
            self._staged = []
            self._write(values)

    def _write(self, values: np.ndarray) -> None:
        rows = values.shape[0] if values.ndim else 1
        self._reserve(rows)
        self._data[self._size : self._size + rows] = values
        self._size += rows

    def _reserve(self, rows: int) -> None:
        needed = self._size + rows
        if needed > self._data.shape[0]:
            capacity = max(needed, 2 * self._data.shape[0])
            data = np.empty((capacity, *self._data.shape[1:]), self._data.dtype)
            data[: self._size] = self._data[: self._size]
            self._data = data

    def append(self, value: Any) -> None:
        """Append one value (or one row)."""
        # (A tuple of types: isinstance checks it faster than a union.)
        if isinstance(value, (np.ndarray, list)):
            value = np.array(value, self._data.dtype)  # copied now: the caller may change it
        staged = self._staged
        staged.append(value)
        if len(staged) >= _STAGE_ROWS:
            self._flush()

    def extend(self, values: Any) -> None:
        """Append the rows of ``values`` (copied); a list of scalars is staged like single
        appends."""
        if isinstance(values, list) and self._data.ndim == 1:
            staged = self._staged
            staged.extend(values)
            if len(staged) >= _STAGE_ROWS:
                self._flush()
            return
        self._flush()
        self._write(np.asarray(values, self._data.dtype))

    def view(self) -> np.ndarray:
        """The values so far, as a read-only view (later appends do not change it)."""
        self._flush()
        out = self._data[: self._size]
        out.flags.writeable = False
        return out

    def discard_first(self, rows: int) -> None:
        """Drop the first ``rows`` values (and shrink the allocation to twice what is left)."""
        self._flush()
        rows = min(max(rows, 0), self._size)
        if rows == 0:
            return
        left = self._size - rows
        data = np.empty((max(2 * left, 64), *self._data.shape[1:]), self._data.dtype)
        data[:left] = self._data[rows : self._size]
        self._data = data
        self._size = left

    def copy(self) -> GrowingArray:
        """An independent buffer with the same values."""
        self._flush()
        out = GrowingArray.__new__(GrowingArray)
        out._data = self._data[: max(self._size, 1)].copy()
        out._size = self._size
        out._staged = []
        return out

    @property
    def nbytes(self) -> int:
        """Bytes allocated (capacity, not only the values held)."""
        self._flush()
        return int(self._data.nbytes)
