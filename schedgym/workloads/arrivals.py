"""Arrival processes: when requests reach the system, in seconds from the start.

Poisson arrivals have exponential inter-arrival times (coefficient of variation 1); Gamma arrivals
keep the mean rate and set the coefficient of variation (CV) of the inter-arrival times, which is
how serving papers (Llumnix, AlpaServe) make traffic burstier than Poisson: CV 4 is very bursty.
Every function draws from the generator it is given, never from global state.
"""

from __future__ import annotations

import numpy as np

from schedgym.core.config import require_choice, require_number
from schedgym.core.errors import ConfigError

ARRIVAL_PROCESSES = ("poisson", "gamma")
# Latest arrival a simulation accepts (s, about 31.7 years): beyond ~1e14 s a 50 ms migration
# tick or a millisecond iteration no longer advances a float64 clock, and an episode would spin.
MAX_ARRIVAL_TIME_S = 1e9


def interarrival_times_s(
    rng: np.random.Generator,
    num_requests: int,
    rate_per_s: float,
    process: str = "poisson",
    cv: float = 1.0,
) -> np.ndarray:
    """``(num_requests,)`` inter-arrival gaps in seconds, mean ``1 / rate_per_s``.

    Args:
        rng: the stream to draw from.
        num_requests: how many gaps.
        rate_per_s: mean arrival rate, requests per second.
        process: ``poisson`` (exponential gaps) or ``gamma`` (Gamma gaps with the given CV).
        cv: coefficient of variation of the gaps, for ``gamma`` (``poisson`` is CV 1).

    Raises:
        ConfigError: a field out of range.
    """
    require_number("num_requests", num_requests, 0, integer=True)
    require_number("rate_per_s", rate_per_s, 0.0, low_inclusive=False)
    require_choice("arrival_process", process, ARRIVAL_PROCESSES)
    if process == "poisson":
        return rng.exponential(1.0 / rate_per_s, size=num_requests)
    require_number("arrival_cv", cv, 0.0, 100.0, low_inclusive=False)
    # Gamma(shape k, scale theta): mean k*theta = 1/rate, CV = 1/sqrt(k).
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / (rate_per_s * shape), size=num_requests)


def arrival_times_s(
    rng: np.random.Generator,
    rate_per_s: float,
    num_requests: int | None = None,
    duration_s: float | None = None,
    process: str = "poisson",
    cv: float = 1.0,
) -> np.ndarray:
    """Sorted arrival times (s): the first at 0, then cumulative gaps.

    Give ``num_requests`` (exactly that many arrivals) or ``duration_s`` (every arrival before
    that time), or both (whichever ends first).

    Raises:
        ConfigError: neither limit given, or a field out of range.
    """
    if num_requests is None and duration_s is None:
        require_number("num_requests", num_requests)  # raises: one limit is needed
    if duration_s is not None:
        require_number("duration_s", duration_s, 0.0, low_inclusive=False)
    if num_requests is not None:
        require_number("num_requests", num_requests, 1, integer=True)
        gaps = interarrival_times_s(rng, num_requests - 1, rate_per_s, process, cv)
        times = np.concatenate(([0.0], np.cumsum(gaps)))
        if duration_s is not None:
            times = times[times < duration_s]
        if not times[-1] <= MAX_ARRIVAL_TIME_S:
            raise ConfigError(
                f"request_rate_per_s: at {rate_per_s:g} req/s ({process}) the last of "
                f"{num_requests} arrivals would come at {times[-1]:.3g} s, beyond the "
                f"{MAX_ARRIVAL_TIME_S:g} s a simulation resolves; raise the rate, or set "
                "duration_s or fewer num_requests"
            )
        return times
    assert duration_s is not None
    chunks = [np.zeros(1)]
    last = 0.0
    # Draw in chunks of about the expected count until the duration is covered.
    chunk = max(16, int(rate_per_s * duration_s * 1.1) + 16)
    while last < duration_s:
        gaps = interarrival_times_s(rng, chunk, rate_per_s, process, cv)
        times = last + np.cumsum(gaps)
        chunks.append(times)
        last = float(times[-1])
    times = np.concatenate(chunks)
    return times[times < duration_s]
