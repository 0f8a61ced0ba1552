"""Behaviour-cloning teachers: the SoCDAG shortest-remaining-work ETF, PrefixBatch's BatchLLM
with overcommit."""

from __future__ import annotations

import gymnasium as gym
import pytest

import schedgym  # noqa: F401
from schedgym.core.errors import ConfigError
from schedgym.core.policy import make_policy
from schedgym.training.teachers import ShortestRemainingWorkETF, make_teacher

SOC = "schedgym/SoCDAG-v0"


def _actions_and_latency(policy, preset="heavy", seed=3, **overrides):
    env = gym.make(SOC, preset=preset, disable_env_checker=True, **overrides)
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


def _prefix_actions(policy, seed=4):
    env = gym.make(
        "schedgym/PrefixBatch-v0",
        preset="prefix-heavy",
        num_requests=150,
        kv_capacity_blocks=1500,
        disable_env_checker=True,
    )
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
    return actions, env.unwrapped.simulator.summary()


def test_batchllm_overcommit_teacher_packs_more_than_batchllm():
    from schedgym.baselines.prefix import BatchLLMPolicy
    from schedgym.training.teachers import labels_any_state

    prefix = "schedgym/PrefixBatch-v0"
    assert labels_any_state(prefix, "batchllm-overcommit")  # DAgger may use it
    batchllm, summary = _prefix_actions(make_policy(prefix, "batchllm"))
    assert _prefix_actions(BatchLLMPolicy(overcommit_fraction=0.0))[0] == batchllm
    overcommit, over_summary = _prefix_actions(make_teacher(prefix, "batchllm-overcommit"))
    assert overcommit != batchllm
    assert summary["preemptions"] == 0
    assert over_summary["peak_kv_blocks"] >= summary["peak_kv_blocks"]
