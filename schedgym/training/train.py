"""``train()``: MaskablePPO on one environment with the per-candidate scoring policy.

Writes into ``out``: ``last.zip`` (every ``eval_freq`` timesteps and at the end), ``best.zip``
(the best validation score so far) and ``run.json`` (the learning curve and the metadata of the
last checkpoint). ``resume`` continues from a ``last.zip``: the network, optimizer state,
timestep count, best score and learning curve come back, so an interrupted run loses at most one
interval. Checkpoints are written to a temporary name and renamed, so a kill never leaves a
half-written file.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from schedgym.agents.augment import check_augmentation
from schedgym.agents.checkpoint import FORMAT as CHECKPOINT_FORMAT
from schedgym.agents.checkpoint import add_metadata, check_same_layout, read_metadata
from schedgym.agents.layouts import encoder_for, layout_of, observation_shapes
from schedgym.agents.policy import NetworkPolicy
from schedgym.agents.sb3 import CandidateScoringPolicy, scoring_policy_kwargs
from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import write_json_atomic
from schedgym.core.policy import env_family
from schedgym.training.bc import warm_start
from schedgym.training.config import (
    PPO_KEYS,
    VEC_ENVS,
    eval_scenarios,
    load_hyperparams,
    scenarios_with_presets,
)
from schedgym.training.envs import ScenarioMixEnv, mix_env_factory
from schedgym.training.evaluation import better, validate
from schedgym.training.seeds import TRAINING_SEED_BASE, check_disjoint, training_seed

LIBRARIES = ("torch", "torch_geometric", "stable_baselines3", "sb3_contrib", "gymnasium", "numpy")
WANDB_MODES = ("offline", "online", "disabled")


def set_torch_threads(count: int) -> None:
    """Let torch use ``count`` CPU threads (intra-op) in this process."""
    torch.set_num_threads(count)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a checkpoint depends on, and of schedgym and Python."""
    versions = {"python": platform.python_version()}
    for name in ("schedgym", *LIBRARIES):
        dist = {"torch_geometric": "torch-geometric", "sb3_contrib": "sb3-contrib"}.get(name, name)
        try:
            versions[name] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def machine() -> dict[str, Any]:
    """Where the run happened (no host names: hardware only)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


class _Run:
    """Mutable state shared by the callbacks: best score, learning curve, timing."""

    def __init__(self, meta: dict[str, Any], out: Path, started: float) -> None:
        self.meta = meta
        self.out = out
        self.started = started
        self.wall_before_s = float(meta.get("wall_time_s", 0.0))
        self.best: float | None = meta.get("best_validation", {}).get("mean")
        self.curve: list[dict[str, Any]] = list(meta.get("learning_curve", []))

    def wall_s(self) -> float:
        return self.wall_before_s + time.perf_counter() - self.started

    def save(self, model: MaskablePPO, name: str, validation: dict[str, Any] | None) -> Path:
        meta = dict(self.meta)
        meta["num_timesteps"] = int(model.num_timesteps)
        meta["wall_time_s"] = round(self.wall_s(), 2)
        meta["learning_curve"] = self.curve
        if validation is not None:
            meta["validation"] = validation
        path = self.out / f"{name}.zip"
        tmp = self.out / f".{name}.tmp.zip"
        model.save(tmp)
        add_metadata(tmp, meta)
        os.replace(tmp, path)
        write_json_atomic(self.out / "run.json", meta)
        return path

    def evaluate_and_save(self, model: MaskablePPO, env_id: str, scenarios: Any, episodes: int):
        network = model.policy
        network.set_training_mode(False)
        augmentation = self.meta.get("observation_augmentation")
        result = validate(env_id, scenarios, NetworkPolicy(network), episodes, augmentation)
        self.curve.append(
            {
                "timesteps": int(model.num_timesteps),
                "validation": result["mean"],
                "wall_time_s": round(self.wall_s(), 2),
            }
        )
        self.meta["validation"] = result
        if better(result["mean"], self.best, result["lower_is_better"]):
            self.best = result["mean"]
            self.meta["best_validation"] = {**result, "timesteps": int(model.num_timesteps)}
            self.save(model, "best", result)
        self.save(model, "last", result)
        return result


class _Periodic(BaseCallback):
    """Validates and checkpoints every ``every`` timesteps; drives the progress bar."""

    def __init__(self, run: _Run, env_id: str, scenarios: Any, episodes: int, every: int, bar):
        super().__init__()
        self.run = run
        self.env_id = env_id
        self.scenarios = scenarios
        self.episodes = episodes
        self.every = every
        self.bar = bar
        self.next_at = 0

    def _on_training_start(self) -> None:
        self.next_at = (self.model.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.bar.n)
        if self.model.num_timesteps >= self.next_at:
            self.next_at += self.every
            model = self.model
            if not isinstance(model, MaskablePPO):
                raise TypeError(f"model: expected MaskablePPO, got {type(model).__name__}")
            result = self.run.evaluate_and_save(model, self.env_id, self.scenarios, self.episodes)
            if self.bar is not None:
                self.bar.set_postfix(
                    validation=f"{result['mean']:.4g}", best=f"{self.run.best:.4g}"
                )
        return True


def _wandb_callback(mode: str, explicit: bool, config: dict[str, Any], out: Path) -> Any:
    mode = os.environ.get("WANDB_MODE", mode) if not explicit else mode
    if mode == "disabled":
        return None
    try:
        import wandb
        from wandb.integration.sb3 import WandbCallback
    except ModuleNotFoundError:
        if explicit:
            raise ConfigError(
                "--wandb: wandb is not installed; pip install 'schedgym[wandb]' or use "
                "--wandb disabled"
            ) from None
        print("schedgym train: wandb not installed, logging disabled", file=sys.stderr)
        return None
    wandb.init(project="schedgym", mode=mode, config=config, dir=str(out), sync_tensorboard=False)
    return WandbCallback(verbose=0)


def train(
    env_id: str,
    presets: list[str] | None = None,
    timesteps: int = 10_000,
    seed: int = 0,
    n_envs: int | None = None,
    config_file: str | None = None,
    wandb_mode: str = "offline",
    wandb_explicit: bool = False,
    resume: str | None = None,
    out: str | Path = "runs",
    device: str = "cpu",
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train; returns the final ``run.json`` content. See the module docstring."""
    import schedgym  # noqa: F401
    from schedgym.registration import env_entry

    env_id = env_entry(env_id).env_id
    family = env_family(env_id)
    if timesteps < 1:
        raise ConfigError(f"--timesteps: must be >= 1, got {timesteps}")
    if wandb_mode not in WANDB_MODES:
        raise ConfigError(f"--wandb: must be one of {WANDB_MODES}, got {wandb_mode!r}")
    if device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"--device: must be cpu, cuda or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: cuda requested but torch sees no CUDA device")
    check_disjoint()
    params = load_hyperparams(env_id, config_file)
    if n_envs is None:  # the file's choice (SoCDAG batches its envs' forward passes)
        n_envs = params.get("n_envs", 1)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or not 1 <= n_envs <= 64:
        raise ConfigError(f"--n-envs / n_envs: must be an integer in [1, 64], got {n_envs!r}")
    scenarios = scenarios_with_presets(params, presets)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    augmentation = params.get("observation_augmentation")
    check_augmentation(augmentation, family)
    probe = ScenarioMixEnv(env_id, scenarios, augmentation)
    encoder = encoder_for(family)
    layout = layout_of(family, probe.current.unwrapped)
    encoder_kwargs = dict((params.get("policy_kwargs") or {}).get("encoder_kwargs") or {})
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "env_id": env_id,
        "family": family,
        "encoder": encoder,
        "layout": layout,
        "encoder_kwargs": encoder_kwargs,
        **({"observation_augmentation": augmentation} if augmentation else {}),
        "observation_shapes": observation_shapes(probe.observation_space),
        "num_actions": int(probe.action_space.n),
        "algorithm": "MaskablePPO",
        "command": command or "schedgym train " + shlex.join(sys.argv[1:]),
        "seed": seed,
        "n_envs": n_envs,
        "scenarios": scenarios,
        "hyperparams": params,
        "training_seed_base": TRAINING_SEED_BASE,
        "machine": machine(),
        "libraries": library_versions(),
        "behaviour_cloning": None,
    }
    probe.close()
    torch.manual_seed(seed)
    factory = mix_env_factory(env_id, scenarios, augmentation)
    vec_kind = params.get("vec_env", "subproc")
    if vec_kind not in VEC_ENVS:
        raise ConfigError(f"vec_env: must be one of {VEC_ENVS}, got {vec_kind!r}")
    if n_envs == 1 or vec_kind == "dummy":
        vec_env: Any = DummyVecEnv([factory] * n_envs)
    else:
        vec_env = SubprocVecEnv([factory] * n_envs, start_method="forkserver")
    vec_env.seed(training_seed(seed, 0))
    model = MaskablePPO(
        CandidateScoringPolicy,
        vec_env,
        policy_kwargs=scoring_policy_kwargs(encoder, layout, encoder_kwargs),
        seed=seed,
        device=device,
        verbose=0,
        **{k: params[k] for k in PPO_KEYS if k in params},
    )
    started = time.perf_counter()
    if resume is not None:
        previous = read_metadata(resume)
        check_same_layout(previous, meta, str(resume))
        model.set_parameters(str(resume), exact_match=True, device=device)
        model.num_timesteps = int(previous["num_timesteps"])
        for key in ("behaviour_cloning", "learning_curve", "best_validation", "wall_time_s"):
            if key in previous:
                meta[key] = previous[key]
        meta["resumed_from"] = {
            "path": str(resume),
            "timesteps": model.num_timesteps,
            "command": previous.get("command"),
        }
    run = _Run(meta, out_dir, started)
    if resume is None and params.get("bc_policy"):
        meta["behaviour_cloning"] = warm_start(
            model.policy,
            env_id,
            scenarios,
            params,
            training_seed(seed, n_envs),
            log=(lambda line: print(line, file=sys.stderr, flush=True)) if progress else None,
        )
    episodes = int(params["eval_episodes"])
    validation_scenarios = eval_scenarios(params, scenarios) if not presets else scenarios
    meta["validation_scenarios"] = validation_scenarios
    if resume is None:
        run.evaluate_and_save(model, env_id, validation_scenarios, episodes)
    remaining = int(timesteps) - int(model.num_timesteps)
    bar = None
    if progress and remaining > 0:
        from tqdm import tqdm

        bar = tqdm(total=int(timesteps), initial=int(model.num_timesteps), unit="step")
    callbacks: list[BaseCallback] = [
        _Periodic(run, env_id, validation_scenarios, episodes, int(params["eval_freq"]), bar)
    ]
    wandb_cb = _wandb_callback(wandb_mode, wandb_explicit, meta, out_dir)
    if wandb_cb is not None:
        callbacks.append(wandb_cb)
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=False)
    if bar is not None:
        bar.close()
    if not run.curve or run.curve[-1]["timesteps"] != model.num_timesteps:
        run.evaluate_and_save(model, env_id, validation_scenarios, episodes)
    result = run.meta.get("validation") or {}
    vec_env.close()
    meta = dict(run.meta)
    meta["num_timesteps"] = int(model.num_timesteps)
    meta["validation"] = result
    meta["wall_time_s"] = round(run.wall_s(), 2)
    meta["learning_curve"] = run.curve
    return meta


def steps_per_second(meta: dict[str, Any]) -> float:
    """Timesteps per wall second of a finished run (validation included)."""
    return float(meta["num_timesteps"]) / max(float(meta["wall_time_s"]), 1e-9)
