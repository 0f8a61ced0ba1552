"""Training speed: MaskablePPO env steps per second per environment, and where the time goes.

For each environment: a MaskablePPO model with the per-candidate scoring policy
(:mod:`schedgym.agents`) learns ``--rollouts`` rollouts of the hyperparameter file's ``n_steps``
(per env) on the env's first training scenario, with ``--n-envs`` copies (default: the file's
``n_envs``, as ``schedgym train`` uses) in one ``DummyVecEnv`` and ``--threads`` torch threads.
Reports env steps per second of wall time and per CPU-second of this process
(``time.process_time``: every thread of the process, so it does not flatter a run with more
threads, and other processes on the machine do not count against it), and where the time goes,
each part measured in both clocks:

- ``env``: inside the environments (``step``, ``reset``, ``action_masks``);
- ``rollout``: the rest of rollout collection (the policy's forward passes for actions and
  values, SB3's buffer and bookkeeping);
- ``update``: the PPO updates (``MaskablePPO.train``: forward and backward over minibatches).

Run pinned, for comparable numbers (other processes on the machine inflate wall time only):

    taskset -c 0,1 nice -n 10 .venv/bin/python benchmarks/bench_training.py \
        --env SoCDAG-v0 --rollouts 4 [--n-envs 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv

import schedgym  # noqa: F401
from schedgym.agents.layouts import ENCODERS, encoder_for, layout_of
from schedgym.agents.sb3 import CandidateScoringPolicy, scoring_policy_kwargs
from schedgym.core.policy import env_family
from schedgym.registration import env_entry
from schedgym.training.config import PPO_KEYS, load_hyperparams
from schedgym.training.envs import make_scenario_env


class Clock:
    """Accumulated wall and CPU seconds of the timed sections."""

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0

    def timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            self.wall_s += time.perf_counter() - wall
            self.cpu_s += time.process_time() - cpu


class TimedEnv(gym.Wrapper):
    """Accumulates the time spent inside the wrapped env into ``clock``, and how many graph
    nodes its observations held (``node_mask``, where there is one): the network's cost grows
    with them, so runs are comparable only at similar occupancy."""

    def __init__(self, env: gym.Env, clock: Clock) -> None:
        super().__init__(env)
        self.clock = clock
        self.observations = 0
        self.nodes = 0.0

    def _count(self, observation: Any) -> None:
        if isinstance(observation, dict) and "node_mask" in observation:
            self.observations += 1
            self.nodes += float(observation["node_mask"].sum())

    def reset(self, **kwargs: Any) -> Any:
        observation, info = self.clock.timed(self.env.reset, **kwargs)
        self._count(observation)
        return observation, info

    def step(self, action: Any) -> Any:
        result = self.clock.timed(self.env.step, action)
        self._count(result[0])
        return result

    def action_masks(self) -> Any:
        return self.clock.timed(self.env.unwrapped.action_masks)


class WarmedUpEnv(gym.Wrapper):
    """On its first reset, plays ``steps`` uniformly random valid actions (seeded) before
    handing over: training from a fresh reset measures the start of an episode, where queues
    are short, and more envs mean fewer steps into each episode; a warm-up puts every
    configuration at the same depth."""

    def __init__(self, env: gym.Env, steps: int, seed: int, clock: Clock) -> None:
        super().__init__(env)
        self.steps = steps
        self.rng = np.random.default_rng(seed)
        self.warm = steps == 0
        self.clock = clock

    def reset(self, **kwargs: Any) -> Any:
        observation, info = self.env.reset(**kwargs)
        if self.warm:
            return observation, info
        self.warm = True
        return self.clock.timed(self._warm_up, observation, info)

    def _warm_up(self, observation: Any, info: Any) -> Any:
        for _ in range(self.steps):
            valid = np.flatnonzero(self.env.unwrapped.action_masks())
            observation, _, terminated, truncated, info = self.env.step(int(self.rng.choice(valid)))
            if terminated or truncated:
                observation, info = self.env.reset()
        return observation, info


def bench(
    env_id: str,
    rollouts: int,
    n_envs: int | None = None,
    overrides: dict[str, Any] | None = None,
    warmup_steps: int = 0,
) -> dict[str, Any]:
    family = env_family(env_id)
    params = {**load_hyperparams(env_id), **(overrides or {})}
    if n_envs is None:  # as `schedgym train` runs it
        n_envs = int(params.get("n_envs", 1))
    scenario = params["scenarios"][0]
    env_clock, update_clock = Clock(), Clock()
    # The warm-up runs in learn's first reset: its time is taken off every clock below.
    warm_clock = Clock()
    envs = [
        TimedEnv(
            WarmedUpEnv(make_scenario_env(env_id, scenario), warmup_steps, i, warm_clock), env_clock
        )
        for i in range(n_envs)
    ]
    model = MaskablePPO(
        CandidateScoringPolicy,
        DummyVecEnv([lambda e=e: e for e in envs]),
        policy_kwargs=scoring_policy_kwargs(
            encoder_for(family),
            layout_of(family, envs[0]),
            (params.get("policy_kwargs") or {}).get("encoder_kwargs"),
        ),
        seed=0,
        **{k: params[k] for k in PPO_KEYS if k in params},
    )
    train = model.train
    model.train = lambda: update_clock.timed(train)  # type: ignore[method-assign]
    steps = rollouts * int(params["n_steps"]) * n_envs
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(steps)
    wall_s = time.perf_counter() - wall - warm_clock.wall_s
    cpu_s = time.process_time() - cpu - warm_clock.cpu_s
    env_clock.wall_s -= warm_clock.wall_s
    env_clock.cpu_s -= warm_clock.cpu_s
    rollout_wall_s = wall_s - env_clock.wall_s - update_clock.wall_s
    rollout_cpu_s = cpu_s - env_clock.cpu_s - update_clock.cpu_s
    observations = sum(e.observations for e in envs)
    return {
        "env": env_id,
        "mean_nodes": sum(e.nodes for e in envs) / observations if observations else None,
        "scenario": scenario,
        "n_envs": n_envs,
        "torch_threads": torch.get_num_threads(),
        "timesteps": int(model.num_timesteps),
        "steps_per_s": model.num_timesteps / wall_s,
        "steps_per_cpu_s": model.num_timesteps / cpu_s,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "share_wall": {
            "env": env_clock.wall_s / wall_s,
            "rollout": rollout_wall_s / wall_s,
            "update": update_clock.wall_s / wall_s,
        },
        "share_cpu": {
            "env": env_clock.cpu_s / cpu_s,
            "rollout": rollout_cpu_s / cpu_s,
            "update": update_clock.cpu_s / cpu_s,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", action="append", default=None, help="env id (repeatable)")
    parser.add_argument("--rollouts", type=int, default=2, help="rollouts of n_steps each")
    parser.add_argument(
        "--n-envs",
        type=int,
        default=None,
        help="envs in one DummyVecEnv (default: the hyperparameter file's n_envs, else 1)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="random valid steps each env plays before training (untimed), so runs with "
        "different --n-envs measure at the same depth into their episodes",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter (JSON value), e.g. n_epochs=2; repeatable",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    env_ids = (
        [env_entry(e).env_id for e in args.env]
        if args.env
        else [f"schedgym/{family}-v0" for family in sorted(ENCODERS)]
    )
    results = [
        bench(env_id, args.rollouts, args.n_envs, overrides, args.warmup_steps)
        for env_id in env_ids
    ]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for r in results:
        wall, cpu = r["share_wall"], r["share_cpu"]
        print(
            f"{r['env']:28s} {r['steps_per_s']:7.1f} steps/s  {r['steps_per_cpu_s']:7.1f} "
            f"steps/CPU-s  ({r['timesteps']} steps, {r['wall_s']:.1f} s wall, "
            f"{r['cpu_s']:.1f} s CPU, {r['n_envs']} envs, {r['torch_threads']} threads"
            + (f", {r['mean_nodes']:.0f} nodes/obs" if r["mean_nodes"] is not None else "")
            + ")\n"
            f"{'':28s} wall: env {100 * wall['env']:4.1f}%  rollout network "
            f"{100 * wall['rollout']:4.1f}%  update {100 * wall['update']:4.1f}%\n"
            f"{'':28s} CPU:  env {100 * cpu['env']:4.1f}%  rollout network "
            f"{100 * cpu['rollout']:4.1f}%  update {100 * cpu['update']:4.1f}%"
        )


if __name__ == "__main__":
    main()
