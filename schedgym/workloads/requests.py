"""A whole request stream: arrival times, lengths and priority classes, as arrays.

:func:`synthetic_stream` combines an arrival process, a length sampler and priority classes,
each drawn from its own generator so that changing one (say, the lengths) leaves the others
unchanged for a seed. :func:`trace_stream` replays a :class:`~schedgym.workloads.traces.Trace`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schedgym.core.config import require_number
from schedgym.workloads.arrivals import arrival_times_s
from schedgym.workloads.priorities import sample_priorities
from schedgym.workloads.request_lengths import LengthSampler
from schedgym.workloads.traces import Trace


@dataclass(frozen=True)
class RequestStream:
    """Requests in arrival order; every array has shape ``(num_requests,)``."""

    arrival_s: np.ndarray  # float64, non-decreasing
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1
    priority: np.ndarray  # int8, 1 = high priority

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.size)


def synthetic_stream(
    rng_arrivals: np.random.Generator,
    rng_lengths: np.random.Generator,
    rng_priorities: np.random.Generator,
    lengths: LengthSampler,
    rate_per_s: float,
    num_requests: int | None = None,
    duration_s: float | None = None,
    process: str = "poisson",
    cv: float = 1.0,
    high_priority_share: float = 0.0,
) -> RequestStream:
    """Arrivals from a Poisson or Gamma process, lengths from ``lengths``, priority classes."""
    arrival = arrival_times_s(rng_arrivals, rate_per_s, num_requests, duration_s, process, cv)
    prompt, output = lengths.sample(rng_lengths, arrival.size)
    priority = sample_priorities(rng_priorities, arrival.size, high_priority_share)
    return RequestStream(arrival, prompt, output, priority)


def trace_stream(
    trace: Trace,
    rng_priorities: np.random.Generator,
    num_requests: int | None = None,
    duration_s: float | None = None,
    high_priority_share: float = 0.0,
    time_scale: float = 1.0,
) -> RequestStream:
    """Replay ``trace`` from its start: the first ``num_requests`` and/or those before
    ``duration_s``; ``time_scale`` < 1 compresses time (a higher rate, same order)."""
    require_number("time_scale", time_scale, 0.0, low_inclusive=False)
    arrival = trace.arrived_at_s * time_scale
    keep = arrival.size
    if duration_s is not None:
        keep = int(np.searchsorted(arrival, duration_s, side="left"))
    if num_requests is not None:
        keep = min(keep, num_requests)
    priority = sample_priorities(rng_priorities, keep, high_priority_share)
    return RequestStream(
        np.array(arrival[:keep], np.float64),
        np.array(trace.prompt_tokens[:keep], np.int64),
        np.array(trace.output_tokens[:keep], np.int64),
        priority,
    )
