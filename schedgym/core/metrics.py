"""Summary statistics used in episode summaries and the leaderboard."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from schedgym.core.buffers import GrowingArray


def mean(values: Sequence[float] | np.ndarray) -> float:
    """Arithmetic mean; ``nan`` for an empty sample (never a warning)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation); ``nan`` for an empty sample."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q: must be in [0, 100], got {q}")
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def percentile_of_counts(
    values: Sequence[float] | np.ndarray, counts: Sequence[int] | np.ndarray, q: float
) -> float:
    """:func:`percentile` of the sample holding ``counts[i]`` copies of ``values[i]``, bit for
    bit, without building that sample (memory O(len(values)), not O(sum(counts))).

    It follows numpy's ``linear`` method step by step: virtual index ``(n - 1) * q / 100``,
    its floor and the next order statistic (both the last one at or above ``n - 1``, where
    numpy's weight becomes ``virtual + 1``), then numpy's two-sided lerp; a nan in the sample
    gives nan. ``tests/core/test_core.py`` checks it against ``np.percentile`` of the
    expanded sample."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q: must be in [0, 100], got {q}")
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if values.shape != counts.shape:
        raise ValueError(f"counts: shape {counts.shape} differs from values' {values.shape}")
    if (counts < 0).any():
        raise ValueError("counts: must be >= 0")
    present = counts > 0
    values, counts = values[present], counts[present]
    n = int(counts.sum())
    if n == 0:
        return float("nan")
    if np.isnan(values).any():
        return float("nan")
    order = np.argsort(values, kind="stable")
    values = values[order]
    ends = np.cumsum(counts[order])  # ends[i]: sorted positions below which values[:i+1] lie

    def order_statistic(k: int) -> float:
        return float(values[int(np.searchsorted(ends, k, side="right"))])

    virtual = (n - 1) * float(np.true_divide(q, 100))
    if virtual >= n - 1:
        previous_index = next_index = -1
        low = high = order_statistic(n - 1)
    else:
        previous_index = math.floor(virtual)
        next_index = previous_index + 1
        low, high = order_statistic(previous_index), order_statistic(next_index)
    gamma = virtual - previous_index
    diff = high - low
    return high - diff * (1 - gamma) if gamma >= 0.5 else low + diff * gamma


class QuantileSketch:
    """Weighted quantiles of positive values in bounded memory, with a stated relative error.

    Values fall into logarithmically spaced buckets (DDSketch's mapping, Masson et al., VLDB
    2019): bucket ``j`` holds ``(gamma**(j-1), gamma**j]`` with ``gamma = (1 + a) / (1 - a)``
    and stands for ``2 gamma**j / (gamma + 1)``, which is within relative error ``a`` of every
    value in it. :meth:`percentile` follows numpy's ``linear`` method on those stand-ins, so it
    is within relative error ``a`` of ``np.percentile`` of the whole sample. Values at or below
    ``min_value`` (zero included) count as ``0.0``; values above ``max_value`` as ``max_value``
    (``clamped`` counts them). Memory: ``log(max_value / min_value) / log(gamma)`` counters
    (13,800 for the defaults: 110 KB), whatever the number of values.

    Args:
        relative_accuracy: ``a``, in (0, 0.5).
        min_value: smallest value told apart from zero.
        max_value: largest value told apart from each other.
    """

    def __init__(
        self, relative_accuracy: float = 1e-3, min_value: float = 1e-6, max_value: float = 1e6
    ) -> None:
        if not 0.0 < relative_accuracy < 0.5:
            raise ValueError(f"relative_accuracy: must be in (0, 0.5), got {relative_accuracy}")
        if not 0.0 < min_value < max_value < math.inf:
            raise ValueError(f"min_value, max_value: need 0 < min < max < inf, got {min_value}, "
                             f"{max_value}")  # fmt: skip
        self.relative_accuracy = relative_accuracy
        self.min_value = min_value
        self.max_value = max_value
        gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(gamma)
        self._gamma = gamma
        self._first = math.ceil(math.log(min_value) / self._log_gamma)
        last = math.ceil(math.log(max_value) / self._log_gamma)
        self._counts = np.zeros(last - self._first + 1, np.float64)  # exact below 2**53
        self.zero_count = 0
        self.clamped = 0
        self.count = 0
        self.has_nan = False

    def add(self, values: Sequence[float] | np.ndarray, counts: Any = None) -> None:
        """Add ``values``, each ``counts[i]`` times (once when ``counts`` is None)."""
        v = np.asarray(values, np.float64).ravel()
        c = np.ones(v.size, np.int64) if counts is None else np.asarray(counts, np.int64).ravel()
        if c.shape != v.shape:
            raise ValueError(f"counts: shape {c.shape} differs from values' {v.shape}")
        if (c < 0).any():
            raise ValueError("counts: must be >= 0")
        if np.isnan(v).any():
            self.has_nan = True
        if (v < 0).any():
            raise ValueError("values: must be >= 0 (a QuantileSketch holds durations)")
        small = v <= self.min_value
        self.zero_count += int(c[small].sum())
        big = v > self.max_value
        self.clamped += int(c[big].sum())
        rest = ~small & ~np.isnan(v)
        index = np.ceil(np.log(np.minimum(v[rest], self.max_value)) / self._log_gamma)
        index = np.clip(index.astype(np.int64) - self._first, 0, self._counts.size - 1)
        self._counts += np.bincount(index, weights=c[rest], minlength=self._counts.size)
        self.count += int(c.sum())

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of ``other`` (built with the same parameters)."""
        if (other.relative_accuracy, other.min_value, other.max_value) != (
            self.relative_accuracy, self.min_value, self.max_value):  # fmt: skip
            raise ValueError("merge: sketches with different parameters")
        self._counts += other._counts
        self.zero_count += other.zero_count
        self.clamped += other.clamped
        self.count += other.count
        self.has_nan |= other.has_nan

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) within relative error ``relative_accuracy``; nan
        for an empty sketch or one holding a nan (as numpy)."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"q: must be in [0, 100], got {q}")
        if self.count == 0 or self.has_nan:
            return float("nan")
        ends = self.zero_count + np.cumsum(self._counts)

        def order_statistic(k: int) -> float:
            if k < self.zero_count:
                return 0.0
            bucket = int(np.searchsorted(ends, k, side="right"))
            return 2.0 * self._gamma ** (bucket + self._first) / (self._gamma + 1.0)

        n = self.count
        virtual = (n - 1) * q / 100.0
        low_index = min(math.floor(virtual), n - 1)
        low = order_statistic(low_index)
        high = order_statistic(min(low_index + 1, n - 1))
        return low + (high - low) * (virtual - low_index)

    def __deepcopy__(self, memo: dict[int, Any]) -> QuantileSketch:
        out = copy.copy(self)
        out._counts = self._counts.copy()
        return out


class BoundedSample:
    """A sample whose percentiles are exact while it is small and bounded in memory after.

    The first ``exact_limit`` values are kept as they are (8 bytes each), so percentiles are
    numpy's, bit for bit; past that, every value moves into a :class:`QuantileSketch` and
    percentiles carry its relative error (``relative_accuracy``). ``exact`` says which.
    """

    def __init__(self, exact_limit: int, relative_accuracy: float = 1e-3) -> None:
        if exact_limit < 0:
            raise ValueError(f"exact_limit: must be >= 0, got {exact_limit}")
        self.exact_limit = exact_limit
        self.relative_accuracy = relative_accuracy
        self._values: GrowingArray | None = GrowingArray(np.float64)
        self.sketch: QuantileSketch | None = None

    @property
    def exact(self) -> bool:
        return self.sketch is None

    def __len__(self) -> int:
        return len(self._values) if self._values is not None else self.sketch.count  # type: ignore[union-attr]

    def extend(self, values: Sequence[float] | np.ndarray) -> None:
        """Add ``values``."""
        if self._values is not None:
            self._values.extend(values)
            if len(self._values) <= self.exact_limit:
                return
            self.sketch = QuantileSketch(self.relative_accuracy)
            self.sketch.add(self._values.view())
            self._values = None
            return
        assert self.sketch is not None
        self.sketch.add(values)

    def percentile(self, q: float) -> float:
        """:func:`percentile` of the values (exact, or within the sketch's relative error)."""
        if self._values is not None:
            return percentile(self._values.view(), q)
        assert self.sketch is not None
        return self.sketch.percentile(q)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    confidence: float = 0.95,
    num_resamples: int = 2000,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean.

    Args:
        values: the sample (e.g. one metric over seeds).
        rng: generator for the resampling, so reports are reproducible.
        confidence: coverage of the interval, in (0, 1).
        num_resamples: bootstrap resamples.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for an empty sample and ``(x, x)`` for a single value.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    idx = rng.integers(0, arr.size, size=(num_resamples, arr.size))
    means = arr[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_difference_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    confidence: float = 0.95,
    num_resamples: int = 2000,
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired samples (same seeds) with its bootstrap CI."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    low, high = bootstrap_ci(diff, rng, confidence, num_resamples)
    return mean(diff), low, high
