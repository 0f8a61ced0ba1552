"""``schedgym list`` and ``evaluate`` (``leaderboard`` lives in ``commands.leaderboard``)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.core.config import parse_override
from schedgym.core.errors import ConfigError
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
    p.add_argument("--preset", default=None, help="a named config preset of the environment")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field (JSON value, else string); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_list(args: argparse.Namespace) -> int:
    listing = {env_id: policy_names(env_id) for env_id in env_ids()}
    if args.json:
        print(json.dumps(listing, indent=1))
    else:
        for env_id, names in listing.items():
            print(f"{env_id}: {', '.join(names)}")
    return 0


def _full_id(env_id: str) -> str:
    return env_entry(env_id).env_id


def cmd_evaluate(args: argparse.Namespace) -> int:
    env_id = _full_id(args.env_id)
    if args.episodes < 1:
        raise ConfigError(f"--episodes: must be >= 1, got {args.episodes}")
    policy_spec(env_id, args.policy)  # fail early, with the known names, on a typo
    overrides = dict(parse_override(text) for text in args.set)
    kwargs: dict[str, Any] = dict(overrides)
    if args.preset is not None:
        kwargs["preset"] = args.preset
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    policy = make_policy(env_id, args.policy)
    episodes = [run_episode(env, policy, args.seed + i) for i in range(args.episodes)]
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
            "summary": summary,
        }
        print(json.dumps(payload, indent=1, default=float))
        return 0
    keys = list(summary)
    print(
        f"{env_id}  policy={args.policy}  preset={args.preset}  seeds {args.seed}.."
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
