"""The prefix-admission observation augmentation: what it computes, and that a checkpoint
trained on it records it, is checked against the augmented layout and gets it at inference."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

import schedgym  # noqa: F401
from schedgym.agents.augment import AugmentObservation, augment, augmented_space
from schedgym.agents.checkpoint import FORMAT, add_metadata, layout_record, load_policy
from schedgym.agents.layouts import encoder_for
from schedgym.agents.policy import GNNPolicy
from schedgym.agents.sb3 import (
    CandidateScoringPolicy,
    build_encoder,
    scoring_policy_kwargs,
)
from schedgym.core.errors import ConfigError
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode

PREFIX = "schedgym/PrefixBatch-v0"
TIGHT = {"preset": "prefix-heavy", "num_requests": 120, "kv_capacity_blocks": 600}
KWARGS = {"hidden": 16, "admission_gain": 300.0}


def test_slack_sign_is_batchllms_admission_decision():
    # BatchLLM releases its current group while the projection fits under capacity minus the
    # watermark: exactly when that group's slack is non-negative (when it may run on).
    env = AugmentObservation(
        gym.make(PREFIX, disable_env_checker=True, **TIGHT), "prefix-admission"
    )
    assert set(env.observation_space.spaces) >= {"admission_slack", "admission_global"}
    obs, _ = env.reset(seed=2)
    teacher = make_policy(PREFIX, "batchllm")
    teacher.reset(env)
    decisions = {True: 0, False: 0}
    done = False
    while not done:
        assert env.observation_space.contains(obs)
        sim = env.unwrapped.simulator
        action = teacher.act(obs, env)
        # BatchLLM's current group: the largest decode ratio with requests pending.
        ratio = sim.group_output_tokens / np.maximum(sim.group_prompt_tokens, 1)
        pending = np.flatnonzero(sim.group_pending > 0)
        group = int(pending[np.argmax(ratio[pending])]) if len(pending) else -1
        if group >= 0 and sim.releasable(group) and sim.can_run():
            released = action == group
            assert released == (obs["admission_slack"][group] >= 0)
            decisions[released] += 1
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    assert min(decisions.values()) > 5


def test_unknown_or_foreign_augmentation_is_refused():
    env = gym.make("schedgym/SoCDAG-v0", preset="tiny", disable_env_checker=True)
    with pytest.raises(ConfigError, match="PrefixBatch"):
        layout_record("SoCDAG", env, "prefix-admission")
    with pytest.raises(ConfigError, match="unknown"):
        augmented_space("no-such", env)


def _save_augmented(path):
    env = AugmentObservation(
        gym.make(PREFIX, disable_env_checker=True, **TIGHT), "prefix-admission"
    )
    record = layout_record("PrefixBatch", env.env, "prefix-admission")
    model = MaskablePPO(
        CandidateScoringPolicy,
        env,
        n_steps=16,
        batch_size=8,
        seed=0,
        policy_kwargs=scoring_policy_kwargs(encoder_for("PrefixBatch"), record["layout"], KWARGS),
    )
    with torch.no_grad():  # make the run-on score follow the slack, so the path matters
        model.policy.features_extractor.encoder.run_linear.weight.fill_(-1.0)
    model.save(path)
    add_metadata(
        path,
        {
            "format": FORMAT,
            "env_id": PREFIX,
            "encoder": encoder_for("PrefixBatch"),
            "encoder_kwargs": KWARGS,
            "observation_augmentation": "prefix-admission",
            **record,
        },
    )
    return model, env


def test_augmented_checkpoint_acts_on_the_plain_env_as_on_the_wrapped_one(tmp_path):
    path = tmp_path / "agent.zip"
    model, wrapped = _save_augmented(path)
    plain = gym.make(PREFIX, disable_env_checker=True, **TIGHT)
    assert "admission_slack" not in plain.observation_space.spaces
    _, meta = load_policy(path, plain)
    assert meta["observation_augmentation"] == "prefix-admission"
    agent = GNNPolicy(path)
    assert agent.incompatibility(plain) is None
    obs, _ = plain.reset(seed=4)
    wrapped_obs, _ = wrapped.reset(seed=4)
    agent.reset(plain)
    for _ in range(40):
        action = agent.act(obs, plain)
        assert plain.unwrapped.action_masks()[action]
        # The policy adds the same keys the training wrapper adds.
        for key, value in augment("prefix-admission", obs, plain).items():
            np.testing.assert_array_equal(value, wrapped_obs[key])
        batch = {k: torch.as_tensor(np.asarray(v)[None]) for k, v in wrapped_obs.items()}
        with torch.no_grad():
            logits = model.policy.action_logits(batch)[0].numpy()
        valid = plain.unwrapped.action_masks()
        assert action == int(np.argmax(np.where(valid, logits, -np.inf)))
        obs, *_ = plain.step(action)
        wrapped_obs, *_ = wrapped.step(action)
    assert run_episode(plain, agent, 5).metrics["requests_completed"] == 120


def test_augmented_checkpoint_is_refused_where_the_layout_differs(tmp_path):
    path = tmp_path / "agent.zip"
    _save_augmented(path)
    other = gym.make(PREFIX, disable_env_checker=True, preset="tiny")
    assert "observation shapes" in GNNPolicy(path).incompatibility(other)


def test_admission_gain_moves_the_run_score_with_the_current_groups_slack():
    env = AugmentObservation(
        gym.make(PREFIX, disable_env_checker=True, **TIGHT), "prefix-admission"
    )
    obs, _ = env.reset(seed=1)
    net = build_encoder(encoder_for("PrefixBatch"), env.observation_space, {}, **KWARGS)
    plain = build_encoder(
        encoder_for("PrefixBatch"), env.unwrapped.observation_space, {}, hidden=16
    )
    # Without the gain the encoder has the parameters older checkpoints were saved with.
    assert not any("run_linear" in name for name, _ in plain.named_parameters())
    with torch.no_grad():
        net.run_linear.weight.fill_(-1.0)
        batch = {k: torch.as_tensor(np.asarray(v)[None]) for k, v in obs.items()}
        base = net(batch)[0][0, -1]
        batch["admission_slack"] = batch["admission_slack"] - 0.01
        lower = net(batch)[0][0, -1]
    # The row and context MLPs see the change too; the linear path alone is 300 x 0.01 = 3.
    assert float(lower - base) == pytest.approx(3.0, abs=0.5)
