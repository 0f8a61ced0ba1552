"""Summary statistics used in episode summaries and the leaderboard."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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
