"""MeshAssign-v0 benchmarks: the ByteScale effect at full scale and the stepping speed.

Run: ``.venv/bin/python benchmarks/bench_mesh.py`` (both parts) or with ``--part effect`` /
``--part speed``. The effect part runs every baseline on ``long-tail-heavy`` and
``uniform-short`` with 64 H100 and Llama-2-7B (the env's defaults) over seeds and prints mean step
times and speedups; the speed part times a 1,024-GPU episode of about 4,096 sequences.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode

ENV_ID = "schedgym/MeshAssign-v0"
POLICIES = ("static", "token-balanced", "balanced-cp", "bytescale", "random")
# uniform-short lengths average about 4,600 tokens, so this budget draws about 4,096 sequences.
SPEED_BATCH_TOKENS = 18_874_368
SPEED_TARGET_DECISIONS_PER_S = 2000.0


def effect(seeds: list[int]) -> None:
    """Mean step time per (preset, policy) at 64 H100 / Llama-2-7B and speedups vs ByteScale."""
    for preset in ("long-tail-heavy", "uniform-short", "github-like", "commoncrawl-like"):
        env = gym.make(ENV_ID, preset=preset, disable_env_checker=True)
        means = {}
        for name in POLICIES:
            metrics = [run_episode(env, make_policy(ENV_ID, name), seed).metrics for seed in seeds]
            step = float(np.mean([m["step_time_s"] for m in metrics]))
            means[name] = step
            print(
                f"{preset:17s} {name:15s} step_time_s {step:8.2f}  "
                f"mfu {np.mean([m['mfu'] for m in metrics]):.3f}  "
                f"idle_frac {np.mean([m['idle_frac'] for m in metrics]):.3f}  "
                f"exposed_comm_frac {np.mean([m['exposed_comm_frac'] for m in metrics]):.3f}  "
                f"tokens_per_s {np.mean([m['tokens_per_s'] for m in metrics]):9.0f}"
            )
        base = means["bytescale"]
        ratios = ", ".join(f"{n} {means[n] / base:.2f}x" for n in POLICIES if n != "bytescale")
        print(f"{preset:17s} step time relative to bytescale: {ratios}")


def _time_episode(env: gym.Env, policy_name: str | None, seed: int) -> tuple[int, float]:
    """Decisions and wall seconds of one episode (random masked actions when no policy)."""
    obs, _ = env.reset(seed=seed)
    unwrapped = env.unwrapped
    rng = np.random.default_rng(seed)
    policy = make_policy(ENV_ID, policy_name) if policy_name else None
    if policy is not None:
        policy.reset(env)
    steps = 0
    started = time.perf_counter()
    done = False
    while not done:
        if policy is None:
            valid = np.flatnonzero(unwrapped.action_masks())
            action = int(valid[rng.integers(valid.size)])
        else:
            action = policy.act(obs, env)
        obs, _, terminated, truncated, _ = env.step(action)
        steps += 1
        done = terminated or truncated
    return steps, time.perf_counter() - started


def speed(repeats: int) -> None:
    """Decisions per second on a 1,024-GPU mesh with about 4,096 sequences per episode."""
    env = gym.make(
        ENV_ID,
        preset="uniform-short",
        num_gpus=1024,
        global_batch_tokens=SPEED_BATCH_TOKENS,
        disable_env_checker=True,
    )
    for policy_name in (None, "bytescale", "static"):
        rates = []
        for seed in range(repeats):
            steps, wall = _time_episode(env, policy_name, seed)
            rates.append(steps / wall)
        label = policy_name or "random-masked (env only)"
        verdict = "meets" if min(rates) >= SPEED_TARGET_DECISIONS_PER_S else "MISSES"
        print(
            f"1024 GPUs, {steps} decisions/episode, {label:24s}: "
            f"{np.median(rates):8.0f} decisions/s (min {min(rates):.0f}; {verdict} the "
            f"{SPEED_TARGET_DECISIONS_PER_S:.0f}/s target)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("effect", "speed", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the effect part")
    parser.add_argument("--repeats", type=int, default=3, help="episodes per speed measurement")
    args = parser.parse_args()
    if args.part in ("effect", "all"):
        effect(list(range(args.seeds)))
    if args.part in ("speed", "all"):
        speed(args.repeats)


if __name__ == "__main__":
    main()
