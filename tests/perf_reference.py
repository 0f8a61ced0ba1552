"""Reference records that pin behaviour across performance work (see ``test_perf_regression``).

Two records, written once from the code *before* a performance change and compared after it:

- every registered baseline's episode summary (as ``schedgym evaluate --json`` reports it) on
  each environment's smoke preset, seeds 0 and 1, plus the episode return and step count;
- an observation trajectory per environment: a seeded random masked policy's actions, a
  SHA-256 of every observation (all keys, dtype, shape and bytes), two summary statistics of
  every observation key (:func:`observation_stats`, the fallback where the digest differs
  across CPUs, see ``test_perf_regression``), and whether the step was a forced LLMCluster
  migration tick (only "no migration" valid), so that a later version that skips forced
  ticks can be replayed on the remaining decision points.

Floats are stored as ``repr`` strings so that NaN and infinities survive strict JSON and the
comparison can be bit for bit. Regenerate (only on purpose, before a change that must not alter
behaviour) with ``python -m tests.perf_reference --write``.

The recorded values come from an x86-64 machine without AVX-512 (numpy's AVX2 loops, OpenBLAS's
Haswell kernels). On an AVX-512 machine numpy's float64 ``power``/``exp``/``log`` loops and
OpenBLAS's kernels round differently in the last bit; that machine reproduces the recording
bit for bit with ``OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL"``
(how the statistics were added to the existing record, every earlier value unchanged).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.leaderboard.policies import is_baseline
from schedgym.registration import env_entry, env_ids

REFERENCE_PATH = Path(__file__).parent / "data" / "perf_reference.json"
SUMMARY_SEEDS = (0, 1)
# Extra summary workloads: memory-bound LLMCluster (preemptions, migrations, forced ticks).
EXTRA_SUMMARIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "schedgym/LLMCluster-v0",
        "llumnix-a10",
        {"num_requests": 40, "num_instances": 4, "request_rate_per_s": 1.5},
    ),
)
# At a migration tick the trajectory policy declines to migrate with this probability, so
# that candidates pile up and memory fills (random migration would keep instances balanced).
NO_MIGRATION_PROBABILITY = 0.8
# Environments and presets of the observation trajectories: every smoke preset, plus an
# LLMCluster workload busy enough to have many migration ticks, some of them forced.
TRAJECTORIES: tuple[tuple[str, str | None, dict[str, Any], int], ...] = (
    ("schedgym/SoCDAG-v0", "tiny", {}, 400),
    ("schedgym/SoCDAG-v0", "heavy", {"num_jobs": 60}, 1500),
    ("schedgym/LLMCluster-v0", "tiny", {}, 400),
    ("schedgym/LLMCluster-v0", "high-load", {"num_requests": 120}, 3000),
    ("schedgym/LLMCluster-v0", "llumnix-a10", {"num_requests": 150}, 4000),
    ("schedgym/PrefillChunk-v0", "tiny", {}, 400),
    ("schedgym/PrefixBatch-v0", "tiny", {}, 400),
    ("schedgym/MeshAssign-v0", "tiny", {}, 400),
    ("schedgym/OnlineDataGen-v0", "tiny", {}, 40),
)


def encode_value(value: Any) -> Any:
    """A JSON-safe, exact encoding of a metric value."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return repr(value)


def observation_digest(observation: dict[str, np.ndarray]) -> str:
    """SHA-256 over every key's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key in sorted(observation):
        array = np.ascontiguousarray(observation[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# Stored statistics keep this many significant digits: far below the comparison's tolerance.
STATS_DIGITS = 10


def observation_stats(observation: dict[str, np.ndarray]) -> str:
    """Per key (sorted): the sum of absolute values and a position-weighted sum (weights in
    [1, 2), so that moved entries change it), both over float64 copies and summed exactly
    (``math.fsum``), so that they depend on the observation only, not on the CPU. One string,
    space-separated, to keep the record small (:func:`parse_stats` reads it back)."""
    stats: list[str] = []
    for key in sorted(observation):
        values = np.asarray(observation[key], dtype=np.float64).ravel()
        positions = np.arange(values.size, dtype=np.int64)
        weights = 1.0 + ((positions * 7919) % 1009) / 1009.0
        for stat in (math.fsum(np.abs(values).tolist()), math.fsum((weights * values).tolist())):
            stats.append(f"{stat:.{STATS_DIGITS}g}")
    return " ".join(stats)


def parse_stats(text: str) -> list[float]:
    return [float(field) for field in text.split()]


def is_forced_tick(env: Any, mask: np.ndarray) -> bool:
    """An LLMCluster migration tick where "no migration" is the only valid action."""
    no_migration = getattr(env, "no_migration_action", None)
    return (
        no_migration is not None
        and int(mask.sum()) == 1
        and bool(mask[no_migration])
        and env.simulator.decision_kind == 1
    )


def summary_workloads() -> list[tuple[str, str | None, dict[str, Any]]]:
    """Every env's smoke preset, then the extra workloads."""
    smoke = [(env_id, env_entry(env_id).smoke_preset, {}) for env_id in env_ids()]
    return [*smoke, *EXTRA_SUMMARIES]


def policy_summaries(env_id: str, preset: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """``{policy: {seed: {metrics, return, steps}}}`` for every registered baseline."""
    env = gym.make(env_id, preset=preset, disable_env_checker=True, **overrides)
    per_policy: dict[str, Any] = {}
    for name in policy_names(env_id):
        if not is_baseline(env_id, name):  # learned agents change when they are retrained
            continue
        per_seed: dict[str, Any] = {}
        for seed in SUMMARY_SEEDS:
            result = run_episode(env, make_policy(env_id, name), seed)
            per_seed[str(seed)] = {
                "metrics": {k: encode_value(v) for k, v in result.metrics.items()},
                "return": encode_value(result.episode_return),
                "steps": result.steps,
            }
        per_policy[name] = per_seed
    return per_policy


def trajectory_key(env_id: str, preset: str | None, overrides: dict[str, Any]) -> str:
    return f"{env_id}|{preset}|{json.dumps(overrides, sort_keys=True)}"


def observation_trajectory(
    env_id: str, preset: str | None, overrides: dict[str, Any], steps: int
) -> dict[str, Any]:
    """A random masked policy's run through ``env.step``: actions, digests, statistics and
    forced flags."""
    env = gym.make(env_id, preset=preset, disable_env_checker=True, **overrides).unwrapped
    rng = np.random.default_rng(0)
    observation, _ = env.reset(seed=0)
    digests = [observation_digest(observation)]
    stats = [observation_stats(observation)]
    actions: list[int] = []
    forced: list[bool] = []
    for _ in range(steps):
        mask = env.action_masks()
        forced.append(is_forced_tick(env, mask))
        no_migration = getattr(env, "no_migration_action", None)
        if (
            no_migration is not None
            and mask[no_migration]
            and rng.random() < NO_MIGRATION_PROBABILITY
        ):
            action = int(no_migration)
        else:
            action = int(rng.choice(np.flatnonzero(mask)))
        actions.append(action)
        observation, _, terminated, truncated, _ = env.step(action)
        digests.append(observation_digest(observation))
        stats.append(observation_stats(observation))
        if terminated or truncated:
            break
    return {"actions": actions, "digests": digests, "forced": forced, "stats": stats}


def build_reference() -> dict[str, Any]:
    return {
        "summaries": {
            trajectory_key(env_id, preset, overrides): policy_summaries(env_id, preset, overrides)
            for env_id, preset, overrides in summary_workloads()
        },
        "trajectories": {
            trajectory_key(env_id, preset, overrides): observation_trajectory(
                env_id, preset, overrides, steps
            )
            for env_id, preset, overrides, steps in TRAJECTORIES
        },
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.perf_reference --write  (overwrites the reference)")
    REFERENCE_PATH.write_text(json.dumps(build_reference(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE_PATH}")
