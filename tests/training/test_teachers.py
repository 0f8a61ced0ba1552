"""Behaviour-cloning teachers: the SoCDAG shortest-remaining-work ETF, the MeshAssign ByteScale
degree escalation, PrefixBatch's BatchLLM with overcommit."""

from __future__ import annotations

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedgym  # noqa: F401
from schedgym.core.errors import ConfigError
from schedgym.core.policy import make_policy
from schedgym.training.teachers import (
    ByteScaleEscalation,
    ShortestRemainingWorkETF,
    labels_any_state,
    make_teacher,
)

SOC = "schedgym/SoCDAG-v0"
MESH = "schedgym/MeshAssign-v0"


def _masked_actions(env, policy, seed):
    """One episode of ``policy`` (each action checked against the mask); its actions."""
    obs, _ = env.reset(seed=seed)
    policy.reset(env)
    actions = []
    done = False
    while not done:
        action = policy.act(obs, env)
        assert env.unwrapped.action_masks()[action]
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return actions


def _actions_and_latency(policy, preset="heavy", seed=3, **overrides):
    env = gym.make(SOC, preset=preset, disable_env_checker=True, **overrides)
    actions = _masked_actions(env, policy, seed)
    return actions, env.unwrapped.simulator.summary()["mean_job_latency_us"]


def test_zero_weight_is_etf_action_for_action():
    etf, etf_latency = _actions_and_latency(make_policy(SOC, "etf"), num_jobs=40)
    zero, zero_latency = _actions_and_latency(ShortestRemainingWorkETF(0.0), num_jobs=40)
    assert zero == etf
    assert zero_latency == etf_latency


def test_job_priority_lowers_mean_latency_under_load():
    """Under heavy load, ranking jobs by remaining work lowers the mean latency against ETF on
    every one of three seeds (the mechanism the SoCDAG agent is warm-started from)."""
    for seed in (3, 4, 5):
        _, etf = _actions_and_latency(make_policy(SOC, "etf"), seed=seed, num_jobs=120)
        _, srpt = _actions_and_latency(
            make_teacher(SOC, "etf-shortest-remaining"), seed=seed, num_jobs=120
        )
        assert srpt < 0.95 * etf


def test_unknown_teacher_is_refused_with_the_known_names():
    with pytest.raises(ConfigError, match="unknown policy"):
        make_teacher(SOC, "no-such-teacher")
    assert make_teacher(SOC, "heft") is not None


def _placement_finish_s(sim, action):
    k, slot = sim.decode(action)
    return float(sim.placement_finish_s(k)[slot])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), capacity=st.sampled_from([2048, 4096, 8192]))
def test_escalation_keeps_bytescale_unless_the_sequence_would_stick_out(seed, capacity):
    """At every decision: where ByteScale's placement finishes within the ideal compute time the
    teacher takes it; otherwise it takes a placement that finishes no later (within the ideal
    compute time if one does, else the earliest of every degree)."""
    env = gym.make(MESH, preset="tiny", capacity_tokens_per_rank=capacity, disable_env_checker=True)
    obs, _ = env.reset(seed=seed)
    teacher, bytescale = ByteScaleEscalation(), make_policy(MESH, "bytescale")
    teacher.reset(env)
    bytescale.reset(env)
    sim = env.unwrapped.simulator
    done = False
    while not done:
        action, baseline = teacher.act(obs, env), bytescale.act(obs, env)
        assert env.unwrapped.action_masks()[action]
        finish, baseline_finish = (
            _placement_finish_s(sim, action),
            _placement_finish_s(sim, baseline),
        )
        if baseline_finish <= sim.ideal_compute_s:
            assert action == baseline
        else:
            assert finish <= baseline_finish
            k_min, k_max = sim.degree_range()
            earliest = min(sim.placement_finish_s(k).min() for k in range(k_min, k_max + 1))
            assert finish <= sim.ideal_compute_s or finish == earliest
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated


def _mean_step_time_s(policy, preset, seed):
    env = gym.make(MESH, preset=preset, disable_env_checker=True)
    obs, _ = env.reset(seed=seed)
    policy.reset(env)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.act(obs, env))
        done = terminated or truncated
    return info["step_time_s"]


def test_escalation_shortens_long_tailed_steps_and_labels_any_state():
    """The mechanism the MeshAssign agent is warm-started from: on a validation seed of
    `long-tail-heavy` the step is more than 10% shorter than ByteScale's."""
    seed = 10_000_000
    teacher = _mean_step_time_s(make_teacher(MESH, "bytescale-escalate"), "long-tail-heavy", seed)
    bytescale = _mean_step_time_s(make_policy(MESH, "bytescale"), "long-tail-heavy", seed)
    assert teacher < 0.9 * bytescale
    assert labels_any_state(MESH, "bytescale-escalate")


def _prefix_actions(policy, seed=4):
    env = gym.make(
        "schedgym/PrefixBatch-v0",
        preset="prefix-heavy",
        num_requests=150,
        kv_capacity_blocks=1500,
        disable_env_checker=True,
    )
    actions = _masked_actions(env, policy, seed)
    return actions, env.unwrapped.simulator.summary()


def test_batchllm_overcommit_teacher_packs_more_than_batchllm():
    from schedgym.baselines.prefix import BatchLLMPolicy

    prefix = "schedgym/PrefixBatch-v0"
    assert labels_any_state(prefix, "batchllm-overcommit")  # DAgger may use it
    batchllm, summary = _prefix_actions(make_policy(prefix, "batchllm"))
    assert _prefix_actions(BatchLLMPolicy(overcommit_fraction=0.0))[0] == batchllm
    overcommit, over_summary = _prefix_actions(make_teacher(prefix, "batchllm-overcommit"))
    assert overcommit != batchllm
    assert summary["preemptions"] == 0
    assert over_summary["peak_kv_blocks"] >= summary["peak_kv_blocks"]
