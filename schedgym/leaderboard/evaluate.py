"""Evaluate registered policies on a suite and report mean scores with bootstrap CIs."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.core.jsonio import write_json_atomic, write_text_atomic
from schedgym.core.metrics import bootstrap_ci
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.leaderboard.suites import Scenario, Suite


@dataclass
class ResultRow:
    """One (scenario, seed, policy) episode: the unit a leaderboard is built from."""

    suite: str
    suite_version: int
    env_id: str
    scenario: str
    seed: int
    policy: str
    metrics: dict[str, Any]
    episode_return: float
    steps: int
    walltime_s: float


def make_env(scenario: Scenario) -> gym.Env:
    """The scenario's environment, without Gymnasium's passive checker (it costs per step)."""
    kwargs: dict[str, Any] = dict(scenario.overrides)
    if scenario.preset is not None:
        kwargs["preset"] = scenario.preset
    return gym.make(scenario.env_id, disable_env_checker=True, **kwargs)


def evaluate_suite(suite: Suite, policies: Sequence[str] | None = None) -> list[ResultRow]:
    """Run every policy (default: every registered one) on every scenario and seed of ``suite``.

    Seeds are paired: every policy sees the same seeds, hence the same arrivals and noise.
    """
    rows: list[ResultRow] = []
    for scenario in suite.scenarios:
        env = make_env(scenario)
        names = list(policies) if policies is not None else policy_names(scenario.env_id)
        for name in names:
            policy = make_policy(scenario.env_id, name)
            for seed in suite.seeds:
                result = run_episode(env, policy, seed)
                rows.append(
                    ResultRow(
                        suite.name,
                        suite.version,
                        scenario.env_id,
                        scenario.name,
                        seed,
                        name,
                        result.metrics,
                        result.episode_return,
                        result.steps,
                        result.walltime_s,
                    )
                )
        env.close()
    return rows


def summarise(suite: Suite, rows: Sequence[ResultRow]) -> list[dict[str, Any]]:
    """Mean of the ranking metric per (env, scenario, policy) with a 95% bootstrap CI, ranked."""
    rng = np.random.default_rng(0)
    table: list[dict[str, Any]] = []
    keys = dict.fromkeys((r.env_id, r.scenario, r.policy) for r in rows)
    for env_id, scenario, policy in keys:
        metric, lower_is_better = suite.ranking_metric[env_id]
        values = [
            float(r.metrics[metric])
            for r in rows
            if (r.env_id, r.scenario, r.policy) == (env_id, scenario, policy)
        ]
        finite = [v for v in values if math.isfinite(v)]
        low, high = bootstrap_ci(finite, rng)
        table.append(
            {
                "env_id": env_id,
                "scenario": scenario,
                "policy": policy,
                "metric": metric,
                "lower_is_better": lower_is_better,
                "mean": float(np.mean(finite)) if finite else math.nan,
                "ci_low": low,
                "ci_high": high,
                "episodes": len(values),
            }
        )
    table.sort(
        key=lambda r: (
            r["env_id"],
            r["scenario"],
            r["mean"] if r["lower_is_better"] else -r["mean"],
        )
    )
    return table


def to_markdown(suite: Suite, table: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table, one block per scenario."""
    lines = [f"# schedgym leaderboard: suite `{suite.name}` v{suite.version}", ""]
    current = None
    for row in table:
        block = (row["env_id"], row["scenario"])
        if block != current:
            current = block
            arrow = "lower is better" if row["lower_is_better"] else "higher is better"
            lines += [
                "",
                f"## {row['env_id']} / {row['scenario']} ({row['metric']}, {arrow})",
                "",
                "| rank | policy | mean | 95% CI | episodes |",
                "|---|---|---|---|---|",
            ]
            rank = 0
        rank += 1
        lines.append(
            f"| {rank} | {row['policy']} | {row['mean']:.1f} | "
            f"[{row['ci_low']:.1f}, {row['ci_high']:.1f}] | {row['episodes']} |"
        )
    return "\n".join(lines) + "\n"


def write_results(suite: Suite, rows: Sequence[ResultRow], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<suite>.json`` (every row plus the summary) and ``<suite>.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summarise(suite, rows)
    payload = {
        "suite": suite.name,
        "suite_version": suite.version,
        "created_unix_s": time.time(),
        "python": platform.python_version(),
        "summary": table,
        "rows": [asdict(r) for r in rows],
    }
    json_path = out_dir / f"leaderboard_{suite.name}.json"
    md_path = out_dir / f"leaderboard_{suite.name}.md"
    write_json_atomic(json_path, payload)
    write_text_atomic(md_path, to_markdown(suite, table))
    return json_path, md_path
