"""rl-baselines3-zoo trains MaskablePPO on SoCDAG with hyperparameters derived from ours.

The subprocess test needs rl_zoo3, which is in the ``zoo`` extra and not in what ``make test``
installs (``.[dev,agents]``): its dependencies are ~80 MB (mostly imageio-ffmpeg's bundled
ffmpeg, via sb3-team-hf-integration and moviepy) and cap pillow below 12. Without rl_zoo3 that
test is skipped; the hyperparameter derivation is tested either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from schedgym.registration import env_ids
from schedgym.training.config import PPO_KEYS
from schedgym.training.zoo import hyperparams, zoo_hyperparams

ROOT = Path(__file__).resolve().parents[2]
# Keys rl_zoo3 consumes itself; every other key goes to the algorithm's constructor.
ZOO_KEYS = {"policy", "env_kwargs", "n_timesteps", "n_envs"}


def test_zoo_entry_builds_maskable_ppo_with_our_policy():
    from sb3_contrib import MaskablePPO

    from schedgym.agents.sb3 import CandidateScoringPolicy

    entry = zoo_hyperparams("SoCDAG-v0")
    assert set(entry) - ZOO_KEYS <= set(PPO_KEYS) | {"policy_kwargs"}
    assert entry["env_kwargs"] == {"preset": "heavy"}  # the first scenario of the file
    assert entry["gamma"] == 0.999  # the env's entry overrides default (0.99)
    assert entry["gae_lambda"] == 0.95  # default fills what the env's entry does not set
    assert entry["n_envs"] == 16 and entry["n_epochs"] == 2
    module, _, name = entry["policy"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is CandidateScoringPolicy
    env = gym.make("schedgym/SoCDAG-v0", preset="tiny", disable_env_checker=True)
    kwargs = {k: v for k, v in entry.items() if k not in ZOO_KEYS}
    model = MaskablePPO(CandidateScoringPolicy, env, **kwargs)
    assert isinstance(model.policy, CandidateScoringPolicy)
    assert model.n_steps == 32


def test_zoo_hyperparams_cover_every_env_and_only_them():
    assert list(hyperparams) == env_ids()
    assert "schedgym/SoCDAG-v0" in hyperparams
    with pytest.raises(KeyError):
        hyperparams["CartPole-v1"]


def test_rl_zoo3_trains_ppo_mask_on_socdag(tmp_path):
    pytest.importorskip("rl_zoo3")
    from sb3_contrib import MaskablePPO

    from schedgym.agents.sb3 import CandidateScoringPolicy

    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    command = [
        sys.executable, "-m", "schedgym.training.zoo",
        "--algo", "ppo_mask", "--env", "schedgym/SoCDAG-v0", "--gym-packages", "schedgym",
        "--conf-file", "schedgym.training.zoo", "-n", "256", "--seed", "0",
        "--env-kwargs", "preset:'tiny'",
        # The file's 16 envs (n_envs) x 16 steps: one rollout of 256 steps.
        "-params", "n_steps:16", "batch_size:32", "n_epochs:1",
        # One evaluation, so the mask-aware evaluation callback runs too.
        "--eval-freq", "256", "--eval-episodes", "1",
        "--num-threads", "1", "--log-folder", str(tmp_path), "--vec-env", "dummy",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run = tmp_path / "ppo_mask" / "schedgym-SoCDAG-v0_1"
    model = MaskablePPO.load(run / "schedgym-SoCDAG-v0.zip", device="cpu")
    assert model.num_timesteps == 256
    assert isinstance(model.policy, CandidateScoringPolicy)
    assert (run / "best_model.zip").is_file()
    assert "Eval num_timesteps=256" in done.stdout
