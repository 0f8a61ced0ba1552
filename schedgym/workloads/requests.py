"""A whole request stream: arrival times, lengths and priority classes, as arrays.

:func:`synthetic_stream` combines an arrival process, a length sampler and priority classes,
each drawn from its own generator so that changing one (say, the lengths) leaves the others
unchanged for a seed. :func:`trace_stream` replays a :class:`~schedgym.workloads.traces.Trace`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schedgym.core.config import require_number
from schedgym.core.errors import ConfigError
from schedgym.core.generator import FrozenInstance, frozen_array
from schedgym.workloads.arrivals import arrival_times_s
from schedgym.workloads.priorities import sample_priorities
from schedgym.workloads.request_lengths import LengthSampler
from schedgym.workloads.traces import Trace


@dataclass(frozen=True, eq=False)
class RequestStream(FrozenInstance):
    """Requests in arrival order; every array has shape ``(num_requests,)``.

    The episode instance of the serving environments (an LLM request's whole workload: when it
    arrives, its prompt, how many tokens it will generate, its priority class). Immutable: the
    arrays are read-only and copies share them.
    """

    arrival_s: np.ndarray  # float64, non-decreasing, >= 0
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1
    priority: np.ndarray  # int8, 1 = high priority, 0 = normal

    def __post_init__(self) -> None:
        size = len(self.arrival_s)
        arrays = {
            "arrival_s": frozen_array(self.arrival_s, np.float64, "instance.arrival_s", (None,)),
            "prompt_tokens": frozen_array(
                self.prompt_tokens, np.int64, "instance.prompt_tokens", (size,)
            ),
            "output_tokens": frozen_array(
                self.output_tokens, np.int64, "instance.output_tokens", (size,)
            ),
            "priority": frozen_array(self.priority, np.int8, "instance.priority", (size,)),
        }
        arrival = arrays["arrival_s"]
        if size and (arrival[0] < 0.0 or (np.diff(arrival) < 0.0).any()):
            raise ConfigError("instance.arrival_s: must be non-negative and non-decreasing")
        for name in ("prompt_tokens", "output_tokens"):
            if size and arrays[name].min() < 1:
                raise ConfigError(f"instance.{name}: every request needs at least 1 token")
        if size and not np.isin(arrays["priority"], (0, 1)).all():
            raise ConfigError("instance.priority: must be 0 (normal) or 1 (high)")
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

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
