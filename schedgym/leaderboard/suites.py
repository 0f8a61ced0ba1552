"""Frozen, versioned test suites: scenarios x test seeds, and the metric each environment ranks by.

A suite is data, never code that changes with the environments. Every (name, version) pair is
frozen by a digest of its content, the resolved environment configs included
(``FROZEN_DIGESTS``): a run refuses a suite whose scenarios, seeds, metrics, presets or config
defaults changed since it was published, and rows carry the digest they were made under, so
published scores stay comparable to their own version. Old versions stay registered.

Seeds are split by construction: every suite's test seeds lie in ``TEST_SEED_RANGE``, and
:func:`validation_seeds` (what training code tunes and early-stops on) only returns seeds from
``VALIDATION_SEED_RANGE``; the two ranges do not overlap, and a suite with a seed outside its
range cannot be built.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from schedgym.core.errors import ConfigError

# Test seeds of every suite, and the seeds training may validate on: disjoint ranges.
# (The training package counts validation seeds from 10_000_000 too: the same seeds.)
TEST_SEED_RANGE = range(0, 10_000_000)
VALIDATION_SEED_RANGE = range(10_000_000, 20_000_000)
MAX_VALIDATION_SEEDS = 100_000


@dataclass(frozen=True)
class Scenario:
    """One environment configuration of a suite: a preset plus config overrides."""

    env_id: str
    name: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make(self.env_id, **kwargs)``."""
        kwargs: dict[str, Any] = dict(self.overrides)
        if self.preset is not None:
            kwargs["preset"] = self.preset
        return kwargs


def resolved_config(scenario: Scenario) -> dict[str, Any]:
    """Every config field of the scenario's environment after its preset and overrides, under
    the field names of today."""
    import dataclasses
    import importlib

    from schedgym.core.config import resolve_config
    from schedgym.registration import env_entry

    module_name, _, class_name = env_entry(scenario.env_id).entry_point.partition(":")
    env_class = getattr(importlib.import_module(module_name), class_name)
    config = resolve_config(
        env_class.config_class, env_class.presets, None, scenario.preset, dict(scenario.overrides)
    )
    return dataclasses.asdict(config)


def digested_config(scenario: Scenario) -> dict[str, Any]:
    """:func:`resolved_config` as the suite digests were published: renamed fields under their
    names at publication (:data:`DIGEST_FIELD_NAMES`), and fields added since left out while
    they hold the value that reproduces the published behaviour (:data:`DIGEST_ADDED_FIELDS`)."""
    config = resolved_config(scenario)
    for name, unchanged in DIGEST_ADDED_FIELDS.get(scenario.env_id, {}).items():
        # Compared by type too: 0 == False, but a knob set to 0 is not the published default.
        value = config[name]
        if type(value) is type(unchanged) and value == unchanged:
            del config[name]
    names = DIGEST_FIELD_NAMES.get(scenario.env_id, {})
    return {names.get(name, name): value for name, value in config.items()}


@dataclass(frozen=True)
class PrimaryMetric:
    """How one environment is ranked: a summary key, its direction, unit and reference policy.

    Scores are normalised to ``reference`` (the papers' simplest baseline), so a score above 1
    means better than the reference, whatever the metric's direction.
    """

    key: str
    lower_is_better: bool
    unit: str
    reference: str


@dataclass(frozen=True)
class Suite:
    """Scenarios x seeds (paired: every policy runs every scenario on every seed)."""

    name: str
    version: int
    scenarios: tuple[Scenario, ...]
    seeds: tuple[int, ...]
    metrics: dict[str, PrimaryMetric]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"suite {self.name!r}: seeds must be distinct and non-empty")
        outside = [s for s in self.seeds if s not in TEST_SEED_RANGE]
        if outside:
            raise ConfigError(
                f"suite {self.name!r}: test seeds must lie in [{TEST_SEED_RANGE.start}, "
                f"{TEST_SEED_RANGE.stop}), got {outside}"
            )
        names = [(s.env_id, s.name) for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ConfigError(f"suite {self.name!r}: scenario names repeat within an environment")
        missing = {s.env_id for s in self.scenarios} - set(self.metrics)
        if missing:
            raise ConfigError(f"suite {self.name!r}: no primary metric for {sorted(missing)}")

    @property
    def env_ids(self) -> list[str]:
        """The suite's environments, in scenario order."""
        return list(dict.fromkeys(s.env_id for s in self.scenarios))

    def scenario(self, env_id: str, name: str) -> Scenario:
        """The scenario ``name`` of ``env_id``."""
        for scenario in self.scenarios:
            if scenario.env_id == env_id and scenario.name == name:
                return scenario
        raise ConfigError(f"scenario: suite {self.name!r} v{self.version} has no {env_id}/{name}")

    def digest(self) -> str:
        """A short hash of the suite's content: scenarios with their resolved environment
        configs (so a changed preset or default changes it too), seeds and metrics."""
        content = {
            "scenarios": [
                [s.env_id, s.name, s.preset, sorted(s.overrides.items()), digested_config(s)]
                for s in self.scenarios
            ],
            "seeds": list(self.seeds),
            "metrics": {k: list(vars(m).values()) for k, m in sorted(self.metrics.items())},
        }
        text = json.dumps(content, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def check_frozen(self) -> None:
        """Raise unless the suite (and its environments' configs) is as it was published.

        Raises:
            ConfigError: when the digest differs from ``FROZEN_DIGESTS``: a suite whose
                scenarios, seeds, metrics or resolved environment configs changed must be
                published as a new version, so that old results stay comparable to their own.
        """
        frozen = FROZEN_DIGESTS.get((self.name, self.version))
        if frozen != self.digest():
            raise ConfigError(
                f"--suite: suite {self.name!r} v{self.version} is not as published (digest "
                f"{self.digest()}, frozen {frozen}): its scenarios or the environments' configs "
                "changed; publish a new version in schedgym/leaderboard/suites.py"
            )

    def restricted_to(self, env_ids: list[str]) -> Suite:
        """The same suite (same name, version and seeds) with only the scenarios of ``env_ids``."""
        unknown = [e for e in env_ids if e not in self.env_ids]
        if unknown:
            raise ConfigError(
                f"--env: suite {self.name!r} has no scenario for {unknown}; it has {self.env_ids}"
            )
        scenarios = tuple(s for s in self.scenarios if s.env_id in env_ids)
        return replace(self, scenarios=scenarios, metrics={e: self.metrics[e] for e in env_ids})


SOC = "schedgym/SoCDAG-v0"
LLM = "schedgym/LLMCluster-v0"
MESH = "schedgym/MeshAssign-v0"
DATAGEN = "schedgym/OnlineDataGen-v0"
PREFILL = "schedgym/PrefillChunk-v0"
PREFIX = "schedgym/PrefixBatch-v0"

# A renamed config field or a new knob that keeps the published behaviour does not change an
# environment, so it must not unfreeze a published suite. Suites are digested with each
# environment's config as it was when they were published (see `digested_config`): renamed
# fields under their names at publication (current name -> published name), and fields added
# since left out while they hold their behaviour-preserving value; any other value still changes
# the digest. Permanent, unlike the configs' deprecated aliases (their `renamed_fields`): these
# tables live as long as the published digests. Issue 14 (the shared Deployment) renamed and
# added the following; a new environment version starts with none.
DIGEST_FIELD_NAMES: dict[str, dict[str, str]] = {
    LLM: {
        "gpu_memory_utilization": "memory_utilization",
        "kv_capacity_blocks": "kv_blocks_per_instance",
        "arrival_process": "arrival",
    },
    PREFILL: {
        "gpu_memory_utilization": "kv_memory_utilization",
        "request_rate_per_s": "qps",
    },
    PREFIX: {"gpu_memory_utilization": "kv_memory_utilization"},
}
DIGEST_ADDED_FIELDS: dict[str, dict[str, Any]] = {
    LLM: {"gqa_decode_attention": False},
    PREFILL: {"kv_capacity_blocks": None},
    PREFIX: {"gqa_decode_attention": False},
    DATAGEN: {
        "adaptive_proposal": "region",
        "breed_sigma": 0.1,
        "breed_pool_samples": 1024,
        "weight_average_decay": 0.0,
    },
}

METRICS: dict[str, PrimaryMetric] = {
    SOC: PrimaryMetric("mean_job_latency_us", True, "us", "fcfs"),
    LLM: PrimaryMetric("ttft_p99_s", True, "s", "round-robin"),
    MESH: PrimaryMetric("step_time_s", True, "s", "static"),
    # Validation MSE as a fraction of the temperature range squared (dimensionless).
    DATAGEN: PrimaryMetric("val_mse", True, "", "offline"),
    # max(p99 TBT / SLO, median scheduling delay / 2 s): Sarathi-Serve's capacity criterion as
    # one number, <= 1 when both hold; it penalises both starving the decodes (TBT) and
    # starving the queue (delay), which p99 TBT alone would not.
    PREFILL: PrimaryMetric("slo_excess_ratio", True, "", "vllm"),
    PREFIX: PrimaryMetric("completion_time_s", True, "s", "fcfs-lru"),
}

# Version 1 (two seeds) as first published; kept so its rows can still be replayed.
_QUICK_V1 = Suite(
    name="quick",
    version=1,
    scenarios=(
        Scenario(SOC, "light", "light"),
        Scenario(SOC, "medium", "medium"),
        Scenario(SOC, "heavy", "heavy"),
        Scenario(LLM, "high-load", "high-load", {"num_requests": 600}),
        Scenario(LLM, "priority-mix", "priority-mix", {"num_requests": 600}),
        Scenario(MESH, "long-tail-heavy", "long-tail-heavy"),
        Scenario(MESH, "uniform-short", "uniform-short"),
        Scenario(DATAGEN, "small", "small"),
        Scenario(PREFILL, "strict", "sarathi-strict", {"num_requests": 200}),
        Scenario(PREFILL, "high-load", "high-load", {"num_requests": 200}),
        Scenario(
            PREFIX,
            "prefix-heavy",
            "prefix-heavy",
            {"num_requests": 400, "kv_capacity_blocks": 4000},
        ),
        Scenario(
            PREFIX, "no-sharing", "no-sharing", {"num_requests": 400, "kv_capacity_blocks": 4000}
        ),
    ),
    seeds=(1000, 1001),
    metrics=METRICS,
    description="first quick suite: two seeds per scenario",
)

# Version 2 as published on main: version 1's scenarios, renumbered when the PrefixBatch
# prefix-heavy / no-sharing and LLMCluster priority-mix presets changed under them.
_QUICK_V2 = replace(_QUICK_V1, version=2, description="quick v1's scenarios under new presets")

QUICK = Suite(
    name="quick",
    version=3,
    scenarios=(
        # Latency against load on the DS3 SoC: 25%, 60% and 90% of HEFT's capacity (jobs/ms),
        # pinned here (not through the presets) so the scenario names stay true; short runs.
        Scenario(
            SOC, "load-8", "light", {"job_rate_per_ms": 8.0, "num_jobs": 30, "warmup_jobs": 5}
        ),
        Scenario(
            SOC, "load-20", "medium", {"job_rate_per_ms": 20.0, "num_jobs": 30, "warmup_jobs": 5}
        ),
        Scenario(
            SOC, "load-30", "heavy", {"job_rate_per_ms": 30.0, "num_jobs": 30, "warmup_jobs": 5}
        ),
        Scenario(LLM, "high-load", "high-load", {"num_requests": 150}),
        # High load with 10% high-priority requests on the 4 x A100 cluster (the priority-mix
        # preset is now the 16 x A10 testbed: the full suite's, ten times this one's cost).
        Scenario(
            LLM,
            "priority-a100",
            "high-load",
            {"num_requests": 150, "high_priority_share": 0.1},
        ),
        Scenario(MESH, "long-tail-heavy", "long-tail-heavy"),
        Scenario(MESH, "uniform-short", "uniform-short", {"global_batch_tokens": 4_194_304}),
        # Half the small preset's compute budget: the regret portfolio trains per rollout.
        Scenario(DATAGEN, "small", "small", {"compute_budget_core_s": 1.2}),
        Scenario(PREFILL, "strict", "sarathi-strict", {"num_requests": 100}),
        Scenario(PREFILL, "high-load", "high-load", {"num_requests": 100}),
        Scenario(
            PREFIX,
            "prefix-heavy",
            "prefix-heavy",
            {"num_requests": 400, "kv_capacity_blocks": 4000},
        ),
        Scenario(
            PREFIX, "no-sharing", "no-sharing", {"num_requests": 400, "kv_capacity_blocks": 4000}
        ),
    ),
    seeds=(1000, 1001, 1002, 1003, 1004),
    metrics=METRICS,
    description="every environment, five seeds; every baseline in minutes on two cores",
)

FULL = Suite(
    name="full",
    version=1,
    scenarios=(
        Scenario(SOC, "load-8", "light", {"job_rate_per_ms": 8.0}),
        Scenario(SOC, "load-20", "medium", {"job_rate_per_ms": 20.0}),
        Scenario(SOC, "load-30", "heavy", {"job_rate_per_ms": 30.0}),
        Scenario(SOC, "noisy", "noisy"),
        Scenario(SOC, "random-dag", "random-dag"),
        Scenario(LLM, "low-load", "low-load"),
        Scenario(LLM, "high-load", "high-load"),
        # The Llumnix paper's testbed (16 x A10 at 86% of capacity), where migration matters.
        Scenario(LLM, "llumnix-a10", "llumnix-a10"),
        Scenario(LLM, "bursty", "bursty"),
        Scenario(LLM, "azure-trace", "azure-trace"),
        Scenario(LLM, "priority-mix", "priority-mix"),
        Scenario(MESH, "github-like", "github-like"),
        Scenario(MESH, "commoncrawl-like", "commoncrawl-like"),
        Scenario(MESH, "long-tail-heavy", "long-tail-heavy"),
        Scenario(MESH, "uniform-short", "uniform-short"),
        Scenario(DATAGEN, "default", "default"),
        Scenario(DATAGEN, "small", "small"),
        Scenario(PREFILL, "strict", "sarathi-strict"),
        Scenario(PREFILL, "relaxed", "sarathi-relaxed"),
        Scenario(PREFILL, "high-load", "high-load"),
        Scenario(PREFIX, "prefix-heavy", "prefix-heavy"),
        Scenario(PREFIX, "no-sharing", "no-sharing"),
        Scenario(PREFIX, "mixed", "mixed"),
    ),
    seeds=tuple(range(2000, 2020)),
    metrics=METRICS,
    description="the reference: every preset at its published size, twenty seeds",
)

# A tiny suite for smoke runs and the tests: every environment's ``tiny`` preset, three seeds.
SMOKE = Suite(
    name="smoke",
    version=1,
    scenarios=tuple(
        Scenario(env_id, "tiny", "tiny") for env_id in (SOC, LLM, MESH, DATAGEN, PREFILL, PREFIX)
    ),
    seeds=(7, 8, 9),
    metrics=METRICS,
    description="tiny presets, for smoke tests of the pipeline (scores mean nothing)",
)

SUITES: dict[tuple[str, int], Suite] = {
    (s.name, s.version): s for s in (_QUICK_V1, _QUICK_V2, QUICK, FULL, SMOKE)
}

# The content digest of every published (suite, version), environment configs included. A run
# refuses a suite whose digest differs (``Suite.check_frozen``) and a test checks them all: a
# changed suite, preset or config default is a new suite version, never a silent edit.
FROZEN_DIGESTS: dict[tuple[str, int], str] = {
    ("quick", 1): "4a012d84d14370d5",
    ("quick", 2): "4a012d84d14370d5",
    ("quick", 3): "c0e0b8286bbb6b73",
    ("full", 1): "942fc64b14abcb34",
    ("smoke", 1): "11a67bf004c6ef90",
}


def suite_names() -> list[str]:
    """Names of the registered suites."""
    return sorted({name for name, _ in SUITES})


def get_suite(name: str, version: int | None = None) -> Suite:
    """The suite ``name`` at ``version`` (default: its latest version)."""
    versions = sorted(v for n, v in SUITES if n == name)
    if not versions:
        raise ConfigError(f"--suite: unknown suite {name!r}; known: {suite_names()}")
    if version is None:
        version = versions[-1]
    if (name, version) not in SUITES:
        raise ConfigError(f"--suite: suite {name!r} has versions {versions}, not {version}")
    return SUITES[(name, version)]


def validation_seeds(env_id: str, n: int) -> list[int]:
    """``n`` seeds for training-time validation of ``env_id``, never a test seed of any suite.

    They are the first ``n`` seeds of ``VALIDATION_SEED_RANGE``, disjoint from
    ``TEST_SEED_RANGE`` where every suite's seeds must lie (checked when a suite is built).

    Raises:
        ConfigError: for an unknown ``env_id`` or ``n`` outside [1, MAX_VALIDATION_SEEDS].
    """
    from schedgym.registration import env_entry

    env_entry(env_id)  # an unknown id fails here, naming the known ones
    if not 1 <= n <= MAX_VALIDATION_SEEDS:
        raise ConfigError(f"n: must be in [1, {MAX_VALIDATION_SEEDS}], got {n}")
    return list(range(VALIDATION_SEED_RANGE.start, VALIDATION_SEED_RANGE.start + n))


def is_test_seed(seed: int) -> bool:
    """True when ``seed`` is reserved for test suites (training must not use it)."""
    return seed in TEST_SEED_RANGE
