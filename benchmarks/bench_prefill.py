"""PrefillChunk and PrefixBatch: simulation speed and the papers' effects at full scale.

- PrefillChunk iterations per second (each env step is one engine iteration): Sarathi-512 through
  ``env.advance`` (what baselines and the capacity search use) and a random masked policy
  through ``env.step`` (observations built, what a learner sees). Target: 10,000/s.
- A 10,000-request PrefixBatch episode (``prefix-heavy``) with BatchLLM. Target: under 5 s.
- Sarathi-Serve's effect: capacity (largest QPS with p99 TBT within the SLO and median
  scheduling delay <= 2 s) of vLLM and Sarathi-512/2048 on Mistral-7B / A100 / ShareGPT at the
  strict (0.1 s) and relaxed (0.5 s) SLO, with the env's defaults (the paper's setting: Sarathi's
  budget semantics and a GQA-aware decode kernel), without the GQA-aware kernel, and with neither
  (prefill-only budgets, the calibrated per-query-head decode kernel).
- BatchLLM's effect: throughput of BatchLLM over FCFS+LRU on ``prefix-heavy``, ``mixed`` and
  ``no-sharing`` (full presets, 4000 / 3000 / 4000 requests, ShareGPT-length answers), with the
  presets' engines; then on ``prefix-heavy`` the same with the shared-prefix attention kernel off
  for both, and the paper's comparison (BatchLLM with its kernel against vLLM without one).
  ``--batchllm-only`` runs just this part.

Run on one core for comparable numbers::

    taskset -c 0 .venv/bin/python benchmarks/bench_prefill.py [--skip-effects]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode
from schedgym.leaderboard.capacity import env_episode_fn, search_capacity

PREFILL = "schedgym/PrefillChunk-v0"
PREFIX = "schedgym/PrefixBatch-v0"


def prefill_iterations_per_s(requests: int) -> tuple[float, float]:
    env: Any = gym.make(PREFILL, disable_env_checker=True, num_requests=requests).unwrapped
    policy = make_policy(PREFILL, "sarathi-512")
    result = run_episode(env, policy, seed=0)
    fast = result.steps / result.walltime_s
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps = 0
    started = time.perf_counter()
    done = False
    while not done:
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        done = terminated or truncated
    return fast, steps / (time.perf_counter() - started)


def prefix_episode_s(requests: int) -> tuple[float, dict]:
    env = gym.make(PREFIX, preset="prefix-heavy", disable_env_checker=True, num_requests=requests)
    started = time.perf_counter()
    result = run_episode(env, make_policy(PREFIX, "batchllm"), seed=0)
    return time.perf_counter() - started, result.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-effects", action="store_true", help="speed only")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per capacity probe")
    parser.add_argument("--batchllm-only", action="store_true", help="BatchLLM's effect only")
    args = parser.parse_args()
    if args.batchllm_only:
        batchllm_effect()
        return

    fast, observed = prefill_iterations_per_s(512)
    print(f"PrefillChunk: {fast:,.0f} iterations/s (sarathi-512, advance), ", end="")
    print(f"{observed:,.0f} iterations/s (random, step with observations)")
    seconds, metrics = prefix_episode_s(10_000)
    print(
        f"PrefixBatch: 10,000-request prefix-heavy episode with BatchLLM in {seconds:.2f} s "
        f"(simulated {metrics['completion_time_s']:.0f} s, reuse {metrics['kv_reuse_ratio']:.2f})"
    )
    if args.skip_effects:
        return

    seeds = tuple(range(args.seeds))
    # Three settings: the env's defaults, the paper's (Sarathi's token budget counts the
    # decodes; GQA-aware decode kernel, FlashInfer, the default backend of Sarathi-Serve's code);
    # the same budget with decode attention charged per query head as the calibration profile's
    # kernel behaves; and prefill-only budgets with that kernel.
    settings: tuple[tuple[str, dict[str, Any]], ...] = (
        ("defaults (paper: budget counts decodes, GQA decode kernel)", {}),
        ("per-query-head decode kernel", {"gqa_decode_attention": False}),
        (
            "prefill-only budgets, per-query-head decode kernel",
            {"budget_counts_decodes": False, "gqa_decode_attention": False},
        ),
    )
    print("\nSarathi-Serve capacity, Mistral-7B / A100 / ShareGPT (512 requests per probe):")
    for label, overrides in settings:
        print(f"  {label}:")
        for slo in (0.1, 0.5):
            found = {}
            for policy in ("vllm", "sarathi-512", "sarathi-2048"):
                run = env_episode_fn(PREFILL, policy, overrides=overrides)
                found[policy] = search_capacity(run, slo, seeds=seeds, tolerance=0.02).capacity_qps
            ratio = found["sarathi-512"] / found["vllm"]
            cells = "  ".join(f"{k} {v:.3f}" for k, v in found.items())
            print(f"    SLO {slo:.1f} s: {cells}  (sarathi-512 / vllm = {ratio:.2f}x)")
    batchllm_effect()


def prefix_throughput(preset: str, policy: str, seed: int, **overrides: Any) -> float:
    env = gym.make(PREFIX, preset=preset, disable_env_checker=True, **overrides)
    metrics = run_episode(env, make_policy(PREFIX, policy), seed).metrics
    return float(metrics["throughput_tok_s"])


def batchllm_effect() -> None:
    print("\nBatchLLM / FCFS+LRU throughput (tokens/s, seeds 0 and 1), presets' engines:")
    for preset in ("prefix-heavy", "mixed", "no-sharing"):
        ratios = [
            prefix_throughput(preset, "batchllm", seed)
            / prefix_throughput(preset, "fcfs-lru", seed)
            for seed in (0, 1)
        ]
        print(f"  {preset:>12}: " + ", ".join(f"{r:.3f}x" for r in ratios))
    print("prefix-heavy, kernel off for both / BatchLLM with it against FCFS+LRU without (paper):")
    off = {"prefix_sharing_attention": False}
    for seed in (0, 1):
        fcfs_plain = prefix_throughput("prefix-heavy", "fcfs-lru", seed, **off)
        batchllm_plain = prefix_throughput("prefix-heavy", "batchllm", seed, **off)
        batchllm = prefix_throughput("prefix-heavy", "batchllm", seed)
        print(
            f"  seed {seed}: no kernel {batchllm_plain / fcfs_plain:.3f}x, "
            f"paper's comparison {batchllm / fcfs_plain:.3f}x"
        )


if __name__ == "__main__":
    main()
