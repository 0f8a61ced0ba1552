"""One leaderboard episode: (suite, scenario, seed, policy) -> one row.

This is what every backend runs, in whatever process: it looks the scenario up in the frozen
suite by name and version, so a task is a handful of strings and integers that pickle anywhere
(process pools, Ray). Environments are cached per process: building one (cost-model tables,
validation sets) costs more than many short episodes.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym

import schedgym
from schedgym.core.kernels import kernel_set
from schedgym.core.rollout import run_episode
from schedgym.leaderboard.curves import episode_curves
from schedgym.leaderboard.policies import build_policy
from schedgym.leaderboard.suites import Scenario, get_suite
from schedgym.leaderboard.trace import encode_actions


@dataclass(frozen=True)
class Task:
    """One episode to run."""

    suite: str
    suite_version: int
    env_id: str
    scenario: str
    seed: int
    policy: str

    def key(self) -> tuple[str, int, str, str, int, str]:
        return (self.suite, self.suite_version, self.env_id, self.scenario, self.seed, self.policy)

    def label(self) -> str:
        return f"{self.env_id.split('/')[-1]}/{self.scenario} seed {self.seed} {self.policy}"


def row_key(row: dict[str, Any]) -> tuple[str, int, str, str, int, str]:
    """The identity of a row: one per (suite, version, environment, scenario, seed, policy)."""
    return (
        row["suite"],
        int(row["suite_version"]),
        row["env_id"],
        row["scenario"],
        int(row["seed"]),
        row["policy"],
    )


_ENV_CACHE: dict[tuple[str, int, str, str], gym.Env] = {}
_DIGESTS: dict[tuple[str, int], str] = {}


def suite_digest(name: str, version: int) -> str:
    """The digest of suite ``name`` v``version`` (computed once per process)."""
    if (name, version) not in _DIGESTS:
        _DIGESTS[(name, version)] = get_suite(name, version).digest()
    return _DIGESTS[(name, version)]


def make_env(scenario: Scenario) -> gym.Env:
    """The scenario's environment, without Gymnasium's passive checker (it costs per step)."""
    return gym.make(scenario.env_id, disable_env_checker=True, **scenario.env_kwargs())


def _env_for(task: Task) -> gym.Env:
    key = (task.suite, task.suite_version, task.env_id, task.scenario)
    if key not in _ENV_CACHE:
        scenario = get_suite(task.suite, task.suite_version).scenario(task.env_id, task.scenario)
        _ENV_CACHE[key] = make_env(scenario)
    return _ENV_CACHE[key]


def run_task(task: Task) -> dict[str, Any]:
    """Run ``task``'s episode and return its row (strict-JSON-ready, see ``rows``)."""
    env = _env_for(task)
    policy = build_policy(task.env_id, task.policy)
    started_s, started_cpu_s = time.perf_counter(), time.process_time()
    result = run_episode(env, policy, task.seed, record_actions=True)
    walltime_s = time.perf_counter() - started_s
    # CPU time as well: on a shared machine it tells the episode's cost better than wall time.
    cpu_time_s = time.process_time() - started_cpu_s
    return {
        **asdict(task),
        "suite_digest": suite_digest(task.suite, task.suite_version),
        "metrics": result.metrics,
        "episode_return": result.episode_return,
        "steps": result.steps,
        "walltime_s": walltime_s,
        "cpu_time_s": cpu_time_s,
        "schedgym_version": schedgym.__version__,
        "python_version": platform.python_version(),
        # Where the numbers were computed: kernel sets round differently in the last bits.
        "machine": platform.machine(),
        "kernels": kernel_set(),
        "end_reason": result.end_reason,
        "curves": episode_curves(task.env_id, env),
        "actions": encode_actions(result.actions),
    }
