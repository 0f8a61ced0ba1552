"""Serving capacity as Sarathi-Serve defines it, found by search over the arrival rate.

Capacity is the largest request rate (QPS) at which a policy keeps the p99 time between tokens
within the SLO *and* the median scheduling delay (arrival to first scheduled chunk) at most 2 s
(Agrawal et al., OSDI 2024, Section 5.1). The delay criterion is what rules out overload: past
capacity the queue, and so the median delay, grows without bound.

The search evaluates one or more fixed seeds per rate (the same arrivals and lengths for every
policy and every probe), finds a bracket by doubling or halving from ``start_qps``, then bisects
until the bracket is narrower than ``tolerance`` (relative). A rate is feasible when the mean over
seeds of the p99 TBT and of the median scheduling delay both meet their limits.

It runs policies over episodes of any environment with a ``qps`` field (PrefillChunk today),
so it sits with the evaluation code, above the environments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schedgym.core.config import require_number
from schedgym.core.errors import ConfigError

SCHED_DELAY_LIMIT_S = 2.0  # Sarathi-Serve's median scheduling-delay bound


@dataclass(frozen=True)
class Probe:
    """One evaluated rate."""

    qps: float
    tbt_p99_s: float
    sched_delay_p50_s: float
    feasible: bool


@dataclass
class CapacityResult:
    """The capacity found and every probe on the way, in evaluation order."""

    capacity_qps: float
    slo_tbt_p99_s: float
    sched_delay_limit_s: float
    probes: list[Probe] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity_qps": self.capacity_qps,
            "slo_tbt_p99_s": self.slo_tbt_p99_s,
            "sched_delay_limit_s": self.sched_delay_limit_s,
            "probes": [vars(p) for p in self.probes],
        }


# Metrics of one episode at a rate and seed: the summary with tbt_p99_s and sched_delay_p50_s.
EpisodeFn = Callable[[float, int], Mapping[str, float]]


def search_capacity(
    run: EpisodeFn,
    slo_tbt_p99_s: float,
    seeds: Sequence[int] = (0,),
    start_qps: float = 1.0,
    min_qps: float = 0.01,
    max_qps: float = 1000.0,
    tolerance: float = 0.02,
    sched_delay_limit_s: float = SCHED_DELAY_LIMIT_S,
) -> CapacityResult:
    """Largest feasible QPS, to within ``tolerance`` (relative), by bracketing and bisection.

    Args:
        run: runs one episode at ``(qps, seed)`` and returns its summary.
        slo_tbt_p99_s: the p99 TBT limit, seconds.
        seeds: seeds evaluated at every rate (paired across rates and policies).
        start_qps: first rate probed.
        min_qps / max_qps: the search range; 0 is returned when ``min_qps`` is infeasible and
            ``max_qps`` when it is feasible.
        tolerance: stop when ``(high - low) / low`` is below this.
        sched_delay_limit_s: the median scheduling-delay bound (Sarathi-Serve: 2 s).

    Raises:
        ConfigError: a bad argument (named).
    """
    require_number("slo_tbt_p99_s", slo_tbt_p99_s, 0.0, low_inclusive=False)
    require_number("min_qps", min_qps, 0.0, low_inclusive=False)
    require_number("max_qps", max_qps, min_qps, low_inclusive=False)
    require_number("start_qps", start_qps, min_qps, max_qps)
    require_number("tolerance", tolerance, 1e-4, 1.0)
    require_number("sched_delay_limit_s", sched_delay_limit_s, 0.0, low_inclusive=False)
    if not seeds:
        raise ConfigError("seeds: need at least one seed")
    result = CapacityResult(0.0, slo_tbt_p99_s, sched_delay_limit_s)

    def feasible(qps: float) -> bool:
        tbt, delay = [], []
        for seed in seeds:
            summary = run(qps, seed)
            tbt.append(float(summary["tbt_p99_s"]))
            delay.append(float(summary["sched_delay_p50_s"]))
        # A run with no token gaps at all (every output one token long) has a nan p99; it
        # cannot violate the TBT SLO.
        tbt_mean = _nanmean(tbt)
        delay_mean = _nanmean(delay)
        ok = (math.isnan(tbt_mean) or tbt_mean <= slo_tbt_p99_s) and (
            math.isnan(delay_mean) or delay_mean <= sched_delay_limit_s
        )
        result.probes.append(Probe(qps, tbt_mean, delay_mean, ok))
        return ok

    qps = start_qps
    if feasible(qps):
        low, high = qps, math.inf
        while high == math.inf:
            if low >= max_qps:
                result.capacity_qps = max_qps
                return result
            qps = min(low * 2.0, max_qps)
            if feasible(qps):
                low = qps
            else:
                high = qps
    else:
        low, high = 0.0, qps
        while low == 0.0:
            if high <= min_qps:
                return result
            qps = max(high / 2.0, min_qps)
            if feasible(qps):
                low = qps
            else:
                high = qps
    while (high - low) / low > tolerance:
        qps = 0.5 * (low + high)
        if feasible(qps):
            low = qps
        else:
            high = qps
    result.capacity_qps = low
    return result


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def env_episode_fn(
    env_id: str,
    policy_name: str,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EpisodeFn:
    """An :data:`EpisodeFn` that runs a registered policy on ``env_id`` with its arrival rate
    (``request_rate_per_s``) set to the probed rate."""
    import gymnasium as gym

    from schedgym.core.policy import make_policy
    from schedgym.core.rollout import run_episode

    policy = make_policy(env_id, policy_name)
    base: dict[str, Any] = dict(overrides or {})
    if "request_rate_per_s" in base:
        raise ConfigError("request_rate_per_s: set by the capacity search; do not override it")
    if preset is not None:
        base["preset"] = preset

    def run(qps: float, seed: int) -> Mapping[str, float]:
        env = gym.make(env_id, **{"disable_env_checker": True, **base, "request_rate_per_s": qps})
        try:
            return run_episode(env, policy, seed).metrics
        finally:
            env.close()

    return run
