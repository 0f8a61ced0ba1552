"""Validation: greedy rollouts of the network on validation seeds, scored by the leaderboard's
ranking metric of the environment (mean over scenarios and seeds)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schedgym.core.policy import Policy
from schedgym.core.rollout import run_episode
from schedgym.training.envs import make_scenario_env
from schedgym.training.seeds import validation_seeds


def ranking_metric(env_id: str) -> tuple[str, bool]:
    """(metric key, lower is better) the leaderboard ranks ``env_id`` by."""
    from schedgym.leaderboard.suites import METRICS

    metric = METRICS[env_id]
    return metric.key, metric.lower_is_better


def validate(
    env_id: str,
    scenarios: list[dict[str, Any]],
    policy: Policy,
    episodes: int,
    augmentation: str | None = None,
) -> dict[str, Any]:
    """Mean ranking metric of ``policy`` over ``scenarios`` x the first ``episodes`` validation
    seeds, with the per-scenario means; the envs' observations augmented by ``augmentation``."""
    metric, lower_is_better = ranking_metric(env_id)
    per_scenario = []
    values = []
    for scenario in scenarios:
        env = make_scenario_env(env_id, scenario, augmentation)
        scores = [
            float(run_episode(env, policy, seed).metrics[metric])
            for seed in validation_seeds(episodes)
        ]
        env.close()
        per_scenario.append({"scenario": scenario, "mean": float(np.mean(scores))})
        values.extend(scores)
    mean = float(np.mean(values))
    if not math.isfinite(mean):
        mean = math.inf if lower_is_better else -math.inf
    return {
        "metric": metric,
        "lower_is_better": lower_is_better,
        "mean": mean,
        "seeds": validation_seeds(episodes),
        "per_scenario": per_scenario,
    }


def better(new: float, best: float | None, lower_is_better: bool) -> bool:
    """Whether validation score ``new`` beats ``best``."""
    if best is None:
        return True
    return new < best if lower_is_better else new > best
