"""Timing code on the local CPU: robust medians, non-negative linear fits, the machine's name.

Used to measure cost tables of CPU work (OnlineDataGen's solver and training steps:
:mod:`schedgym.envs.datagen.calibration` says what is timed; this module says how).
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError

# Environment variables that set the thread count of the BLAS libraries numpy may use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` where there is one)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_description() -> dict[str, Any]:
    """Where and when a measurement ran: CPU, architecture, Python and numpy versions, the
    BLAS thread variables, and the UTC time (ISO 8601, seconds)."""
    return {
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads_env": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "measured_at_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


def median_time_s(work: Callable[[], None], min_time_s: float, repeats: int = 5) -> float:
    """Median over ``repeats`` chunks of the per-call time of ``work`` in seconds; each chunk
    runs at least ``min_time_s / repeats`` seconds (median: robust to a busy machine)."""
    work()  # warm-up: allocations, BLAS initialisation
    chunk_s = min_time_s / repeats
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            work()
        elapsed = time.perf_counter() - start
        if elapsed >= chunk_s or calls >= 1 << 20:
            break
        calls *= 2
    samples = [elapsed / calls]
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        samples.append((time.perf_counter() - start) / calls)
    return float(np.median(samples))


def nonnegative_relative_fit(features: np.ndarray, y: np.ndarray, field: str) -> np.ndarray:
    """Non-negative coefficients ``c`` of ``y ~ features @ c`` minimising relative error.

    Tries every subset of the columns (meant for a handful) and keeps the best fit whose
    coefficients are all non-negative: a tiny exact NNLS, so a cost never goes negative.

    Raises:
        ConfigError: naming ``field`` when no subset has a non-negative fit.
    """
    weighted = features / y[:, None]
    target = np.ones_like(y)
    best: tuple[float, np.ndarray] | None = None
    columns = features.shape[1]
    for subset in range(1, 1 << columns):
        used = [c for c in range(columns) if subset >> c & 1]
        coef, *_ = np.linalg.lstsq(weighted[:, used], target, rcond=None)
        if (coef < 0.0).any():
            continue
        full = np.zeros(columns)
        full[used] = coef
        residual = float(np.sum((weighted @ full - target) ** 2))
        if best is None or residual < best[0]:
            best = (residual, full)
    if best is None:
        raise ConfigError(f"{field}: no non-negative fit of the measured times")
    return best[1]
