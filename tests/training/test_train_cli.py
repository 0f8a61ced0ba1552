"""``schedgym train`` in a subprocess on every environment: trains a few dozen steps, saves,
reloads through ``--policy PATH.zip`` and evaluates; plus resume and behaviour cloning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from schedgym.agents.layouts import ENCODERS

TINY = Path(__file__).parent / "tiny.yml"
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "schedgym.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def _in_process(tmp_path, family):
    """train() then evaluate the saved file through the policy registry, in this process.

    Returns (the reloaded policy's score on the first validation seed, the recorded score)."""
    import gymnasium as gym

    from schedgym.core.policy import make_policy
    from schedgym.core.rollout import run_episode
    from schedgym.training.train import train

    meta = train(
        f"{family}-v0",
        presets=["tiny"],
        timesteps=64,
        config_file=str(TINY),
        wandb_mode="disabled",
        out=tmp_path / "run",
        progress=False,
    )
    assert meta["num_timesteps"] >= 64
    env = gym.make(f"schedgym/{family}-v0", preset="tiny", disable_env_checker=True)
    policy = make_policy(f"schedgym/{family}-v0", str(tmp_path / "run" / "last.zip"))
    result = run_episode(env, policy, meta["validation"]["seeds"][0])
    return result.metrics[meta["validation"]["metric"]], meta["validation"]["mean"]


@pytest.mark.parametrize("family", sorted(set(ENCODERS) - {"SoCDAG"}))
def test_train_save_reload_evaluate_in_process(tmp_path, family):
    reloaded_score, recorded_score = _in_process(tmp_path, family)
    assert reloaded_score == pytest.approx(recorded_score)


# The subprocess form (CLI, fresh interpreter) costs an interpreter start and torch import per
# env: SoCDAG runs by default, the others are slow tests covered by the in-process test above.
@pytest.mark.parametrize(
    "family",
    [pytest.param(f, marks=() if f == "SoCDAG" else pytest.mark.slow) for f in sorted(ENCODERS)],
)
def test_train_save_reload_evaluate(tmp_path, family):
    out = tmp_path / "run"
    done = _run(
        "train", f"{family}-v0", "--preset", "tiny", "--timesteps", "64", "--config", str(TINY),
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["num_timesteps"] >= 64
    assert meta["env_id"] == f"schedgym/{family}-v0"
    assert meta["validation"]["seeds"][0] >= 10_000_000
    assert {"torch", "stable_baselines3", "sb3_contrib"} <= set(meta["libraries"])
    with zipfile.ZipFile(out / "last.zip") as archive:
        assert "schedgym.json" in archive.namelist()
    evaluated = _run(
        "evaluate", f"{family}-v0", "--policy", str(out / "last.zip"), "--preset", "tiny",
        "--seed", str(meta["validation"]["seeds"][0]), "--json",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    summary = json.loads(evaluated.stdout)["summary"]
    # The CLI's greedy evaluation of the saved file reproduces the in-training validation.
    assert summary[meta["validation"]["metric"]] == pytest.approx(meta["validation"]["mean"])


def test_resume_continues_and_bc_is_recorded(tmp_path):
    from schedgym.training.train import train

    out = tmp_path / "run"
    config = tmp_path / "bc.yml"
    config.write_text(
        TINY.read_text().replace("bc_policy: null", "bc_policy: heft")
        + "bc_episodes: 1\nbc_steps_per_episode: 50\nbc_epochs: 1\nbc_dagger_rounds: 0\n"
    )
    kwargs = dict(
        presets=["tiny"], seed=3, config_file=str(config), out=out, progress=False,
        wandb_mode="disabled",
    )  # fmt: skip
    meta = train("SoCDAG-v0", timesteps=32, **kwargs)
    assert meta["behaviour_cloning"]["policy"] == "heft"
    assert meta["behaviour_cloning"]["samples"] == 50
    after = train("SoCDAG-v0", timesteps=96, resume=str(out / "last.zip"), **kwargs)
    assert after["num_timesteps"] >= 96
    assert after["resumed_from"]["timesteps"] == meta["num_timesteps"]
    assert after["resumed_from"]["command"] == meta["command"]
    assert after["behaviour_cloning"] == meta["behaviour_cloning"]
    assert json.loads((out / "run.json").read_text())["num_timesteps"] == after["num_timesteps"]
    assert [p["timesteps"] for p in after["learning_curve"]][: len(meta["learning_curve"])] == [
        p["timesteps"] for p in meta["learning_curve"]
    ]


def test_dagger_rounds_aggregate_states_the_clone_visits(tmp_path):
    """Each round adds one collection of the clone's own episodes, labelled by the heuristic."""
    from schedgym.training.train import train

    config = tmp_path / "dagger.yml"
    config.write_text(
        TINY.read_text().replace("bc_policy: null", "bc_policy: sarathi-512")
        + "bc_episodes: 1\nbc_steps_per_episode: 30\nbc_epochs: 1\nbc_dagger_rounds: 2\n"
    )
    meta = train(
        "PrefillChunk-v0", presets=["tiny"], timesteps=32, config_file=str(config),
        out=tmp_path / "run", progress=False, wandb_mode="disabled",
    )  # fmt: skip
    cloning = meta["behaviour_cloning"]
    assert [r["samples"] for r in cloning["rounds"]] == [30, 60, 90]
    assert cloning["dagger_rounds"] == 2
    assert cloning["samples"] == 90


def test_collect_traces_labels_the_actors_states_with_the_heuristic():
    """With an actor, the actor's actions drive the episode and the heuristic's are recorded."""
    import numpy as np

    from schedgym.baselines.common import RandomMaskedPolicy
    from schedgym.training.bc import collect_traces, merge_traces

    scenarios = [{"preset": "tiny"}]
    own = collect_traces("schedgym/PrefillChunk-v0", scenarios, "sarathi-512", 1, 10_000, 0.99, 5)
    driven = collect_traces(
        "schedgym/PrefillChunk-v0", scenarios, "sarathi-512", 1, 10_000, 0.99, 5,
        actor=RandomMaskedPolicy(),
    )  # fmt: skip
    # sarathi-512 on tiny picks decode-only or stall-free 512 only; a random actor visits
    # other states (another number of steps) while the labels stay the heuristic's.
    assert set(driven["actions"].tolist()) <= {0, 3}
    assert len(driven["actions"]) != len(own["actions"])
    both = merge_traces(own, driven)
    assert len(both["actions"]) == len(own["actions"]) + len(driven["actions"])
    assert np.array_equal(both["masks"][: len(own["masks"])], own["masks"])


def test_train_rejects_bad_input(tmp_path):
    done = _run("train", "SoCDAG-v0", "--timesteps", "0", "--out", str(tmp_path))
    assert done.returncode == 2
    assert "--timesteps" in done.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("learning_rat: 0.1\n")
    done = _run("train", "SoCDAG-v0", "--config", str(bad), "--out", str(tmp_path))
    assert done.returncode == 2
    assert "learning_rat" in done.stderr


def test_dummy_vec_env_collects_the_same_rollouts_as_worker_processes(tmp_path):
    """``vec_env: dummy`` runs --n-envs envs in the learner's process: the same seeded envs as
    SubprocVecEnv's workers, so the same rollouts and the same trained network."""
    import torch

    from schedgym.agents.checkpoint import read_policy_state
    from schedgym.training.train import train

    states = {}
    for kind in ("dummy", "subproc"):
        config = tmp_path / f"{kind}.yml"
        config.write_text(TINY.read_text() + f"vec_env: {kind}\n")
        meta = train(
            "SoCDAG-v0",
            presets=["tiny"],
            timesteps=64,
            n_envs=2,
            config_file=str(config),
            wandb_mode="disabled",
            out=tmp_path / kind,
            progress=False,
        )
        assert meta["num_timesteps"] == 64
        states[kind] = read_policy_state(tmp_path / kind / "last.zip")
    for key, value in states["dummy"].items():
        assert torch.equal(value, states["subproc"][key]), key
    bad = tmp_path / "bad.yml"
    bad.write_text("vec_env: threads\n")
    done = _run("train", "SoCDAG-v0", "--config", str(bad), "--out", str(tmp_path / "bad"))
    assert done.returncode == 2
    assert "vec_env" in done.stderr


def test_n_envs_comes_from_the_file_unless_given(tmp_path):
    """SoCDAG's file runs 16 envs a rollout; `n_envs` in a config file applies when --n-envs is
    not given, --n-envs wins, and a bad value is refused naming both."""
    from schedgym.training.config import load_hyperparams
    from schedgym.training.train import train

    assert load_hyperparams("schedgym/SoCDAG-v0")["n_envs"] == 16
    config = tmp_path / "two.yml"
    config.write_text(TINY.read_text().replace("n_envs: 1", "n_envs: 2"))
    common = {"presets": ["tiny"], "timesteps": 64, "config_file": str(config)}
    common |= {"wandb_mode": "disabled", "progress": False}
    assert train("SoCDAG-v0", out=tmp_path / "file", **common)["n_envs"] == 2
    assert train("SoCDAG-v0", n_envs=1, out=tmp_path / "flag", **common)["n_envs"] == 1
    bad = tmp_path / "bad.yml"
    bad.write_text("n_envs: 0\n")
    done = _run("train", "SoCDAG-v0", "--config", str(bad), "--out", str(tmp_path / "bad"))
    assert done.returncode == 2
    assert "--n-envs / n_envs" in done.stderr
