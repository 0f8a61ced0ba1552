"""Training speed: MaskablePPO env steps per second per environment, and where the time goes.

For each environment: a MaskablePPO model with the per-candidate scoring policy
(:mod:`schedgym.agents`) learns ``--rollouts`` rollouts of the hyperparameter file's ``n_steps``
on the env's first training scenario (one env, one torch thread). Reports steps/s over the whole
``learn`` call and the share of its wall time spent inside the environment (``step``, ``reset``,
``action_masks``), the rest being the network (rollout forward passes and PPO updates) and SB3.
Run on a quiet machine, one core, for comparable numbers:

    taskset -c 0 .venv/bin/python benchmarks/bench_training.py [--env SoCDAG-v0] [--rollouts 2]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import gymnasium as gym
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv

import schedgym  # noqa: F401
from schedgym.agents.layouts import ENCODERS, encoder_for, layout_of
from schedgym.agents.sb3 import CandidateScoringPolicy, ScoringExtractor
from schedgym.core.policy import env_family
from schedgym.registration import env_entry
from schedgym.training.config import PPO_KEYS, load_hyperparams
from schedgym.training.envs import make_scenario_env


class TimedEnv(gym.Wrapper):
    """Accumulates the wall time spent inside the wrapped env."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.env_s = 0.0
        self.steps = 0

    def reset(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            self.env_s += time.perf_counter() - started

    def step(self, action: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            self.env_s += time.perf_counter() - started
            self.steps += 1

    def action_masks(self) -> Any:
        started = time.perf_counter()
        try:
            return self.env.unwrapped.action_masks()
        finally:
            self.env_s += time.perf_counter() - started


def bench(env_id: str, rollouts: int) -> dict[str, Any]:
    family = env_family(env_id)
    params = load_hyperparams(env_id)
    scenario = params["scenarios"][0]
    timed = TimedEnv(make_scenario_env(env_id, scenario))
    model = MaskablePPO(
        CandidateScoringPolicy,
        DummyVecEnv([lambda: timed]),
        policy_kwargs={
            "features_extractor_class": ScoringExtractor,
            "features_extractor_kwargs": {
                "encoder": encoder_for(family),
                "layout": layout_of(family, timed),
                "encoder_kwargs": (params.get("policy_kwargs") or {}).get("encoder_kwargs", {}),
            },
        },
        seed=0,
        **{k: params[k] for k in PPO_KEYS if k in params},
    )
    steps = rollouts * int(params["n_steps"])
    started = time.perf_counter()
    model.learn(steps)
    wall_s = time.perf_counter() - started
    return {
        "env": env_id,
        "scenario": scenario,
        "timesteps": int(model.num_timesteps),
        "steps_per_s": model.num_timesteps / wall_s,
        "env_share": timed.env_s / wall_s,
        "network_share": 1.0 - timed.env_s / wall_s,
        "wall_s": wall_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", action="append", default=None, help="env id (repeatable)")
    parser.add_argument("--rollouts", type=int, default=2, help="rollouts of n_steps each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env_ids = (
        [env_entry(e).env_id for e in args.env]
        if args.env
        else [f"schedgym/{family}-v0" for family in sorted(ENCODERS)]
    )
    results = [bench(env_id, args.rollouts) for env_id in env_ids]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for r in results:
        print(
            f"{r['env']:28s} {r['steps_per_s']:8.1f} steps/s  env {100 * r['env_share']:5.1f}%  "
            f"network {100 * r['network_share']:5.1f}%  "
            f"({r['timesteps']} steps, {r['wall_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
