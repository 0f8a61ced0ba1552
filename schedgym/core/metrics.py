"""Summary statistics used in episode summaries and the leaderboard."""

from __future__ import annotations

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
