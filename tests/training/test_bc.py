"""Behaviour cloning and its DAgger rounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv

import schedgym  # noqa: F401
from schedgym.agents.layouts import encoder_for, layout_of
from schedgym.agents.sb3 import CandidateScoringPolicy, scoring_policy_kwargs
from schedgym.core.errors import ConfigError
from schedgym.core.policy import make_policy
from schedgym.training.bc import collect_traces, warm_start
from schedgym.training.envs import ScenarioMixEnv, mix_env_factory

SOC = "schedgym/SoCDAG-v0"
TINY = [{"preset": "tiny"}]


def _model():
    torch.manual_seed(0)
    probe = ScenarioMixEnv(SOC, TINY)
    layout = layout_of("SoCDAG", probe.current.unwrapped)
    return MaskablePPO(
        CandidateScoringPolicy,
        DummyVecEnv([mix_env_factory(SOC, TINY)]),
        n_steps=32,
        batch_size=16,
        policy_kwargs=scoring_policy_kwargs(encoder_for("SoCDAG"), layout, {"hidden": 8}),
        seed=0,
    )


def test_an_actor_takes_the_actions_and_the_teacher_labels_them():
    """DAgger traces: the random actor's trajectory, each state labelled with FCFS's choice."""
    own = collect_traces(SOC, TINY, "fcfs", 1, 10_000, 0.99, 5)
    driven = collect_traces(SOC, TINY, "fcfs", 1, 10_000, 0.99, 5, actor=make_policy(SOC, "random"))
    assert not np.array_equal(own["actions"], driven["actions"][: len(own["actions"])])
    # Every label is valid in the state it labels, and the same seeds give the same traces.
    assert driven["masks"][np.arange(len(driven["actions"])), driven["actions"]].all()
    replay = collect_traces(SOC, TINY, "fcfs", 1, 10_000, 0.99, 5, actor=make_policy(SOC, "random"))
    np.testing.assert_array_equal(replay["actions"], driven["actions"])


def test_warm_start_runs_dagger_rounds_and_reports_them():
    model = _model()
    params = {
        "bc_policy": "etf-shortest-remaining",
        "bc_episodes": 1,
        "bc_steps_per_episode": 64,
        "bc_epochs": 2,
        "bc_learning_rate": 0.003,
        "bc_batch_size": 16,
        "bc_dagger_rounds": 2,
        "batch_size": 16,
        "gamma": 0.99,
    }
    report = warm_start(model.policy, SOC, TINY, params, 20_000_000)
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    samples = [r["samples"] for r in report["rounds"]]
    assert samples[0] < samples[1] < samples[2] == report["samples"]
    for entry in report["rounds"][1:]:
        assert 0.0 <= entry["on_policy_agreement"] <= 1.0
    assert report["dagger_rounds"] == 2


def test_dagger_refuses_a_teacher_that_plans_from_its_own_actions():
    params = {
        "bc_policy": "heft",
        "bc_episodes": 1,
        "bc_steps_per_episode": 8,
        "bc_epochs": 1,
        "bc_learning_rate": 0.003,
        "bc_dagger_rounds": 1,
        "batch_size": 16,
        "gamma": 0.99,
    }
    with pytest.raises(ConfigError, match="bc_dagger_rounds"):
        warm_start(_model().policy, SOC, TINY, params, 20_000_000)
