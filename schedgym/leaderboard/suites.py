"""Frozen, versioned test suites: (environment, scenario, seeds) with the metric that ranks.

A suite is data, never code that changes with the environments: bump ``version`` whenever a
scenario, seed list or metric changes, so published scores stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from schedgym.core.errors import ConfigError


@dataclass(frozen=True)
class Scenario:
    """One environment configuration of a suite."""

    env_id: str
    name: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """Scenarios x seeds, and the metric each environment is ranked by."""

    name: str
    version: int
    scenarios: tuple[Scenario, ...]
    seeds: tuple[int, ...]
    # env id -> (metric key, True if lower is better)
    ranking_metric: dict[str, tuple[str, bool]]

    def restricted_to(self, env_ids: list[str]) -> Suite:
        """The same suite with only the scenarios of ``env_ids``."""
        scenarios = tuple(s for s in self.scenarios if s.env_id in env_ids)
        if not scenarios:
            raise ConfigError(f"--env: suite {self.name!r} has no scenario for {env_ids}")
        return replace(self, scenarios=scenarios)


SUITES: dict[str, Suite] = {
    "quick": Suite(
        name="quick",
        # 2: the PrefixBatch prefix-heavy / no-sharing and LLMCluster priority-mix presets
        # changed (full-length answers with the shared-prefix kernel; the 16 x A10 testbed).
        version=2,
        scenarios=(
            Scenario("schedgym/SoCDAG-v0", "light", "light"),
            Scenario("schedgym/SoCDAG-v0", "medium", "medium"),
            Scenario("schedgym/SoCDAG-v0", "heavy", "heavy"),
            Scenario("schedgym/LLMCluster-v0", "high-load", "high-load", {"num_requests": 600}),
            Scenario(
                "schedgym/LLMCluster-v0", "priority-mix", "priority-mix", {"num_requests": 600}
            ),
            Scenario("schedgym/MeshAssign-v0", "long-tail-heavy", "long-tail-heavy"),
            Scenario("schedgym/MeshAssign-v0", "uniform-short", "uniform-short"),
            Scenario("schedgym/OnlineDataGen-v0", "small", "small"),
            Scenario("schedgym/PrefillChunk-v0", "strict", "sarathi-strict", {"num_requests": 200}),
            Scenario("schedgym/PrefillChunk-v0", "high-load", "high-load", {"num_requests": 200}),
            Scenario(
                "schedgym/PrefixBatch-v0",
                "prefix-heavy",
                "prefix-heavy",
                {"num_requests": 400, "kv_capacity_blocks": 4000},
            ),
            Scenario(
                "schedgym/PrefixBatch-v0",
                "no-sharing",
                "no-sharing",
                {"num_requests": 400, "kv_capacity_blocks": 4000},
            ),
        ),
        seeds=(1000, 1001),
        ranking_metric={
            "schedgym/SoCDAG-v0": ("mean_job_latency_us", True),
            "schedgym/LLMCluster-v0": ("ttft_p99_s", True),
            "schedgym/MeshAssign-v0": ("step_time_s", True),
            "schedgym/OnlineDataGen-v0": ("val_mse", True),
            # max(p99 TBT / SLO, median scheduling delay / 2 s): Sarathi-Serve's capacity
            # criterion as one number, <= 1 when both hold; it penalises both starving the
            # decodes (TBT) and starving the queue (delay), which p99 TBT alone would not.
            "schedgym/PrefillChunk-v0": ("slo_excess_ratio", True),
            "schedgym/PrefixBatch-v0": ("completion_time_s", True),
        },
    ),
}


def get_suite(name: str) -> Suite:
    """The suite called ``name``."""
    if name not in SUITES:
        raise ConfigError(f"suite: unknown suite {name!r}; known: {sorted(SUITES)}")
    return SUITES[name]
