"""Append-only numpy buffers: compact logs whose memory is the values themselves.

A Python list of floats costs 32 bytes per value (pointer plus float object) and a list of
small arrays or tuples far more; a :class:`GrowingArray` stores 8 bytes per float64 or int64
value and grows by doubling, so appending is amortised O(1) and the values are copied in (no
reference to the caller's array is kept alive).
"""

from __future__ import annotations

from typing import Any

import numpy as np


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

    def __len__(self) -> int:
        return self._size

    def _reserve(self, rows: int) -> None:
        needed = self._size + rows
        if needed > self._data.shape[0]:
            capacity = max(needed, 2 * self._data.shape[0])
            data = np.empty((capacity, *self._data.shape[1:]), self._data.dtype)
            data[: self._size] = self._data[: self._size]
            self._data = data

    def append(self, value: Any) -> None:
        """Append one value (or one row)."""
        self._reserve(1)
        self._data[self._size] = value
        self._size += 1

    def extend(self, values: Any) -> None:
        """Append the rows of ``values`` (copied)."""
        values = np.asarray(values, self._data.dtype)
        rows = values.shape[0] if values.ndim else 1
        self._reserve(rows)
        self._data[self._size : self._size + rows] = values
        self._size += rows

    def view(self) -> np.ndarray:
        """The values so far, as a read-only view (later appends do not change it)."""
        out = self._data[: self._size]
        out.flags.writeable = False
        return out

    def discard_first(self, rows: int) -> None:
        """Drop the first ``rows`` values (and shrink the allocation to twice what is left)."""
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
        out = GrowingArray.__new__(GrowingArray)
        out._data = self._data[: max(self._size, 1)].copy()
        out._size = self._size
        return out

    @property
    def nbytes(self) -> int:
        """Bytes allocated (capacity, not only the values held)."""
        return int(self._data.nbytes)
