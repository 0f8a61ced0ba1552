"""PrefixBatch baselines: FCFS with an LRU prefix cache, BatchLLM, random; the paper's effect."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode

ENV_ID = "schedgym/PrefixBatch-v0"
# Reduced scale: 400 requests and a 4000-block KV cache (a sixth of the A100's) keep the memory
# pressure of the full 4000-request batch.
REDUCED = {"num_requests": 400, "kv_capacity_blocks": 4000}


def throughput(preset, policy, seed, **overrides):
    env = gym.make(ENV_ID, preset=preset, disable_env_checker=True, **overrides)
    result = run_episode(env, make_policy(ENV_ID, policy), seed=seed)
    assert result.metrics["requests_completed"] == overrides.get("num_requests", 16)
    return result.metrics


def test_registered_names():
    assert policy_names(ENV_ID)[:3] == ["fcfs-lru", "batchllm", "random"]


@pytest.mark.parametrize("name", ["fcfs-lru", "batchllm", "random"])
def test_every_baseline_finishes_the_batch(name):
    metrics = throughput("tiny", name, 0)
    assert metrics["completion_time_s"] > 0


def test_paper_effect_reduced_scale():
    for seed in (0, 1):
        heavy_fcfs = throughput("prefix-heavy", "fcfs-lru", seed, **REDUCED)
        heavy_batchllm = throughput("prefix-heavy", "batchllm", seed, **REDUCED)
        ratio = heavy_batchllm["throughput_tok_s"] / heavy_fcfs["throughput_tok_s"]
        assert 1.1 <= ratio <= 2.0  # BatchLLM: 1.1-2x on prefix-heavy batches
        assert heavy_batchllm["kv_reuse_ratio"] > heavy_fcfs["kv_reuse_ratio"]
        plain_fcfs = throughput("no-sharing", "fcfs-lru", seed, **REDUCED)
        plain_batchllm = throughput("no-sharing", "batchllm", seed, **REDUCED)
        ratio = plain_batchllm["throughput_tok_s"] / plain_fcfs["throughput_tok_s"]
        assert 0.95 <= ratio <= 1.05  # about equal without sharing
        assert plain_fcfs["kv_reuse_ratio"] == plain_batchllm["kv_reuse_ratio"] == 0.0


def test_fcfs_releases_in_submission_order_and_batchllm_by_group():
    for name in ("fcfs-lru", "batchllm"):
        env = gym.make(ENV_ID, preset="prefix-heavy", disable_env_checker=True, **REDUCED)
        env = env.unwrapped
        policy = make_policy(ENV_ID, name)
        env.reset(seed=3)
        policy.reset(env)
        order = []
        while not env.simulator.done:
            action = policy.act(None, env)
            if action != env.run_action:
                order.append(env.simulator.next_request(action))
            env.advance(action)
        assert sorted(order) == list(range(400))
        groups = env.simulator.batch.request_group[np.array(order)]
        switches = int((groups[1:] != groups[:-1]).sum())
        if name == "fcfs-lru":
            assert order == list(range(400))
        else:
            # BatchLLM runs each group's requests together: one switch per group.
            assert switches == env.simulator.num_groups - 1
            ratio = env.simulator.group_output_tokens / env.simulator.group_prompt_tokens
            first_seen = list(dict.fromkeys(groups.tolist()))
            assert np.all(np.diff(ratio[first_seen]) <= 1e-12)  # larger decode ratio first


def test_batchllm_never_preempts():
    metrics = throughput("prefix-heavy", "batchllm", 0, **REDUCED)
    assert metrics["preemptions"] == 0
