"""Environment speed: env steps/s with observations, per registered environment.

For each environment (default config): steps/s of a random masked policy through ``env.step``
(observations built every step, what an RL learner sees) and of every baseline through
``run_episode`` (which skips observations for policies that read the simulator); for SoCDAG also
HEFT's simulated jobs per second on 10,000 jobs; for LLMCluster also the Azure-trace hour
(``azure-trace`` preset) with round-robin, decisions/s through ``env.step`` (observations at
every decision) and through ``env.advance`` (none built). Run on one core for comparable
numbers:

    taskset -c 0 .venv/bin/python benchmarks/bench_envs.py [--env SoCDAG-v0] [--steps 20000]
        [--no-azure-hour] [--clock cpu] [--preset P | --preset all]

``--clock cpu`` divides by the process's CPU time instead of wall time: on a machine shared
with other jobs it measures the code, not the queue for a core.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401
from schedgym.commands.common import env_class
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.registration import env_entry, env_ids

# The clock rates are measured with: time.perf_counter (wall) or time.process_time (cpu).
CLOCK = time.perf_counter


def random_masked_steps_per_s(
    env_id: str, steps: int, max_seconds: float, preset: str | None = None
) -> float:
    env = gym.make(env_id, disable_env_checker=True, preset=preset).unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    done_steps, seed = 0, 0
    started = CLOCK()
    while done_steps < steps and CLOCK() - started < max_seconds:
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        _, _, terminated, truncated, _ = env.step(action)
        done_steps += 1
        if terminated or truncated:
            seed += 1
            env.reset(seed=seed)
    return done_steps / (CLOCK() - started)


class _Observing:
    """Runs a baseline through ``env.step`` so observations are built as for a learner."""

    uses_observation = True

    def __init__(self, policy: object) -> None:
        self.policy = policy

    def reset(self, env: object) -> None:
        self.policy.reset(env)  # type: ignore[attr-defined]

    def act(self, observation: object, env: object) -> object:
        return self.policy.act(observation, env)  # type: ignore[attr-defined]


def baseline_steps_per_s(
    env_id: str, name: str, min_steps: int, max_seconds: float, observe: bool = False
) -> float:
    env = gym.make(env_id, disable_env_checker=True)
    policy = make_policy(env_id, name)
    if observe:
        policy = _Observing(policy)
    steps, elapsed, seed = 0, 0.0, 0
    # Whole episodes: at least min_steps, or one episode once max_seconds have been spent.
    while steps < min_steps and (elapsed < max_seconds or steps == 0):
        started = CLOCK()
        result = run_episode(env, policy, seed)
        elapsed += CLOCK() - started
        steps += result.steps
        seed += 1
    return steps / elapsed


def fits_default_config(env_id: str, name: str) -> bool:
    """Whether policy ``name`` can act on ``env_id``'s default config (a shipped checkpoint
    acts only on the observation layout it was trained on)."""
    incompatibility = getattr(make_policy(env_id, name), "incompatibility", None)
    if not callable(incompatibility):
        return True
    problem = incompatibility(gym.make(env_id, disable_env_checker=True).unwrapped)
    if problem is not None:
        print(f"  baseline {name:<18}: skipped ({problem})")
    return problem is None


def heft_jobs_per_s(num_jobs: int) -> tuple[float, float]:
    env = gym.make("schedgym/SoCDAG-v0", preset="medium", num_jobs=num_jobs, warmup_jobs=0)
    started = CLOCK()
    run_episode(env, make_policy("SoCDAG-v0", "heft"), seed=0)
    seconds = CLOCK() - started
    return num_jobs / seconds, seconds


def azure_hour(observe: bool) -> tuple[int, float]:
    """Round-robin over the LLMCluster Azure-trace hour: (decisions, seconds)."""
    env = gym.make("schedgym/LLMCluster-v0", preset="azure-trace", disable_env_checker=True)
    policy = make_policy("LLMCluster-v0", "round-robin")
    if observe:
        policy = _Observing(policy)
    started = CLOCK()
    result = run_episode(env, policy, seed=0)
    return result.steps, CLOCK() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", default=None, help="env id (repeatable)")
    parser.add_argument("--steps", type=int, default=20_000, help="steps per measurement")
    parser.add_argument("--heft-jobs", type=int, default=10_000)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="time cap per measurement (OnlineDataGen steps train a surrogate: they are slow)",
    )
    parser.add_argument(
        "--no-azure-hour", action="store_true", help="skip LLMCluster's Azure-trace hour"
    )
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument(
        "--preset",
        action="append",
        default=None,
        help="only the random masked rate, on this preset of each --env (repeatable; 'all': "
        "every preset but tiny), median of three runs",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    ids = [env_entry(e).env_id for e in args.env] if args.env else env_ids()
    if args.preset:
        for env_id in ids:
            presets = args.preset
            if presets == ["all"]:
                presets = [p for p in env_class(env_id).presets if p != "tiny"]
            for preset in presets:
                runs = [
                    random_masked_steps_per_s(env_id, args.steps, args.max_seconds, preset)
                    for _ in range(3)
                ]
                rate = statistics.median(runs)
                print(f"{env_id} {preset:<20} random masked, with observations: {rate:10,.0f}/s")
        return
    for env_id in ids:
        print(f"{env_id}")
        rate = random_masked_steps_per_s(env_id, args.steps, args.max_seconds)
        print(f"  random masked, with observations  : {rate:10,.0f} steps/s")
        rates = {
            n: baseline_steps_per_s(env_id, n, args.steps // 4, args.max_seconds)
            for n in policy_names(env_id)
            if fits_default_config(env_id, n)
        }
        fastest = max(rates, key=rates.__getitem__)
        rate = baseline_steps_per_s(
            env_id, fastest, args.steps // 4, args.max_seconds, observe=True
        )
        print(f"  fastest baseline ({fastest}), with obs. : {rate:10,.0f} steps/s")
        for name, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
            print(f"  baseline {name:<18}, no obs. : {rate:10,.0f} steps/s")
        if env_id == "schedgym/SoCDAG-v0":
            jobs_per_s, seconds = heft_jobs_per_s(args.heft_jobs)
            jobs = f"{args.heft_jobs:,}"
            print(f"  HEFT, {jobs} jobs (medium): {seconds:.2f} s = {jobs_per_s:,.0f} jobs/s")
        if env_id == "schedgym/LLMCluster-v0" and not args.no_azure_hour:
            for observe in (True, False):
                decisions, seconds = azure_hour(observe)
                how = "with obs. (step)   " if observe else "no obs. (advance)  "
                print(
                    f"  Azure hour, round-robin, {how}: {decisions:,} decisions in "
                    f"{seconds:.1f} s = {decisions / seconds:,.0f} decisions/s"
                )


if __name__ == "__main__":
    main()
