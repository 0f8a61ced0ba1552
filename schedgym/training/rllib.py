"""``schedgym train --backend rllib``: Ray RLlib's PPO (new API stack) with action masking.

The same environment as the SB3 backend (the hyperparameter file's scenario mix), the same
per-candidate scoring encoder, on a Ray cluster (``ray_address``) or a local Ray. Users who
outgrow one machine scale out with ``--n-envs K``: K EnvRunner actors sample in parallel on the
cluster, the learner updates on the driver.

- The env is registered with ``ray.tune.registry.register_env`` under :data:`RLLIB_ENV_NAME` from
  this importable module, so EnvRunners on other machines build it by name (schedgym must be
  installed there). Its observation is RLlib's action-masking form: ``{"observations": our Dict
  observation, "action_mask": (A,) float32, 1 = valid}``.
- :class:`ScoringRLModule` is a ``TorchRLModule`` with ``ValueFunctionAPI`` around our encoder
  (RLlib's example ``ActionMaskingTorchRLModule`` builds RLlib's default MLP, which cannot read
  our nested Dict observation): logits = encoder scores, masked before the softmax by adding
  ``log(mask)`` clamped to ``FLOAT_MIN`` (the example's way); values from the encoder's value
  embedding through the same head shape as the SB3 policy.
- PPO arguments come from ``maskable_ppo.yml`` (SB3 names) through :data:`RLLIB_PPO_ARGUMENTS`;
  RLlib's KL penalty and value-loss clipping are off, as in SB3's PPO. Behaviour cloning is not
  applied on this backend.
- ``out`` receives ``checkpoint/`` (``Algorithm.save_to_path``; replaced whole at each save) and
  ``run.json`` (strict JSON, atomic): the command, seeds, steps, wall time, learning curve and
  the greedy validation score on the validation seeds.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN
from torch import nn

from schedgym.agents.augment import check_augmentation
from schedgym.agents.layouts import encoder_for, layout_of
from schedgym.agents.policy import NetworkPolicy
from schedgym.agents.sb3 import build_encoder
from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import write_json_atomic
from schedgym.core.policy import env_family
from schedgym.training.config import eval_scenarios, load_hyperparams, scenarios_with_presets
from schedgym.training.envs import ScenarioMixEnv, num_actions
from schedgym.training.evaluation import validate
from schedgym.training.seeds import TRAINING_SEED_BASE, check_disjoint, training_seed
from schedgym.training.train import library_versions, machine

RLLIB_ENV_NAME = "schedgym-rllib-masked"
# maskable_ppo.yml key (SB3's name) -> PPOConfig.training() argument.
RLLIB_PPO_ARGUMENTS = {
    "batch_size": "minibatch_size",
    "n_epochs": "num_epochs",
    "learning_rate": "lr",
    "gamma": "gamma",
    "gae_lambda": "lambda_",
    "clip_range": "clip_param",
    "ent_coef": "entropy_coeff",
    "vf_coef": "vf_loss_coeff",
    "max_grad_norm": "grad_clip",
}


class MaskedObservationEnv(gym.Env):
    """``{"observations": obs, "action_mask": mask}`` around an env with ``action_masks()``."""

    def __init__(self, env: gym.Env) -> None:
        self.env: Any = env  # any env with action_masks() (a ScenarioMixEnv, a schedgym env)
        actions = num_actions(env)
        self.action_space = gym.spaces.Discrete(actions)
        self.observation_space = gym.spaces.Dict(
            {
                "observations": env.observation_space,
                "action_mask": gym.spaces.Box(0.0, 1.0, (actions,), np.float32),
            }
        )

    def _wrap(self, observation: Any) -> dict[str, Any]:
        mask = np.asarray(self.env.action_masks(), dtype=np.float32)
        return {"observations": observation, "action_mask": mask}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        return self._wrap(observation), info

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(int(action))
        return self._wrap(observation), float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return np.asarray(self.env.action_masks(), dtype=bool)

    def close(self) -> None:
        self.env.close()


def make_rllib_env(env_config: dict[str, Any]) -> MaskedObservationEnv:
    """The env creator registered with Ray: ``env_config`` holds ``env_id``, ``scenarios`` and
    maybe ``augmentation`` (the agent's observation augmentation)."""
    import schedgym  # noqa: F401  (registers the ids in a fresh EnvRunner process)

    return MaskedObservationEnv(
        ScenarioMixEnv(
            env_config["env_id"], env_config["scenarios"], env_config.get("augmentation")
        )
    )


def register_rllib_env() -> str:
    """Register :func:`make_rllib_env` with Ray under :data:`RLLIB_ENV_NAME`; returns the name."""
    from ray.tune.registry import register_env

    register_env(RLLIB_ENV_NAME, make_rllib_env)
    return RLLIB_ENV_NAME


class ScoringRLModule(TorchRLModule, ValueFunctionAPI):
    """PPO RLModule over a schedgym encoder with the action mask applied before the softmax.

    ``model_config``: ``encoder`` (``module:Class``), ``layout`` and ``encoder_kwargs``, as in
    the SB3 policy's extractor.
    """

    def setup(self) -> None:
        config = cast(dict[str, Any], self.model_config)
        observation_space = cast(gym.spaces.Dict, self.observation_space)
        actions = int(cast(gym.spaces.Discrete, self.action_space).n)
        self.encoder = build_encoder(
            config["encoder"],
            cast(gym.spaces.Dict, observation_space["observations"]),
            config["layout"],
            **(config.get("encoder_kwargs") or {}),
        )
        if self.encoder.num_actions != actions:
            raise ConfigError(
                f"layout: the encoder scores {self.encoder.num_actions} actions, the env has "
                f"{actions}"
            )
        dim = int(self.encoder.value_dim)
        self.value_head = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    @staticmethod
    def _float(observations: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The encoders read float32, as SB3 hands them (ids and masks are cast back inside).
        return {key: value.float() for key, value in observations.items()}

    def action_logits(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unmasked per-action scores of a batch of env observations (the ``observations``
        part); what :func:`schedgym.agents.policy.greedy_action` reads."""
        return self.encoder(self._float(observations))[0]

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        logits, embedding = self.encoder(self._float(obs["observations"]))
        masked = logits + torch.clamp(torch.log(obs["action_mask"].float()), min=FLOAT_MIN)
        return {Columns.ACTION_DIST_INPUTS: masked, Columns.EMBEDDINGS: embedding}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            embeddings = self.encoder(self._float(batch[Columns.OBS]["observations"]))[1]
        return self.value_head(embeddings).squeeze(-1)


def ppo_config(
    params: dict[str, Any],
    env_config: dict[str, Any],
    model_config: dict[str, Any],
    seed: int,
    num_env_runners: int,
) -> Any:
    """The ``PPOConfig`` of a run (new API stack, torch)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    # RLlib always standardises advantages (over the train batch) and has no KL early stop.
    if params.get("normalize_advantage") is False:
        raise ConfigError("normalize_advantage: must be true with --backend rllib")
    if params.get("target_kl") is not None:
        raise ConfigError("target_kl: not supported with --backend rllib; remove it")
    n_steps = int(params["n_steps"])
    training = {RLLIB_PPO_ARGUMENTS[k]: params[k] for k in RLLIB_PPO_ARGUMENTS if k in params}
    return (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(RLLIB_ENV_NAME, env_config=env_config, disable_env_checking=True)
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=1,
            # SB3's n_steps is per env: each runner collects n_steps per iteration.
            rollout_fragment_length=n_steps,
        )
        .training(
            train_batch_size_per_learner=n_steps * max(1, num_env_runners),
            use_kl_loss=False,
            vf_clip_param=float("inf"),
            **training,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(module_class=ScoringRLModule, model_config=model_config)
        )
        # Env seeds are config.seed + runner index: inside this run's block of training seeds,
        # disjoint from the leaderboard's test seeds.
        .debugging(seed=training_seed(seed, 0))
    )


def _iteration_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The learning-curve point of one ``Algorithm.train()`` result."""
    learner = result.get("learners", {}).get("default_policy", {})
    summary: dict[str, Any] = {
        "timesteps": int(result["num_env_steps_sampled_lifetime"]),
        # Samples the learner trained on so far (minibatch rows over all epochs).
        "module_steps_trained": int(learner.get("num_module_steps_trained_lifetime", 0)),
        # None until an episode has ended.
        "episode_return_mean": result.get("env_runners", {}).get("episode_return_mean"),
    }
    for key in ("policy_loss", "vf_loss", "entropy"):
        if key in learner:
            summary[key] = float(learner[key])
    return summary


def _save_checkpoint(algo: Any, out: Path) -> Path:
    """``out/checkpoint``, replaced whole: written beside it, then swapped in by renames."""
    final = out / "checkpoint"
    tmp = out / ".checkpoint.tmp"
    old = out / ".checkpoint.old"
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    algo.save_to_path(str(tmp.resolve()))
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def _ray_init(ray_address: str | None, num_cpus: int) -> bool:
    """Connect to ``ray_address`` or start a local Ray; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if ray_address:
        ray.init(address=ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def train_rllib(
    env_id: str,
    presets: list[str] | None = None,
    timesteps: int = 10_000,
    seed: int = 0,
    n_envs: int = 1,
    config_file: str | None = None,
    out: str | Path = "runs",
    ray_address: str | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train with RLlib PPO; returns the ``run.json`` content. See the module docstring.

    ``n_envs`` = 1 samples in the driver process; ``n_envs`` = K > 1 starts K EnvRunner actors.
    """
    import ray

    import schedgym  # noqa: F401
    from schedgym.registration import env_entry

    env_id = env_entry(env_id).env_id
    family = env_family(env_id)
    if timesteps < 1:
        raise ConfigError(f"--timesteps: must be >= 1, got {timesteps}")
    if not 1 <= n_envs <= 64:
        raise ConfigError(f"--n-envs: must be in [1, 64], got {n_envs}")
    check_disjoint()
    params = load_hyperparams(env_id, config_file)
    scenarios = scenarios_with_presets(params, presets)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    augmentation = params.get("observation_augmentation")
    check_augmentation(augmentation, family)
    probe = ScenarioMixEnv(env_id, scenarios, augmentation)
    model_config = {
        "encoder": encoder_for(family),
        "layout": layout_of(family, probe.current.unwrapped),
        "encoder_kwargs": dict((params.get("policy_kwargs") or {}).get("encoder_kwargs") or {}),
    }
    probe.close()
    num_env_runners = n_envs if n_envs > 1 else 0
    env_config = {"env_id": env_id, "scenarios": scenarios, "augmentation": augmentation}
    config = ppo_config(params, env_config, model_config, seed, num_env_runners)
    validation_scenarios = eval_scenarios(params, scenarios) if not presets else scenarios
    meta: dict[str, Any] = {
        "env_id": env_id,
        "family": family,
        "backend": "rllib",
        "algorithm": "RLlib PPO (new API stack) with action masking",
        "command": command or "schedgym train " + shlex.join(sys.argv[1:]),
        "seed": seed,
        "n_envs": n_envs,
        "ray_address": ray_address,
        "scenarios": scenarios,
        "validation_scenarios": validation_scenarios,
        "hyperparams": params,
        "rllib_training": {
            **{RLLIB_PPO_ARGUMENTS[k]: params[k] for k in RLLIB_PPO_ARGUMENTS if k in params},
            "train_batch_size_per_learner": config.train_batch_size_per_learner,
            "rollout_fragment_length": config.rollout_fragment_length,
            "num_env_runners": num_env_runners,
            "use_kl_loss": False,
            "vf_clip_param": None,  # no clipping (inf), as SB3's PPO
            "seed": config.seed,
        },
        "model_config": model_config,
        "training_seed_base": TRAINING_SEED_BASE,
        "behaviour_cloning": None,
    }
    meta["machine"] = machine()
    meta["libraries"] = {**library_versions(), "ray": ray.__version__}
    started_here = _ray_init(ray_address, num_cpus=num_env_runners + 1)
    started = time.perf_counter()
    algo = None
    try:
        register_rllib_env()
        algo = config.build_algo()
        curve: list[dict[str, Any]] = []
        steps = 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=int(timesteps), unit="step")
        while steps < timesteps:
            result = algo.train()
            steps = int(result["num_env_steps_sampled_lifetime"])
            curve.append(
                {
                    **_iteration_summary(result),
                    "wall_time_s": round(time.perf_counter() - started, 2),
                }
            )
            if bar is not None:
                bar.update(min(steps, timesteps) - bar.n)
        if bar is not None:
            bar.close()
        checkpoint = _save_checkpoint(algo, out_dir)
        module = algo.get_module()
        module.eval()
        validation = validate(
            env_id,
            validation_scenarios,
            NetworkPolicy(module),
            int(params["eval_episodes"]),
            augmentation,
        )
    finally:
        if algo is not None:
            algo.stop()
        if started_here:
            ray.shutdown()
    meta.update(
        num_timesteps=steps,
        wall_time_s=round(time.perf_counter() - started, 2),
        learning_curve=curve,
        validation=validation,
        checkpoint=str(checkpoint),
    )
    write_json_atomic(out_dir / "run.json", meta)
    return meta
