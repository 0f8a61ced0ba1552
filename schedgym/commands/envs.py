"""``schedgym list`` and ``evaluate`` (``leaderboard`` lives in ``commands.leaderboard``)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.commands.common import add_config_arguments, check_seeds, make_kwargs
from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import dumps_strict
from schedgym.core.policy import make_policy, policy_names, policy_spec
from schedgym.core.rollout import run_episode
from schedgym.registration import env_entry, env_ids


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("list", help="environment ids and their registered policies")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser("evaluate", help="run a policy on an environment")
    p.add_argument("env_id", help="e.g. SoCDAG-v0 or schedgym/SoCDAG-v0")
    p.add_argument("--policy", required=True, help="a registered policy name (see `list`)")
    p.add_argument("--episodes", type=int, default=1, help="episodes, seeds SEED..SEED+N-1")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate, pin_kernels=True)  # numbers it publishes


def cmd_list(args: argparse.Namespace) -> int:
    listing = {env_id: policy_names(env_id) for env_id in env_ids()}
    if args.json:
        print(dumps_strict(listing, indent=1))
    else:
        for env_id, names in listing.items():
            print(f"{env_id}: {', '.join(names)}")
    return 0


def _full_id(env_id: str) -> str:
    return env_entry(env_id).env_id


# Bound of --episodes: each episode is run in this process, one after another.
MAX_EPISODES = 1_000_000


def cmd_evaluate(args: argparse.Namespace) -> int:
    env_id = _full_id(args.env_id)
    if not 1 <= args.episodes <= MAX_EPISODES:
        raise ConfigError(f"--episodes: must be in [1, {MAX_EPISODES}], got {args.episodes}")
    check_seeds(args.seed, args.episodes)
    policy_spec(env_id, args.policy)  # fail early, with the known names, on a typo
    kwargs = make_kwargs(env_id, args.preset, args.set)
    env = gym.make(env_id, **kwargs)
    policy = make_policy(env_id, args.policy)
    episodes = [run_episode(env, policy, args.seed + i) for i in range(args.episodes)]
    for episode in episodes:
        if episode.end_reason is not None:
            print(f"schedgym: seed {episode.seed}: {episode.end_reason}", file=sys.stderr)
    metrics = [e.metrics for e in episodes]
    summary = {
        key: float(np.mean([float(m[key]) for m in metrics]))
        for key in metrics[0]
        if isinstance(metrics[0][key], (int, float))
    }
    if args.json:
        payload = {
            "env": env_id,
            "policy": args.policy,
            "seed": args.seed,
            "episodes": metrics,
            "end_reasons": [e.end_reason for e in episodes],
            "summary": summary,
        }
        print(dumps_strict(payload, indent=1))
        return 0
    keys = list(summary)
    print(
        f"{env_id}  policy={args.policy}  preset={kwargs.get('preset')}  seeds {args.seed}.."
        f"{args.seed + args.episodes - 1}"
    )
    print("  ".join(["seed".rjust(6)] + [k.rjust(max(12, len(k))) for k in keys]))
    for episode in episodes:
        cells = [_fmt(episode.metrics.get(k)).rjust(max(12, len(k))) for k in keys]
        print("  ".join([str(episode.seed).rjust(6), *cells]))
    print("  ".join(["mean".rjust(6)] + [_fmt(summary[k]).rjust(max(12, len(k))) for k in keys]))
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
