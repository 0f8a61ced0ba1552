"""LLMCluster-v0's cached migration candidates, vectorised mask and observation against a
from-scratch computation at every decision of random-action episodes.

The simulator caches each instance's candidate order (until its decode batch changes) and
candidate list (until a migration flag changes or a listed candidate runs out of tokens), and
the env builds the mask and the observation from arrays; the references below are the plain
definitions (sort every decoding request, ask the engine for each one's progress, test each
destination with ``migration_destinations``, one Python row per instance). Any drift in a cache
key shows up here as a mismatch at the step where it happens.
"""

from __future__ import annotations

import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.envs.llmcluster.env import (
    ITERATION_SCALE_S,
    NUM_CANDIDATE_FEATURES,
    SEQS_SCALE,
    TOKENS_SCALE,
    LLMClusterEnv,
)
from schedgym.envs.llmcluster.simulator import DISPATCH, MIGRATE, LLMClusterSimulator
from schedgym.serving.engine import ServingInstance
from schedgym.serving.request import Request


def reference_candidates(
    sim: LLMClusterSimulator, instance: ServingInstance, limit: int | None = None
) -> list[Request]:
    """Decoding, not migrating, tokens to go, no shared prefix; ordered by (priority, KV
    tokens, id)."""
    instance.sync(sim.now_s)
    keyed = [
        ((r.priority, instance.kv_tokens(r), r.request_id), r)
        for r in instance.decoding.values()
        if r.migration is None and instance.generated(r) < r.output_tokens - 1 and not r.prefix_path
    ]
    keyed.sort(key=lambda item: item[0])
    out = [r for _, r in keyed]
    return out if limit is None else out[:limit]


def check_uncommitted_free_blocks(sim: LLMClusterSimulator) -> None:
    """The engine keeps the running segment's block totals to answer in O(1); from scratch it
    is the capacity minus what is in use once the segment has run to its end."""
    for instance in sim.instances:
        expected = instance.kv.capacity_blocks - instance.used_blocks_at(instance.next_event_s)
        assert instance.uncommitted_free_blocks() == expected


def reference_mask_and_slots(env: LLMClusterEnv) -> tuple[np.ndarray, dict[int, Request]]:
    sim = env.simulator
    sim.sync()
    n, per = env.num_instances, env.config.candidates_per_instance
    mask = np.zeros(env.num_actions, bool)
    slots: dict[int, Request] = {}
    if sim.done:
        return mask, slots
    if sim.decision_kind == DISPATCH:
        mask[:n] = sim.up
        return mask, slots
    mask[n] = True
    for instance in sim.instances:
        for c, request in enumerate(reference_candidates(sim, instance, per)):
            slots[instance.instance_id * per + c] = request
    if slots:
        allowed = sim.cluster.migration_destinations(list(slots.values()))
        allowed &= sim.up
        rows = mask[n + 1 :].reshape(env.num_candidates, n)
        rows[list(slots)] = allowed
    return mask, slots


def reference_observation(env: LLMClusterEnv, slots: dict[int, Request]) -> dict[str, np.ndarray]:
    """The observation as one Python row per instance and per candidate."""
    sim = env.simulator
    capacity = float(sim.capacity_blocks)
    freeness = [sim.freeness(instance) for instance in sim.instances]
    instance_features = np.array(
        [
            (
                instance.num_running() / SEQS_SCALE,
                len(instance.waiting) / SEQS_SCALE,
                instance.free_blocks / capacity,
                free / 100.0,
                instance.last_iteration_s / ITERATION_SCALE_S,
                instance.waiting_prefill_tokens / TOKENS_SCALE,
                instance.num_decoding / SEQS_SCALE,
                instance.kv.used_blocks / capacity,
                0.0,
            )
            for instance, free in zip(sim.instances, freeness, strict=True)
        ],
        np.float32,
    )
    for migration in sim.cluster.active_migrations.values():
        instance_features[migration.source, 8] = 1.0
        instance_features[migration.destination, 8] = 1.0
    candidate_features = np.zeros((env.num_candidates, NUM_CANDIDATE_FEATURES), np.float32)
    candidate_mask = np.zeros(env.num_candidates, np.int8)
    for slot, request in slots.items():
        instance = sim.instances[request.instance]
        candidate_features[slot] = (
            instance.kv_tokens(request) / TOKENS_SCALE,
            instance.generated(request) / TOKENS_SCALE,
            float(request.priority),
            instance.held_blocks(request) / capacity,
            freeness[request.instance] / 100.0,
        )
        candidate_mask[slot] = 1
    return {
        "instance_features": instance_features,
        "candidate_features": candidate_features,
        "candidate_mask": candidate_mask,
    }


@pytest.mark.parametrize(
    ("preset", "overrides", "seed"),
    [
        ("tiny", {}, 0),
        ("high-load", {"num_requests": 60}, 1),
        # Forking at every step makes these a few seconds each; the two above cover the same
        # paths in the default run.
        pytest.param(
            "llumnix-a10", {"num_requests": 30, "num_instances": 5}, 2, marks=pytest.mark.slow
        ),
        pytest.param(
            "priority-mix", {"num_requests": 30, "num_instances": 5}, 3, marks=pytest.mark.slow
        ),
        pytest.param(
            "bursty",
            {"num_requests": 25, "num_instances": 5, "candidates_per_instance": 2},
            4,
            marks=pytest.mark.slow,
        ),
    ],
)
def test_cached_candidates_mask_and_observation_match_from_scratch(preset, overrides, seed):
    env = LLMClusterEnv(preset=preset, **overrides)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    sim = env.simulator
    migration_decisions = migrations = 0
    for _ in range(400):
        # The references materialise every instance (sync), which the env itself does not do
        # at migration ticks: they are computed on a copy, so the env runs as it does unobserved.
        copy = env.fork()
        mask, slots = reference_mask_and_slots(copy)
        np.testing.assert_array_equal(env.action_masks(), mask)
        reference = reference_observation(copy, slots)
        for key, value in reference.items():
            np.testing.assert_array_equal(obs[key], value, err_msg=key)
        copy_sim = copy.simulator
        check_uncommitted_free_blocks(sim)
        if sim.decision_kind == MIGRATE:
            migration_decisions += 1
            for instance in copy_sim.instances:
                assert copy_sim.migration_candidates(instance) == reference_candidates(
                    copy_sim, instance
                )
                assert copy_sim.migration_candidates(instance, 1) == reference_candidates(
                    copy_sim, instance, 1
                )
        valid = np.flatnonzero(env.action_masks())
        # Mostly migrate when one is possible, so migration flags change often.
        moves = valid[valid > env.no_migration_action]
        if sim.decision_kind == MIGRATE and moves.size and rng.random() < 0.7:
            action = int(rng.choice(moves))
            migrations += 1
        else:
            action = int(rng.choice(valid))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert migration_decisions > 20 and migrations > 5


def test_candidate_table_matches_engine_views_under_llumnix():
    """The Llumnix baseline drives the simulator without the env (no global sync): the table
    still equals the per-request engine views at every migration tick."""
    from schedgym.baselines.llm import LlumnixPolicy
    from schedgym.envs.llmcluster.config import PRESETS, LLMClusterConfig
    from schedgym.envs.llmcluster.generator import LLMClusterGenerator

    config = LLMClusterConfig(**{**PRESETS["priority-mix"], "num_requests": 80})
    sim = LLMClusterSimulator(config, LLMClusterGenerator.generate(config, 0))
    policy = LlumnixPolicy()
    per = config.candidates_per_instance
    checked = 0
    while not sim.done:
        if sim.decision_kind == DISPATCH:
            sim.dispatch(policy.choose_dispatch(sim))
            continue
        check_uncommitted_free_blocks(sim)
        table = sim.migration_candidate_table(per)
        expected = {
            instance.instance_id * per + c: (instance, request)
            for instance in sim.instances
            for c, request in enumerate(reference_candidates(sim, instance, per))
        }
        assert table.slots == list(expected)
        for k, slot in enumerate(table.slots):
            instance, request = expected[slot]
            assert table.requests[k] is request
            assert table.sources[k] == instance.instance_id
            assert table.kv_tokens[k] == instance.kv_tokens(request)
            assert table.generated[k] == instance.generated(request)
            assert table.held_blocks[k] == instance.held_blocks(request)
            assert table.priority[k] == request.priority
            checked += 1
        choice = policy.choose_migration(sim)
        sim.migrate(*choice) if choice is not None else sim.migrate(None)
    assert checked > 100
