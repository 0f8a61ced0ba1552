"""``schedgym train --backend rllib``: RLlib PPO with action masking.

Needs Ray RLlib (the ``ray`` extra), which ``make test`` does not install (``.[dev,agents]``;
Ray is ~700 MB): without it every test here is skipped. The pieces (env creator, module, mask,
PPO arguments, CLI checks) run in the default run; the end-to-end training, which starts a
local Ray (tens of seconds before the first step), is a slow test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray.rllib")

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from schedgym.agents.layouts import encoder_for, layout_of
from schedgym.agents.policy import NetworkPolicy
from schedgym.cli import main
from schedgym.core.errors import ConfigError
from schedgym.core.rollout import run_episode
from schedgym.training.config import load_hyperparams
from schedgym.training.rllib import (
    RLLIB_ENV_NAME,
    ScoringRLModule,
    make_rllib_env,
    ppo_config,
)
from schedgym.training.seeds import training_seed

ENV_ID = "schedgym/SoCDAG-v0"
TINY = Path(__file__).parent / "tiny.yml"
ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [{"preset": "tiny"}]


def _model_config():
    env = gym.make(ENV_ID, preset="tiny", disable_env_checker=True)
    return {
        "encoder": encoder_for("SoCDAG"),
        "layout": layout_of("SoCDAG", env.unwrapped),
        "encoder_kwargs": {"hidden": 16},
    }


def _module(env):
    torch.manual_seed(0)
    spec = RLModuleSpec(
        module_class=ScoringRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config=_model_config(),
    )
    return spec.build()


def _batch(observations):
    """A batch of env observations as RLlib's connectors hand them (tensors, env dtypes)."""
    return {
        Columns.OBS: {
            "observations": {
                key: torch.as_tensor(np.stack([o["observations"][key] for o in observations]))
                for key in observations[0]["observations"]
            },
            "action_mask": torch.as_tensor(np.stack([o["action_mask"] for o in observations])),
        }
    }


def test_env_creator_adds_the_action_mask_to_the_observation():
    env = make_rllib_env({"env_id": ENV_ID, "scenarios": SCENARIOS})
    observation, _ = env.reset(seed=training_seed(0, 0))
    assert env.observation_space.contains(observation)
    for _ in range(20):
        mask = observation["action_mask"]
        assert mask.dtype == np.float32
        np.testing.assert_array_equal(mask > 0.5, env.action_masks())
        assert mask.sum() >= 1
        observation, _, terminated, truncated, _ = env.step(int(np.flatnonzero(mask)[-1]))
        assert not (terminated or truncated)
        assert env.observation_space.contains(observation)


def test_module_masks_logits_and_computes_values():
    env = make_rllib_env({"env_id": ENV_ID, "scenarios": SCENARIOS})
    first, _ = env.reset(seed=training_seed(0, 0))
    second, *_ = env.step(int(np.flatnonzero(first["action_mask"])[0]))
    module = _module(env)
    batch = _batch([first, second])
    with torch.no_grad():
        out = module.forward_exploration(batch)
        raw = module.action_logits(batch[Columns.OBS]["observations"])
        values = module.compute_values(batch)
        values_from_embeddings = module.compute_values(
            batch, embeddings=module.forward_train(batch)[Columns.EMBEDDINGS]
        )
    logits = out[Columns.ACTION_DIST_INPUTS]
    mask = batch[Columns.OBS]["action_mask"] > 0.5
    assert logits.shape == (2, env.action_space.n)
    # Valid actions keep the encoder's scores; masked ones can never be sampled.
    torch.testing.assert_close(logits[mask], raw[mask])
    assert (logits[~mask] < -1e30).all()
    probabilities = torch.softmax(logits, -1)
    assert probabilities[~mask].sum() == 0.0
    sampled = torch.distributions.Categorical(logits=logits).sample((200,))
    assert mask.gather(1, sampled.T).all()
    assert values.shape == (2,)
    torch.testing.assert_close(values, values_from_embeddings)


def test_greedy_module_plays_a_valid_episode():
    env = make_rllib_env({"env_id": ENV_ID, "scenarios": SCENARIOS})
    module = _module(env)
    game = gym.make(ENV_ID, preset="tiny", disable_env_checker=True)
    result = run_episode(game, NetworkPolicy(module), seed=10_000_000)
    assert result.metrics["jobs_completed"] > 0


def test_ppo_config_maps_our_hyperparameters():
    params = load_hyperparams(ENV_ID, TINY)
    config = ppo_config(
        params, {"env_id": ENV_ID, "scenarios": SCENARIOS}, _model_config(), 3, num_env_runners=2
    )
    assert config.env == RLLIB_ENV_NAME
    assert config.lr == params["learning_rate"]
    assert config.minibatch_size == params["batch_size"]
    assert config.num_epochs == params["n_epochs"]
    assert config.clip_param == params["clip_range"]
    assert config.entropy_coeff == params["ent_coef"]
    assert config.lambda_ == params["gae_lambda"]
    assert config.rollout_fragment_length == params["n_steps"]
    assert config.train_batch_size_per_learner == 2 * params["n_steps"]
    assert config.num_env_runners == 2
    assert not config.use_kl_loss
    # Env seeds (config.seed + runner index) stay in this run's block of training seeds.
    assert config.seed == training_seed(3, 0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"normalize_advantage": False}, "normalize_advantage: must be true"),
        ({"target_kl": 0.02}, "target_kl: not supported"),
    ],
)
def test_ppo_config_refuses_what_rllib_cannot_do(override, message):
    params = {**load_hyperparams(ENV_ID, TINY), **override}
    with pytest.raises(ConfigError, match=message):
        ppo_config(params, {"env_id": ENV_ID, "scenarios": SCENARIOS}, _model_config(), 0, 0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resume", "x.zip"], "--resume: not supported with --backend rllib"),
        (["--wandb", "offline"], "--wandb (other than disabled): not supported"),
    ],
)
def test_cli_refuses_what_the_rllib_backend_does_not_do(tmp_path, capsys, extra, message):
    args = ["train", "SoCDAG-v0", "--backend", "rllib", "--out", str(tmp_path), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_ray_address_needs_the_rllib_backend(tmp_path, capsys):
    assert main(["train", "SoCDAG-v0", "--ray-address", "auto", "--out", str(tmp_path)]) == 2
    assert "--ray-address: only with --backend rllib" in capsys.readouterr().err


def _train(out: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        WANDB_MODE="disabled",
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=str(ROOT),
    )
    command = [
        sys.executable, "-m", "schedgym.cli", "train", "SoCDAG-v0", "--backend", "rllib",
        "--preset", "tiny", "--timesteps", "64", "--seed", "1", "--config", str(TINY),
        "--out", str(out), "--no-progress",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow  # a local Ray and RLlib's algorithm take ~30-60 s to start on 2 busy cores
def test_rllib_backend_trains_checkpoints_and_reproduces(tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        done = _train(out)
        assert done.returncode == 0, done.stderr[-3000:]
    first, second = (json.loads((out / "run.json").read_text()) for out in runs)
    assert first["backend"] == "rllib"
    assert first["num_timesteps"] >= 64
    assert first["learning_curve"][-1]["module_steps_trained"] > 0
    # Same seed, same run: losses and validation bit for bit.
    strip = ("wall_time_s",)
    assert [{k: v for k, v in p.items() if k not in strip} for p in first["learning_curve"]] == [
        {k: v for k, v in p.items() if k not in strip} for p in second["learning_curve"]
    ]
    assert first["validation"] == second["validation"]
    # The checkpoint's module reproduces the recorded validation score.
    module_dir = runs[0] / "checkpoint" / "learner_group" / "learner" / "rl_module"
    module = RLModule.from_checkpoint(module_dir / "default_policy")
    assert isinstance(module, ScoringRLModule)
    game = gym.make(ENV_ID, preset="tiny", disable_env_checker=True)
    seed = first["validation"]["seeds"][0]
    score = run_episode(game, NetworkPolicy(module), seed).metrics[first["validation"]["metric"]]
    assert score == pytest.approx(first["validation"]["mean"])
