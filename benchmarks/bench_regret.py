"""Groupwise-regret baselines: the synthetic proof, regret-heft on noisy, the portfolio table.

Run: ``.venv/bin/python benchmarks/bench_regret.py`` (every part) or ``--part synthetic`` /
``--part heft`` / ``--part portfolio [--envs PrefillChunk ...] [--scenarios strict ...]
[--portfolio-seeds 1002 ...]`` / ``--part sjf`` / ``--part clone``.

- ``synthetic``: the intersecting-group stream (age band, sex, region) with the target depending
  on region only and on all three; per group: the fitted growth exponent of the cumulative regret
  against the best fixed linear predictor in hindsight, the final regret, and the mean squared
  error of the groupwise regressor and of one ungrouped online ridge regression.
- ``heft``: ``regret-heft`` against ``heft`` (nominal times) on SoCDAG ``noisy`` (200 jobs).
- ``portfolio``: every heuristic and ``regret-portfolio`` on the quick suite's scenarios of the
  families that have a portfolio, mean of the ranking metric over the suite's seeds.
- ``sjf``: ``regret-sjf`` against the policy it builds on (``sarathi-512`` on PrefillChunk,
  ``llumnix`` on LLMCluster) on the quick suite's scenarios: ranking metric, TTFT, delay.
- ``clone``: the cost of one snapshot (deep copy of the unwrapped env and the experts).
"""

from __future__ import annotations

import argparse
import copy
import time

import gymnasium as gym
import numpy as np
from regret_synthetic import (
    best_fixed_linear_loss,
    fit_growth_exponent,
    synthetic_groups,
    synthetic_stream,
)

import schedgym  # noqa: F401
from schedgym.baselines.online_learning import GroupwiseOnlineRegressor, OnlineRidge
from schedgym.baselines.regret_datagen import DataGenPortfolioAdapter
from schedgym.baselines.regret_llm import LLMPortfolioAdapter
from schedgym.baselines.regret_mesh import MeshPortfolioAdapter
from schedgym.baselines.regret_prefill import PrefillPortfolioAdapter
from schedgym.baselines.regret_prefix import PrefixPortfolioAdapter
from schedgym.baselines.regret_soc import SoCPortfolioAdapter
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode
from schedgym.leaderboard.suites import get_suite

PORTFOLIO_EXPERTS = {
    "schedgym/SoCDAG-v0": ("heft", "etf", "eft", "cp", "fcfs", "met"),
    "schedgym/MeshAssign-v0": ("bytescale", "balanced-cp", "token-balanced", "static"),
    "schedgym/PrefillChunk-v0": (
        "vllm",
        "orca",
        "fastertransformer",
        "sarathi-512",
        "sarathi-2048",
    ),
    "schedgym/PrefixBatch-v0": ("fcfs-lru", "batchllm"),
    "schedgym/OnlineDataGen-v0": (
        "online-firo",
        "online-fifo",
        "online-reservoir",
        "adaptive",
        "offline",
    ),
    "schedgym/LLMCluster-v0": ("round-robin", "lor", "llumnix", "llumnix-no-migration"),
}
# Shortest predicted job first against the baselines it builds on (same composition/dispatch).
SJF_BASELINES = {
    "schedgym/PrefillChunk-v0": ("sarathi-512",),
    "schedgym/LLMCluster-v0": ("llumnix",),
}
SJF_METRICS = ("ttft_p50_s", "ttft_p99_s", "sched_delay_p50_s", "latency_mean_s")


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


# Portfolio variants benchmarked next to the default (label -> policy keyword arguments).
PORTFOLIO_VARIANTS = {
    "schedgym/PrefillChunk-v0": {
        "regret-portfolio[window]": {"feedback": "window", "window_s": 4.0, "horizon_s": 8.0},
        "regret-portfolio[whole-policy]": {
            "feedback": "whole-policy",
            "window_s": 4.0,
            "horizon_s": 8.0,
        },
    },
}


def _episodes(
    env_id: str,
    name: str,
    seeds: list[int],
    metric: str,
    policy_kwargs: dict | None = None,
    **kwargs,
) -> list[float]:
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    return [
        float(
            run_episode(env, make_policy(env_id, name, **(policy_kwargs or {})), s).metrics[metric]
        )
        for s in seeds
    ]


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


def portfolio(
    envs: list[str] | None = None,
    seeds_override: list[int] | None = None,
    scenarios: list[str] | None = None,
) -> None:
    """Every heuristic and the portfolio (and its variants) on the quick suite's scenarios, on
    the suite's seeds or ``seeds_override`` (to stay off the leaderboard's test seeds)."""
    suite = get_suite("quick")
    for scenario in suite.scenarios:
        if scenario.env_id not in PORTFOLIO_EXPERTS:
            continue
        if envs and not any(e in scenario.env_id for e in envs):
            continue
        if scenarios and scenario.name not in scenarios:
            continue
        metric = suite.metrics[scenario.env_id].key
        seeds = list(seeds_override or suite.seeds)
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
        for label, policy_kwargs in PORTFOLIO_VARIANTS.get(scenario.env_id, {}).items():
            started = time.perf_counter()
            values = _episodes(
                scenario.env_id,
                "regret-portfolio",
                seeds,
                metric,
                policy_kwargs,
                preset=scenario.preset,
                **scenario.overrides,
            )
            rows[label] = (float(np.mean(values)), time.perf_counter() - started)
        best = min(v for n, (v, _) in rows.items() if not n.startswith("regret-portfolio"))
        for name, (value, wall) in rows.items():
            print(f"| {name} | {value:.4g} | {value / best:.3f} | {wall:.1f} |")


def sjf() -> None:
    """``regret-sjf`` against the policy it builds on, on the quick suite's scenarios."""
    suite = get_suite("quick")
    for scenario in suite.scenarios:
        if scenario.env_id not in SJF_BASELINES:
            continue
        ranking = suite.metrics[scenario.env_id].key
        seeds = list(suite.seeds)
        env = gym.make(
            scenario.env_id,
            preset=scenario.preset,
            disable_env_checker=True,
            **scenario.overrides,
        )
        print(f"\n{scenario.env_id} / {scenario.name} (means over seeds {seeds})")
        rows = {}
        for name in (*SJF_BASELINES[scenario.env_id], "regret-sjf"):
            runs = [run_episode(env, make_policy(scenario.env_id, name), s).metrics for s in seeds]
            rows[name] = {k: float(np.mean([m[k] for m in runs])) for k in runs[0]}
        keys = [k for k in dict.fromkeys((ranking, *SJF_METRICS)) if k in rows["regret-sjf"]]
        print("| policy | " + " | ".join(keys) + " |")
        print("|---" * (len(keys) + 1) + "|")
        for name, metrics in rows.items():
            print(f"| {name} | " + " | ".join(f"{metrics[k]:.4g}" for k in keys) + " |")


def clone_cost() -> None:
    for env_id, preset, overrides, adapter in (
        ("schedgym/SoCDAG-v0", "heavy", {}, SoCPortfolioAdapter()),
        ("schedgym/MeshAssign-v0", "long-tail-heavy", {}, MeshPortfolioAdapter()),
        ("schedgym/PrefillChunk-v0", "high-load", {"num_requests": 200}, PrefillPortfolioAdapter()),
        (
            "schedgym/PrefixBatch-v0",
            "prefix-heavy",
            {"num_requests": 400, "kv_capacity_blocks": 4000},
            PrefixPortfolioAdapter(),
        ),
        ("schedgym/OnlineDataGen-v0", "small", {}, DataGenPortfolioAdapter()),
        ("schedgym/LLMCluster-v0", "high-load", {"num_requests": 600}, LLMPortfolioAdapter()),
    ):
        env = gym.make(env_id, preset=preset, disable_env_checker=True, **overrides)
        env.reset(seed=0)
        experts = list(adapter.experts().values())
        for expert in experts:
            expert.reset(env)
        for _ in range(50 if env_id != "schedgym/OnlineDataGen-v0" else 5):
            env.unwrapped.step(experts[0].act(None, env))
        unwrapped = env.unwrapped
        reps = 50
        started = time.perf_counter()
        for _ in range(reps):
            copy.deepcopy((unwrapped, experts), adapter.share(unwrapped))
        per_ms = 1000 * (time.perf_counter() - started) / reps
        print(f"\nsnapshot of {env_id} ({preset}, a few decisions in): {per_ms:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("all", "synthetic", "heft", "portfolio", "sjf", "clone"))
    parser.add_argument(
        "--envs", nargs="+", help="portfolio: only these environments (substrings of their ids)"
    )
    parser.add_argument(
        "--portfolio-seeds",
        type=int,
        nargs="+",
        help="portfolio: these seeds instead of the suite's (its test seeds are 1000-1001)",
    )
    parser.add_argument("--scenarios", nargs="+", help="portfolio: only these scenario names")
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1000, 1008)))
    args = parser.parse_args()
    part = args.part or "all"
    if part in ("all", "synthetic"):
        synthetic(args.rounds)
    if part in ("all", "heft"):
        heft(args.seeds)
    if part in ("all", "portfolio"):
        portfolio(args.envs, args.portfolio_seeds, args.scenarios)
    if part in ("all", "sjf"):
        sjf()
    if part in ("all", "clone"):
        clone_cost()


if __name__ == "__main__":
    main()
