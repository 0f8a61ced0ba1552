"""Groupwise-regret baselines: the synthetic proof, regret-heft on noisy, the portfolio table.

Run: ``.venv/bin/python benchmarks/bench_regret.py`` (every part) or ``--part synthetic`` /
``--part heft`` / ``--part portfolio`` / ``--part clone``.

- ``synthetic``: the intersecting-group stream (age band, sex, region) with the target depending
  on region only and on all three; per group: the fitted growth exponent of the cumulative regret
  against the best fixed linear predictor in hindsight, the final regret, and the mean squared
  error of the groupwise regressor and of one ungrouped online ridge regression.
- ``heft``: ``regret-heft`` against ``heft`` (nominal times) on SoCDAG ``noisy`` (200 jobs).
- ``portfolio``: every heuristic and ``regret-portfolio`` on the quick suite's scenarios of the
  families that have a portfolio, mean of the ranking metric over the suite's seeds.
- ``clone``: the cost of one snapshot (deep copy of the unwrapped env and the experts).
"""

from __future__ import annotations

import argparse
import copy
import time

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401
from schedgym.baselines.regret import (
    GroupwiseOnlineRegressor,
    OnlineRidge,
    best_fixed_linear_loss,
    fit_growth_exponent,
    synthetic_groups,
    synthetic_stream,
)
from schedgym.baselines.regret_mesh import MeshPortfolioAdapter
from schedgym.baselines.regret_soc import SoCPortfolioAdapter
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode
from schedgym.leaderboard.suites import get_suite

PORTFOLIO_EXPERTS = {
    "schedgym/SoCDAG-v0": ("heft", "etf", "eft", "cp", "fcfs", "met"),
    "schedgym/MeshAssign-v0": ("bytescale", "balanced-cp", "token-balanced", "static"),
}


def synthetic(rounds: int) -> None:
    for active in (("region",), ("age", "sex", "region")):
        stream = synthetic_stream(rounds, seed=0, active=active)
        grouped = GroupwiseOnlineRegressor(synthetic_groups(), 4, bound=20.0, loss_scale=25.0)
        plain = OnlineRidge(4)
        pred_g, pred_u = np.zeros(rounds), np.zeros(rounds)
        started = time.perf_counter()
        for t in range(rounds):
            x, y = stream.features[t], stream.targets[t]
            pred_g[t] = grouped.update(stream.contexts[t], x, y)
            pred_u[t] = plain.predict(x)
            plain.update(x, y)
        elapsed = time.perf_counter() - started
        print(f"\nsynthetic, target from {'+'.join(active)}, {rounds} rounds ({elapsed:.2f} s)")
        print("| group | rounds | regret exponent | final regret | MSE groupwise | MSE ungrouped |")
        print("|---|---|---|---|---|---|")
        for group in synthetic_groups():
            members = np.flatnonzero([group.contains(c) for c in stream.contexts])
            counts = np.unique(np.geomspace(members.size / 8, members.size, 10).astype(int))
            regrets = np.array(
                [
                    float(((pred_g[members[:n]] - stream.targets[members[:n]]) ** 2).sum())
                    - best_fixed_linear_loss(
                        stream.features[members[:n]], stream.targets[members[:n]]
                    )
                    for n in counts
                ]
            )
            exponent = fit_growth_exponent(counts.astype(float), regrets)
            mse_g = float(((pred_g[members] - stream.targets[members]) ** 2).mean())
            mse_u = float(((pred_u[members] - stream.targets[members]) ** 2).mean())
            print(
                f"| {group.name} | {members.size} | {exponent:.3f} | {regrets[-1]:.1f} | "
                f"{mse_g:.3f} | {mse_u:.3f} |"
            )


def _episodes(env_id: str, name: str, seeds: list[int], metric: str, **kwargs) -> list[float]:
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    return [float(run_episode(env, make_policy(env_id, name), s).metrics[metric]) for s in seeds]


def heft(seeds: list[int]) -> None:
    env_id, metric = "schedgym/SoCDAG-v0", "mean_job_latency_us"
    print(f"\nSoCDAG noisy, {metric}, seeds {seeds}")
    print("| policy | mean | per seed | wall s |")
    print("|---|---|---|---|")
    for name in ("heft", "regret-heft"):
        started = time.perf_counter()
        values = _episodes(env_id, name, seeds, metric, preset="noisy")
        print(
            f"| {name} | {np.mean(values):.1f} | {', '.join(f'{v:.0f}' for v in values)} | "
            f"{time.perf_counter() - started:.1f} |"
        )


def portfolio() -> None:
    suite = get_suite("quick")
    for scenario in suite.scenarios:
        if scenario.env_id not in PORTFOLIO_EXPERTS:
            continue
        metric, _ = suite.ranking_metric[scenario.env_id]
        seeds = list(suite.seeds)
        print(f"\n{scenario.env_id} / {scenario.name} ({metric}, lower is better, seeds {seeds})")
        print("| policy | mean | vs best heuristic | wall s |")
        print("|---|---|---|---|")
        rows = {}
        for name in (*PORTFOLIO_EXPERTS[scenario.env_id], "regret-portfolio"):
            started = time.perf_counter()
            values = _episodes(
                scenario.env_id, name, seeds, metric, preset=scenario.preset, **scenario.overrides
            )
            rows[name] = (float(np.mean(values)), time.perf_counter() - started)
        best = min(v for n, (v, _) in rows.items() if n != "regret-portfolio")
        for name, (value, wall) in rows.items():
            print(f"| {name} | {value:.2f} | {value / best:.3f} | {wall:.1f} |")


def clone_cost() -> None:
    for env_id, preset, adapter in (
        ("schedgym/SoCDAG-v0", "heavy", SoCPortfolioAdapter()),
        ("schedgym/MeshAssign-v0", "long-tail-heavy", MeshPortfolioAdapter()),
    ):
        env = gym.make(env_id, preset=preset, disable_env_checker=True)
        env.reset(seed=0)
        experts = list(adapter.experts().values())
        for expert in experts:
            expert.reset(env)
        for _ in range(50):
            env.unwrapped.step(experts[0].act(None, env))
        unwrapped = env.unwrapped
        reps = 50
        started = time.perf_counter()
        for _ in range(reps):
            copy.deepcopy((unwrapped, experts), adapter.share(unwrapped))
        per_ms = 1000 * (time.perf_counter() - started) / reps
        print(f"\nsnapshot of {env_id} ({preset}, after 50 decisions): {per_ms:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("all", "synthetic", "heft", "portfolio", "clone"))
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1000, 1008)))
    args = parser.parse_args()
    part = args.part or "all"
    if part in ("all", "synthetic"):
        synthetic(args.rounds)
    if part in ("all", "heft"):
        heft(args.seeds)
    if part in ("all", "portfolio"):
        portfolio()
    if part in ("all", "clone"):
        clone_cost()


if __name__ == "__main__":
    main()
