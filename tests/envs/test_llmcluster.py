"""LLMCluster-v0: config validation, decisions and masks, migration through the env, reward,
summary, determinism, and conservation under hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedgym  # noqa: F401
from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode
from schedgym.envs.llmcluster.config import PRESETS, LLMClusterConfig
from schedgym.envs.llmcluster.env import LLMClusterEnv
from schedgym.envs.llmcluster.simulator import DISPATCH, MIGRATE
from schedgym.serving.request import FINISHED
from schedgym.workloads.requests import RequestStream

SUMMARY_KEYS = (
    "ttft_p50_s", "ttft_p99_s", "tbt_p50_s", "tbt_p99_s", "e2e_p50_s", "e2e_p99_s",
    "ttft_p50_s_high", "ttft_p99_s_high", "tbt_p50_s_high", "tbt_p99_s_high",
    "e2e_p50_s_high", "e2e_p99_s_high", "requests_arrived", "requests_completed",
    "preemptions", "migrations", "throughput_tok_s",
)  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_instances", 0),
        ("num_instances", 65),
        ("model", "GPT-5"),
        ("gpu", "TPUv5"),
        ("tp", 3),
        ("batch_scheduler", "tgi"),
        ("arrival_process", "uniform"),
        ("request_rate_per_s", 0.0),
        ("arrival_cv", -1.0),
        ("lengths", "zipf"),
        ("num_requests", 0),
        ("high_priority_share", 1.5),
        ("high_priority_weight", 0.5),
        ("migration_tick_s", 0.0),
        ("kv_capacity_blocks", 2),
        ("candidates_per_instance", 0),
        ("invalid_action", "ignore"),
        ("migration", "yes"),
        ("trace", "/nonexistent/trace.csv"),
        ("power_law_prompt_mean_tokens", 10_000.0),
    ],
)
def test_bad_config_names_the_field(field, value):
    overrides = {field: value}
    if field == "trace":
        overrides["arrival_process"] = "trace"
    with pytest.raises(ConfigError, match=field):
        LLMClusterConfig(**overrides)


def test_presets_are_valid():
    for name, values in PRESETS.items():
        config = LLMClusterConfig(**values)
        assert config.num_instances >= 1, name


def rollout(env, seed, chooser):
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        action = chooser(env, obs)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps += 1
        assert reward <= 0.0
        if terminated or truncated:
            return total, steps, info


def first_valid(env, obs):
    return int(np.flatnonzero(env.action_masks())[0])


def test_return_is_minus_total_weighted_latency():
    env = LLMClusterEnv(preset="tiny", high_priority_share=0.0, migration=False)
    total, _, info = rollout(env, 0, first_valid)
    sim = env.simulator
    completed = sim.cluster.completed
    latency = float(np.sum(completed.finish_s - completed.arrival_s))
    assert info["requests_completed"] == info["requests_arrived"] == 12
    assert total == pytest.approx(-latency, rel=1e-9)


def test_forced_migration_ticks_are_skipped_and_their_reward_kept():
    # Memory-bound (tiny KV caches) and never migrating: many ticks offer no valid migration.
    env = LLMClusterEnv(
        preset="tiny", high_priority_share=0.0, kv_capacity_blocks=24, num_requests=30
    )
    env.reset(seed=3)
    sim = env.simulator
    n = env.num_instances
    total = 0.0
    ticks = 0
    while not sim.done:
        mask = env.action_masks()
        if sim.decision_kind == MIGRATE:
            assert mask[n + 1 :].any(), "a tick with only 'no migration' valid was returned"
            ticks += 1
        action = env.no_migration_action if sim.decision_kind == MIGRATE else first_valid(env, None)
        total += env.step(action)[1]
    assert env.forced_ticks_skipped > 0 and ticks > 0
    completed = sim.cluster.completed
    latency = float(np.sum(completed.finish_s - completed.arrival_s))
    assert total == pytest.approx(-latency, rel=1e-9)


def test_masks_follow_the_decision_kind():
    env = LLMClusterEnv(preset="tiny")
    env.reset(seed=1)
    sim = env.simulator
    seen = set()
    while not sim.done:
        mask = env.action_masks()
        n = env.num_instances
        if sim.decision_kind == DISPATCH:
            assert mask[:n].all() and not mask[n:].any()
            with pytest.raises(InvalidActionError):
                env.step(n)
        else:
            assert mask[n] and not mask[:n].any()
            with pytest.raises(InvalidActionError):
                env.step(0)
        seen.add(sim.decision_kind)
        env.step(int(np.flatnonzero(mask)[-1]))  # a migration whenever one is offered
    assert seen == {DISPATCH, MIGRATE}
    assert sim.cluster.migrations_started > 0
    with pytest.raises(InvalidActionError):
        env.step(0)


def test_migration_through_the_env_keeps_every_token():
    env = LLMClusterEnv(preset="tiny", num_requests=30)
    env.reset(seed=4)
    sim = env.simulator
    while not sim.done:
        env.step(int(np.flatnonzero(env.action_masks())[-1]))
    assert sim.cluster.migrations_completed > 0
    assert len(sim.cluster.completed.recent) == sim.requests_arrived == 30
    for request in sim.cluster.completed.recent:
        assert request.state == FINISHED
        times = sim.instances[0].token_times_s(request, sim.instances)
        assert times.size == request.output_tokens and np.all(np.diff(times) > 0)
    summary = env.summary()
    assert summary["migrations"] == sim.cluster.migrations_completed


def test_summary_keys_and_truncation():
    env = LLMClusterEnv(preset="tiny", horizon_s=0.3, num_requests=40, high_priority_share=0.5)
    _, _, info = rollout(env, 0, first_valid)
    for key in SUMMARY_KEYS:
        assert key in info
    assert env.simulator.truncated
    accounted = info["requests_completed"] + info["requests_in_flight"] + info["requests_rejected"]
    assert info["requests_arrived"] == accounted


def test_observation_reflects_state():
    env = LLMClusterEnv(preset="tiny")
    obs, _ = env.reset(seed=0)
    assert obs["request_features"][2] == 1.0  # a dispatch is pending
    for _ in range(6):
        obs, *_ = env.step(int(np.flatnonzero(env.action_masks())[0]))
    sim = env.simulator
    running = [instance.num_running() for instance in sim.instances]
    np.testing.assert_allclose(obs["instance_features"][:, 0] * 64, running)
    assert env.observation_space.contains(obs)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(2, 4), st.integers(24, 160), st.booleans())
def test_conservation_under_random_actions(seed, instances, blocks, trace_like):
    """Every arrived request completes or is in flight; KV never exceeds capacity; no token is
    lost or duplicated across migrations and preemptions."""
    env = LLMClusterEnv(
        preset="tiny",
        num_instances=instances,
        kv_capacity_blocks=blocks,
        num_requests=25,
        lengths="fixed" if trace_like else "power-law",
        fixed_prompt_tokens=200,
        fixed_output_tokens=40,
        horizon_s=None if seed % 3 else 0.5,
    )
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    sim = env.simulator
    while not sim.done:
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        sim.sync()
        for instance in sim.instances:
            assert instance.kv.used_blocks <= instance.kv.capacity_blocks
    summary = env.summary()
    accounted = (
        summary["requests_completed"] + summary["requests_in_flight"] + summary["requests_rejected"]
    )
    assert summary["requests_arrived"] == accounted
    for instance in sim.instances:
        assert instance.kv.peak_used_blocks <= blocks
    completed = sim.cluster.completed
    assert len(completed.recent) == min(len(completed), completed.recent.maxlen)
    for request in completed.recent:
        times = sim.instances[0].token_times_s(request, sim.instances)
        assert times.size == request.output_tokens and np.all(np.diff(times) > 0)
    if not sim.truncated:
        assert all(instance.kv.used_blocks == 0 for instance in sim.instances)


def test_recorded_request_stream_is_served_as_given():
    stream = RequestStream(
        arrival_s=np.array([0.5, 0.6, 0.6]),
        prompt_tokens=np.array([10, 20, 30]),
        output_tokens=np.array([5, 6, 7]),
        priority=np.zeros(3, np.int8),
    )
    env = LLMClusterEnv(preset="tiny")
    result = run_episode(
        env, make_policy("LLMCluster-v0", "round-robin"), seed=0, options={"instance": stream}
    )
    assert result.metrics["requests_completed"] == 3
    assert env.simulator.episode is stream
    completed = env.simulator.cluster.completed
    order = np.argsort(completed.request_ids)
    assert completed.arrival_s[order].tolist() == [0.5, 0.6, 0.6]
    assert completed.output_tokens[order].tolist() == [5, 6, 7]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("arrival_s", [0.2, 0.1], "non-decreasing"),
        ("prompt_tokens", [0, 3], "at least 1 token"),
        ("priority", [0, 2], "0 \\(normal\\) or 1"),
        ("output_tokens", [1], "must have shape"),
    ],
)
def test_request_stream_names_the_bad_field(field, value, message):
    fields = {
        "arrival_s": [0.0, 0.1],
        "prompt_tokens": [1, 2],
        "output_tokens": [1, 2],
        "priority": [0, 1],
    }
    fields[field] = value
    with pytest.raises(ConfigError, match=f"instance.{field}: .*{message}"):
        RequestStream(**{k: np.array(v) for k, v in fields.items()})


def test_decoding_generated_matches_generated_along_an_episode():
    # migration_candidates reads the batch's progress in one engine pass; it must be what
    # generated() says of each request, in join order, at every decision point.
    env = LLMClusterEnv(preset="high-load", num_requests=80)
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    checked = 0
    while not env.simulator.done:
        env.simulator.sync()
        for instance in env.simulator.instances:
            pairs = instance.decoding_generated()
            assert [r for r, _ in pairs] == list(instance.decoding.values())
            assert [g for _, g in pairs] == [instance.generated(r) for r, _ in pairs]
            checked += len(pairs)
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
    assert checked > 1000
