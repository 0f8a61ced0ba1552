"""Fitting the NCCL latency-bandwidth laws to Vidur's measured medians, and their error report.

Each measured curve (collective, GPU, workers, GPUs per node) is split into at most three
message-size regimes at power-of-two sizes (NCCL switches protocol and algorithm with size, so
one ``alpha + size / beta`` law does not span the whole range) and each regime gets its own law.
The fit minimises the sum of absolute log errors (a median fit): the medians of three runs are
bimodal at small sizes on some curves (7 us or 40 us for the same message on H100 x2), and a
median fit follows the mode most sizes show instead of averaging the two. Breakpoints are chosen
by the same cost plus a fixed penalty per extra regime, so a regime is only added when it pays.

The runtime reads the shipped laws (``data/nccl_alpha_beta.json``); regenerate them with::

    python -m schedgym.costmodels.calibration.nccl_fit
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from schedgym.costmodels.network import (
    LAWS_FILE,
    AlphaBetaRegime,
    CollectiveCurve,
    CollectiveLaw,
    measured_curves,
    smooth_log_times,
)

FloatArray = NDArray[np.float64]
# Candidate regime boundaries: 64 KiB .. 16 MiB, one per octave.
BREAKPOINTS_BYTES = tuple(2.0**k for k in range(16, 25))
MAX_EXTRA_REGIMES = 2
# Cost (sum of |log error|) an extra regime must save to be kept: about 1.4% mean error on a
# 140-point curve.
REGIME_PENALTY = 2.0
MIN_POINTS_PER_REGIME = 10
HOLDOUT_EVERY = 5
# Collectives whose run-time times come from the laws; the others interpolate their medians.
LAW_COLLECTIVES = ("all_reduce",)


def fit_law(sizes: FloatArray, times: FloatArray, iterations: int = 20) -> tuple[float, float]:
    """Median fit of ``time = alpha + size * inverse_bandwidth`` (both >= 0).

    Iteratively reweighted least squares on the relative residual ``r = predicted/measured - 1``
    with weights ``|log(1 + r)| / r**2``, which minimises the sum of absolute log errors.

    Returns:
        ``(alpha_s, seconds_per_byte)``.
    """
    u, v = 1.0 / times, sizes / times
    weights = np.ones_like(times)
    alpha = inverse = 0.0
    for _ in range(iterations):
        suu, suv, svv = (weights * u * u).sum(), (weights * u * v).sum(), (weights * v * v).sum()
        su, sv = (weights * u).sum(), (weights * v).sum()
        det = suu * svv - suv * suv
        if det <= 0.0:
            break
        alpha = (su * svv - sv * suv) / det
        inverse = (sv * suu - su * suv) / det
        # A negative term is not physical: drop it and fit the other one alone (median).
        if alpha < 0.0:
            alpha, inverse = 0.0, float(np.exp(np.median(np.log(times / sizes))))
        if inverse < 0.0:
            alpha, inverse = float(np.exp(np.median(np.log(times)))), 0.0
        residual = alpha * u + inverse * v - 1.0
        log_error = np.abs(np.log(np.maximum(residual + 1.0, 1e-12)))
        weights = np.maximum(log_error, 1e-3) / np.maximum(residual * residual, 1e-6)
    return float(alpha), float(inverse)


def _log_cost(sizes: FloatArray, times: FloatArray, law: tuple[float, float]) -> float:
    predicted = np.maximum(law[0] + sizes * law[1], 1e-12)
    return float(np.abs(np.log(predicted / times)).sum())


def fit_regimes(sizes: FloatArray, times: FloatArray) -> tuple[AlphaBetaRegime, ...]:
    """The regime laws of one curve (breakpoints chosen by penalised median-fit cost)."""
    edges = [0.0, *BREAKPOINTS_BYTES, math.inf]
    # Fit every interval between two candidate edges once; a split is a chain of intervals.
    fits: dict[tuple[int, int], tuple[float, tuple[float, float]] | None] = {}
    for lo, hi in itertools.combinations(range(len(edges)), 2):
        inside = (sizes >= edges[lo]) & (sizes < edges[hi])
        if inside.sum() < MIN_POINTS_PER_REGIME:
            fits[lo, hi] = None
            continue
        law = fit_law(sizes[inside], times[inside])
        fits[lo, hi] = (_log_cost(sizes[inside], times[inside], law), law)
    best: tuple[float, list[tuple[int, tuple[float, float]]]] | None = None
    inner = range(1, len(edges) - 1)
    for extra in range(MAX_EXTRA_REGIMES + 1):
        for cuts in itertools.combinations(inner, extra):
            chain = [0, *cuts, len(edges) - 1]
            total = REGIME_PENALTY * extra
            laws = []
            for lo, hi in itertools.pairwise(chain):
                fitted = fits[lo, hi]
                if fitted is None:
                    break
                total += fitted[0]
                laws.append((lo, fitted[1]))
            else:
                if best is None or total < best[0]:
                    best = (total, laws)
    if best is None:  # too few points to split at all: one law over everything
        return (AlphaBetaRegime(0.0, *fit_law(sizes, times)),)
    return tuple(AlphaBetaRegime(edges[lo], alpha, inverse) for lo, (alpha, inverse) in best[1])


def fit_curve(curve: CollectiveCurve) -> CollectiveLaw:
    """The regime laws of a measured curve (every size used)."""
    regimes = fit_regimes(np.exp(curve.log_size), np.exp(curve.log_time))
    return CollectiveLaw(
        curve.collective, curve.gpu, curve.num_workers, curve.devices_per_node, regimes
    )


def fit_all() -> list[CollectiveLaw]:
    """Laws for every shipped all-reduce curve (send/recv stays interpolated at run time)."""
    return [fit_curve(curve) for curve in measured_curves() if curve.collective in LAW_COLLECTIVES]


def laws_to_json(laws: list[CollectiveLaw]) -> str:
    """Serialises laws as the shipped ``nccl_alpha_beta.json``."""
    payload = {
        "about": "Piecewise latency-bandwidth laws of Vidur's NCCL all-reduce medians "
        "(data/nccl.csv), fitted by schedgym.costmodels.calibration.nccl_fit: "
        "time = alpha_s + size_bytes * seconds_per_byte within a regime starting at lower_bytes.",
        "curves": [law.to_dict() for law in laws],
    }
    return json.dumps(payload, indent=1)


def save_laws(path: str | Path) -> None:
    """Refits every curve and writes the laws (JSON)."""
    Path(path).write_text(laws_to_json(fit_all()) + "\n")


@dataclass(frozen=True)
class NetworkErrorRow:
    """Errors of one curve's law against the measured medians, percent."""

    collective: str
    gpu: str
    num_workers: int
    devices_per_node: int
    runtime: str  # the method the cost model uses for this curve: "laws" or "interpolation"
    regimes: int
    points: int
    held_out_mape_pct: float
    held_out_max_ape_pct: float
    held_out_median_ape_pct: float
    interpolation_mape_pct: float
    in_sample_mape_pct: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON (rounded)."""
        return {
            key: round(value, 2) if isinstance(value, float) else value
            for key, value in self.__dict__.items()
        }


def holdout_errors(every: int = HOLDOUT_EVERY) -> list[NetworkErrorRow]:
    """Held-out error of the regime laws on every measured curve (``runtime`` says whether the
    cost model uses them or the interpolation for that curve).

    Every ``every``-th size is removed, the laws are refitted on the rest and predict it. The
    same held-out points are also predicted by the previous method (log-log interpolation of the
    running median of the remaining medians), for comparison. ``in_sample`` is the shipped fit
    against every point.
    """
    rows = []
    for curve in measured_curves():
        sizes, times = np.exp(curve.log_size), np.exp(curve.log_time)
        held = np.zeros(sizes.size, bool)
        held[every - 1 :: every] = True
        held[-1] = False  # the largest size anchors extrapolation
        train = CollectiveLaw(
            curve.collective,
            curve.gpu,
            curve.num_workers,
            curve.devices_per_node,
            fit_regimes(sizes[~held], times[~held]),
        )
        errors = np.abs(train.times_s(sizes[held]) / times[held] - 1.0) * 100.0
        interpolated = np.exp(
            np.interp(
                curve.log_size[held], curve.log_size[~held], smooth_log_times(curve.log_time[~held])
            )
        )
        full = fit_curve(curve)
        in_sample = np.abs(full.times_s(sizes) / times - 1.0) * 100.0
        rows.append(
            NetworkErrorRow(
                curve.collective,
                curve.gpu,
                curve.num_workers,
                curve.devices_per_node,
                "laws" if curve.collective in LAW_COLLECTIVES else "interpolation",
                len(full.regimes),
                int(errors.size),
                float(errors.mean()),
                float(errors.max()),
                float(np.median(errors)),
                float(np.mean(np.abs(interpolated / times[held] - 1.0)) * 100.0),
                float(in_sample.mean()),
            )
        )
    return rows


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    target = Path(__file__).parent.parent / "data" / LAWS_FILE
    save_laws(target)
    print(f"wrote {target}")
