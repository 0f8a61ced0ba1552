"""``schedgym train``: MaskablePPO with the per-candidate scoring agents (the agents extra), or
Ray RLlib's PPO with action masking (``--backend rllib``, the agents and ray extras)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

BACKENDS = ("sb3", "rllib")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train a GNN agent with MaskablePPO")
    p.add_argument("env_id", help="e.g. SoCDAG-v0 or schedgym/SoCDAG-v0")
    p.add_argument(
        "--preset",
        action="append",
        default=None,
        help="train on this preset (repeatable: a mix); default: the hyperparameter file's",
    )
    p.add_argument("--timesteps", type=int, default=10_000, help="total environment steps")
    p.add_argument("--seed", type=int, default=0, help="run seed (training seeds derive from it)")
    p.add_argument(
        "--n-envs",
        type=int,
        default=None,
        help="parallel environments (default: the hyperparameter file's n_envs, else 1; "
        "RLlib: EnvRunner actors, default 1)",
    )
    p.add_argument("--config", default=None, help="YAML overriding the shipped hyperparameters")
    p.add_argument(
        "--wandb",
        choices=("offline", "online", "disabled"),
        default=None,
        help="wandb logging (default offline when wandb is installed; WANDB_MODE is honoured)",
    )
    p.add_argument("--resume", default=None, help="continue from this last.zip")
    p.add_argument("--out", default="runs/train", help="folder for checkpoints and run.json")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="sb3",
        help="sb3: sb3-contrib MaskablePPO on this machine (default); rllib: Ray RLlib PPO with "
        "action masking, --n-envs EnvRunner actors on a Ray cluster",
    )
    p.add_argument(
        "--ray-address", default=None, help="--backend rllib: a Ray cluster (default: local Ray)"
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from schedgym.agents.policy import require_agents_extra
    from schedgym.core.errors import ConfigError

    require_agents_extra()
    if args.threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
    if args.timesteps < 1:
        raise ConfigError(f"--timesteps: must be >= 1, got {args.timesteps}")
    # Check the hyperparameters before importing torch: a typo fails in a fraction of a second.
    from schedgym.registration import env_entry
    from schedgym.training.config import load_hyperparams

    load_hyperparams(env_entry(args.env_id).env_id, args.config)
    from schedgym.training.train import set_torch_threads, train

    set_torch_threads(args.threads)
    command = "schedgym train " + shlex.join(
        sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:]
    )
    if args.backend == "rllib":
        return _train_rllib(args, command)
    if args.ray_address is not None:
        raise ConfigError("--ray-address: only with --backend rllib")
    meta = train(
        args.env_id,
        presets=args.preset,
        timesteps=args.timesteps,
        seed=args.seed,
        n_envs=args.n_envs,
        config_file=args.config,
        wandb_mode=args.wandb or "offline",
        wandb_explicit=args.wandb is not None,
        resume=args.resume,
        out=args.out,
        device=args.device,
        progress=not args.no_progress,
        command=command,
    )
    validation = meta.get("validation", {})
    best = meta.get("best_validation", {})
    print(
        f"trained {meta['env_id']} for {meta['num_timesteps']} steps in "
        f"{meta['wall_time_s']:.0f} s; "
        f"validation {validation.get('metric')} = {validation.get('mean')}, best "
        f"{best.get('mean')} at {best.get('timesteps')} steps; checkpoints in {args.out}"
    )
    return 0


def _train_rllib(args: argparse.Namespace, command: str) -> int:
    import importlib.util

    from schedgym.core.errors import ConfigError

    # What the SB3 backend offers and this one does not is refused, never silently ignored.
    unsupported = {
        "--resume": args.resume is not None,
        "--device (other than cpu)": args.device != "cpu",
        "--wandb (other than disabled)": args.wandb not in (None, "disabled"),
    }
    for flag, given in unsupported.items():
        if given:
            raise ConfigError(f"{flag}: not supported with --backend rllib")
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.rllib") is None:
        raise ConfigError(
            "--backend rllib: Ray RLlib is not installed; pip install 'schedgym[ray]'"
        )
    from schedgym.training.rllib import train_rllib

    meta = train_rllib(
        args.env_id,
        presets=args.preset,
        timesteps=args.timesteps,
        seed=args.seed,
        n_envs=args.n_envs or 1,
        config_file=args.config,
        out=args.out,
        ray_address=args.ray_address,
        progress=not args.no_progress,
        command=command,
    )
    validation = meta["validation"]
    print(
        f"trained {meta['env_id']} with RLlib PPO for {meta['num_timesteps']} steps in "
        f"{meta['wall_time_s']:.0f} s; validation {validation['metric']} = "
        f"{validation['mean']}; checkpoint in {meta['checkpoint']}"
    )
    return 0
