"""PrefixBatch-v0: the prefix-tree generator, the prefix cache, config validation and dynamics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.workloads.prefix_tree import PrefixTreeSpec, generate_prefix_batch

PAIRS = np.array([[100, 20], [700, 300], [2000, 50], [33, 500], [5000, 900]], np.int64)


def make_batch(spec: PrefixTreeSpec, seed: int = 0):
    return generate_prefix_batch(
        spec, PAIRS, np.random.default_rng(seed), np.random.default_rng(seed + 1)
    )


# ------------------------------------------------------------------ prefix-tree generator
@st.composite
def tree_specs(draw):
    depth = draw(st.integers(0, 3))
    return PrefixTreeSpec(
        num_requests=draw(st.integers(1, 60)),
        sharing_depth=depth,
        num_roots=draw(st.integers(1, 4)),
        fanout=draw(st.integers(1, 4)),
        shared_tokens=tuple(draw(st.integers(1, 600)) for _ in range(depth)),
        shared_tokens_cv=draw(st.sampled_from([0.0, 0.5])),
        turns_per_conversation=draw(st.integers(1, 4)),
        user_tokens_scale=draw(st.sampled_from([1.0, 0.25])),
        max_prompt_tokens=draw(st.sampled_from([2048, 8192])),
        max_total_tokens=draw(st.sampled_from([None, 8193])),
    )


@settings(max_examples=40, deadline=None)
@given(spec=tree_specs(), seed=st.integers(0, 1000))
def test_prefix_tree_paths_add_up_and_groups_share_their_prefix(spec, seed):
    batch = make_batch(spec, seed)
    assert batch.num_requests == spec.num_requests
    assert (batch.request_prompt_tokens >= 1).all()
    assert (batch.request_prompt_tokens <= spec.max_prompt_tokens).all()
    if spec.max_total_tokens is not None:
        total = batch.request_prompt_tokens + batch.request_output_tokens
        assert (total <= spec.max_total_tokens).all()
    assert (batch.request_output_tokens >= 1).all()
    assert (batch.node_parent < np.arange(batch.num_nodes)).all()  # parents first
    prefixes: dict[int, tuple[int, ...]] = {}
    for request in range(batch.num_requests):
        path = batch.path(request)
        assert int(batch.node_tokens[path].sum()) == batch.request_prompt_tokens[request]
        shared = tuple(n for n in path if batch.node_shared[n])
        assert len(shared) == spec.sharing_depth  # every request hangs under a full shared path
        group = int(batch.request_group[request])
        prefixes.setdefault(group, shared)
        assert prefixes[group] == shared
        assert int(batch.node_tokens[list(shared)].sum()) == batch.group_prefix_tokens[group]
    assert sorted(prefixes) == list(range(batch.num_groups))  # dense group ids
    for request in range(batch.num_requests):
        # The engine's prefix cache shares whole blocks: every shareable node is block-aligned.
        path = batch.prefix_path(request)
        assert all(tokens % spec.align_tokens == 0 and tokens > 0 for _, tokens in path)
        assert sum(t for _, t in path) <= batch.request_prompt_tokens[request]
        if spec.turns_per_conversation > 1:
            assert sum(t for _, t in path) == batch.request_prompt_tokens[request]


def test_no_sharing_batch_keeps_the_sampled_lengths():
    batch = make_batch(PrefixTreeSpec(num_requests=200))
    pairs = {tuple(p) for p in PAIRS.tolist()}
    for prompt, output in zip(
        batch.request_prompt_tokens, batch.request_output_tokens, strict=True
    ):
        assert (int(prompt), int(output)) in pairs
    assert batch.num_groups == 200
    assert batch.unique_prompt_tokens() == int(batch.request_prompt_tokens.sum())


def test_sharing_reduces_unique_prompt_tokens_and_submission_order_is_shuffled():
    spec = PrefixTreeSpec(
        num_requests=400, sharing_depth=2, num_roots=2, fanout=4, shared_tokens=(1000, 500)
    )
    batch = make_batch(spec)
    assert batch.num_groups == 8
    # Each shared segment is counted once, each request's own segment once.
    shared_once = int(batch.node_tokens[batch.node_shared].sum())
    own = int((batch.request_prompt_tokens - batch.group_prefix_tokens[batch.request_group]).sum())
    assert batch.unique_prompt_tokens() == shared_once + own
    assert batch.unique_prompt_tokens() < 0.6 * batch.request_prompt_tokens.sum()
    # Neighbours in submission order mostly belong to different groups.
    same = (batch.request_group[1:] == batch.request_group[:-1]).mean()
    assert same < 0.3


def test_multi_turn_prompts_nest():
    spec = PrefixTreeSpec(num_requests=9, turns_per_conversation=3, max_prompt_tokens=100_000)
    batch = make_batch(spec)
    by_node = {int(n): r for r, n in enumerate(batch.request_node)}
    for request in range(batch.num_requests):
        path = batch.path(request)
        # Every earlier turn of the conversation is a prefix of this turn's prompt.
        earlier = [by_node[n] for n in path[:-1]]
        for other in earlier:
            assert batch.request_group[other] == batch.request_group[request]
            assert batch.request_prompt_tokens[other] < batch.request_prompt_tokens[request]
    assert batch.num_groups == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_requests", 0),
        ("sharing_depth", 9),
        ("fanout", 0),
        ("shared_tokens", (10, 10)),
        ("shared_tokens_cv", -1.0),
        ("turns_per_conversation", 0),
        ("user_tokens_scale", 0.0),
        ("max_prompt_tokens", 1),
        ("align_tokens", 0),
    ],
)
def test_bad_tree_spec_names_the_field(field, value):
    kwargs = {"num_requests": 10, "sharing_depth": 1, "shared_tokens": (100,), field: value}
    with pytest.raises(ConfigError, match=field):
        PrefixTreeSpec(**kwargs)


# ----------------------------------------------------------------------------- the env
from schedgym.envs.prefixbatch.config import PrefixBatchConfig  # noqa: E402
from schedgym.envs.prefixbatch.env import PrefixBatchEnv  # noqa: E402
from schedgym.serving.request import DECODE, FINISHED, PREFILL, WAITING  # noqa: E402


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_requests", 0),
        ("sharing_depth", 7),
        ("shared_tokens", (100,)),
        ("kv_capacity_blocks", 10),
        ("token_budget", 0),
        ("max_batch_requests", 0),
        ("output_tokens_scale", 2.0),
        ("model", "GPT-9"),
        ("invalid_action", "ignore"),
        ("reward_scale_s", 0.0),
    ],
)
def test_bad_env_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        PrefixBatchConfig(**{field: value})


def check_batch_invariants(env: PrefixBatchEnv) -> None:
    sim = env.simulator
    inst = sim.instance
    states = [r.state for r in sim.requests]
    released = sum(sim._released)
    assert released == sim.released
    # Every released request is queued, prefilling, decoding or finished: none is lost.
    assert states.count(FINISHED) == sim.requests_completed
    assert states.count(WAITING) == len(inst.waiting)
    assert states.count(PREFILL) == len(inst.prefilling)
    assert states.count(DECODE) == inst.num_decoding
    assert int(sim.group_pending.sum()) == len(sim.requests) - released
    # The memoised room the queued requests will take equals a fresh count.
    fresh = sum(inst.admission_blocks(r) + inst.own_evictable_blocks(r) for r in inst.waiting)
    assert sim.queued_blocks() == fresh
    assert 0 <= inst.kv.used_blocks <= inst.kv.capacity_blocks
    prefix = inst.kv.prefix
    # Every resident prefix node's blocks are inside the used count, and each referenced node
    # is pinned by exactly the running requests whose path holds it.
    assert prefix.resident_blocks <= inst.kv.used_blocks
    refs: dict[int, int] = {}
    for request in sim.requests:
        if request.state in (PREFILL, DECODE):
            for node_id, _ in request.prefix_path:
                refs[node_id] = refs.get(node_id, 0) + 1
    for node_id, node in prefix.nodes.items():
        assert node.refcount == refs.get(node_id, 0)
    private = sum(inst.held_blocks(r) for r in sim.requests if r.state in (PREFILL, DECODE))
    assert private + prefix.resident_blocks == inst.kv.used_blocks - max(inst._prealloc_blocks, 0)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    policy_seed=st.integers(0, 10_000),
    capacity=st.sampled_from([70, 120, 400]),
    turns=st.sampled_from([1, 2]),
)
def test_conservation_and_capacity_under_random_orders(seed, policy_seed, capacity, turns):
    env = PrefixBatchEnv(preset="tiny", kv_capacity_blocks=capacity, turns_per_conversation=turns)
    env.reset(seed=seed)
    rng = np.random.default_rng(policy_seed)
    done = False
    while not done:
        mask = env.action_masks()
        assert mask.any()
        _, reward, done, _, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        assert reward <= 0.0
        check_batch_invariants(env)
    sim = env.simulator
    assert sim.requests_completed == len(sim.requests)
    assert all(r.generated == r.output_tokens for r in sim.requests)
    assert sim.instance.kv.peak_used_blocks <= capacity
    assert sim.summary()["peak_kv_blocks"] <= capacity


def test_reuse_skips_prefill_work():
    # A perfect order computes each shared prefix once: prefill work falls by the reuse.
    env = PrefixBatchEnv(preset="tiny", kv_capacity_blocks=2000)
    env.reset(seed=0)
    while not env.simulator.done:
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    summary = env.summary()
    sim = env.simulator
    assert summary["kv_reuse_ratio"] > 0.3
    assert summary["prefill_tokens_computed"] < sim.total_prompt_tokens
    assert summary["prefill_tokens_computed"] >= sim.batch.unique_prompt_tokens() - 16 * 16


def test_masked_release_raises():
    env = PrefixBatchEnv(preset="tiny")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        env.step(env.run_action)  # nothing runs yet


# ------------------------------------------- vectorised mask and observation = per-group loop
def _reference_releasable_mask(sim) -> np.ndarray:
    """The straightforward per-group mask: every group's next request, walked one by one."""
    mask = np.zeros(sim.num_groups, bool)
    if sim.seats_left() <= 0:
        return mask
    headroom = sim.headroom_blocks()
    inst = sim.instance
    for group in range(sim.num_groups):
        request = sim.next_request(group)
        if request < 0:
            continue
        need = sim.admission_blocks(request) + inst.own_evictable_blocks(sim.requests[request])
        mask[group] = need <= headroom
    return mask


def _reference_observation(env: PrefixBatchEnv) -> dict[str, np.ndarray]:
    """The straightforward per-group observation (the features' definition)."""
    from schedgym.envs.prefixbatch.env import GROUP_FEATURES, TOKEN_SCALE

    sim = env.simulator
    g = sim.num_groups
    capacity = sim.capacity_blocks
    sizes = np.array([len(m) for m in sim.group_members], np.float32)
    pending = sim.group_pending.astype(np.float32)
    safe = np.maximum(pending, 1.0)
    groups = np.zeros((env.max_groups, GROUP_FEATURES), np.float32)
    groups[:g, 0] = pending / sizes
    groups[:g, 1] = sim.group_pending_prompt / safe / TOKEN_SCALE
    groups[:g, 2] = sim.group_pending_output / safe / TOKEN_SCALE
    groups[:g, 3] = sim.batch.group_prefix_tokens / TOKEN_SCALE
    prefix = sim.instance.kv.prefix
    for group in range(g):
        request = sim.next_request(group)
        if request < 0:
            continue
        path = sim.requests[request].prefix_path
        if path:
            groups[group, 4] = prefix.lookup_tokens(path) > 0
        groups[group, 6] = sim.admission_blocks(request) / capacity
    groups[:g, 5] = sim.group_running / sim.config.max_batch_requests
    group_mask = np.zeros(env.max_groups, np.int8)
    group_mask[:g] = 1
    inst = sim.instance
    seats = sim.config.max_batch_requests
    n = len(sim.requests)
    global_features = np.array(
        [
            inst.free_blocks / capacity,
            prefix.evictable_blocks / capacity,
            inst.num_running() / seats,
            len(inst.waiting) / seats,
            inst.num_decoding / seats,
            sim.requests_completed / n,
            sim.released / n,
            sim.now_s / 100.0,
        ],
        np.float32,
    )
    return {"groups": groups, "group_mask": group_mask, "global_features": global_features}


def _assert_same_observation(obs: dict[str, np.ndarray], env: PrefixBatchEnv) -> None:
    reference = _reference_observation(env)
    assert obs.keys() == reference.keys()
    for key, value in reference.items():
        assert obs[key].dtype == value.dtype
        assert obs[key].tobytes() == value.tobytes(), key  # bit for bit


def _rollout_against_reference(env: PrefixBatchEnv, seed: int, choose) -> int:
    """Run an episode, choosing with ``choose(valid_actions, step)``, checking every mask and
    observation against the per-group reference; returns the steps taken."""
    obs, _ = env.reset(seed=seed)
    _assert_same_observation(obs, env)
    steps = 0
    while True:
        sim = env.simulator
        mask = env.action_masks()
        reference = _reference_releasable_mask(sim)
        assert mask[: sim.num_groups].tobytes() == reference.tobytes()
        assert not mask[sim.num_groups : env.run_action].any()
        assert mask[env.run_action] == sim.can_run()
        assert [sim.releasable(g) for g in range(sim.num_groups)] == reference.tolist()
        obs, _, terminated, _, _ = env.step(choose(np.flatnonzero(mask), steps))
        steps += 1
        _assert_same_observation(obs, env)
        if terminated:
            return steps


# Small versions of the presets, memory-tight so that prefixes are evicted and requests
# preempted (the events that change the prefix cache the vectorised features read).
EQUIVALENCE_CASES = [
    {"preset": "tiny"},
    {"preset": "tiny", "kv_capacity_blocks": 70, "turns_per_conversation": 2},
    {"preset": "prefix-heavy", "num_requests": 200, "kv_capacity_blocks": 700},
    {"preset": "mixed", "num_requests": 150, "kv_capacity_blocks": 600},
    {"preset": "no-sharing", "num_requests": 60},
]


@pytest.mark.parametrize("case", EQUIVALENCE_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_mask_and_observation_match_the_per_group_loop(case, seed):
    env = PrefixBatchEnv(**case)
    rng = np.random.default_rng(seed + 100)
    steps = _rollout_against_reference(env, seed, lambda valid, _: int(rng.choice(valid)))
    assert env.simulator.requests_completed == len(env.simulator.requests)
    assert steps >= len(env.simulator.requests)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_group_features_follow_steps_taken_without_observations(seed):
    # The group features are updated in place from the groups that changed since the last
    # observation: decisions taken through advance() (no observation built) and straight on
    # the simulator (not seen by the env at all) must still give the reference features.
    env = PrefixBatchEnv(preset="tiny", kv_capacity_blocks=70, turns_per_conversation=2)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    decision = 0
    while not env.simulator.done:
        sim = env.simulator
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        if decision % 3 == 0:
            env.advance(action)
        elif decision % 3 == 1:
            sim.run() if action == env.run_action else sim.release(action)
        else:
            obs, *_ = env.step(action)
            _assert_same_observation(obs, env)
        decision += 1
    assert decision > 30


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    picks=st.lists(st.integers(0, 10**6), max_size=80),
    capacity=st.sampled_from([70, 120, 400]),
    turns=st.sampled_from([1, 2, 3]),
    seats=st.sampled_from([2, 1024]),
)
def test_vectorised_features_match_under_any_action_sequence(seed, picks, capacity, turns, seats):
    env = PrefixBatchEnv(
        preset="tiny",
        kv_capacity_blocks=capacity,
        turns_per_conversation=turns,
        max_batch_requests=seats,
    )

    def choose(valid: np.ndarray, step: int) -> int:
        # The drawn picks index the valid actions; past them, the last valid (often "run on").
        return int(valid[picks[step] % len(valid)] if step < len(picks) else valid[-1])

    # The rollout compares every mask and observation with the per-group reference.
    steps = _rollout_against_reference(env, seed, choose)
    assert env.simulator.requests_completed == len(env.simulator.requests)
    assert steps >= len(env.simulator.requests)


def test_recorded_batch_is_checked_and_served():
    import dataclasses

    from schedgym.envs.prefixbatch.generator import PrefixBatchGenerator

    env = PrefixBatchEnv(preset="tiny")
    batch = PrefixBatchGenerator.generate(env.config, 4)
    env.reset(seed=0, options={"instance": batch})
    assert env.simulator.episode is batch
    assert [r.output_tokens for r in env.simulator.requests] == (
        batch.request_output_tokens.tolist()
    )
    with pytest.raises(ConfigError, match=r"instance\.node_parent: a parent must be -1 or an earl"):
        dataclasses.replace(batch, node_parent=np.arange(batch.num_nodes))
    small = PrefixBatchEnv(preset="tiny", num_requests=2)
    assert batch.num_groups > small.config.max_groups == 2
    with pytest.raises(ConfigError, match="has 4 prefix groups, the config's max_groups is 2"):
        small.reset(seed=0, options={"instance": batch})


def _batchllm_projection(sim, group: int) -> int:
    """BatchLLM's memory projection for ``group``'s next request, from the per-request views."""
    queued = [r.request_id for r in sim.instance.waiting]
    request = sim.next_request(group)
    candidates = [*queued, request] if request >= 0 else queued
    private = sim.private_blocks_at_finish(request) if request >= 0 else 0
    return (
        sim.committed_private_blocks
        + sim.pinned_prefix_blocks()
        + sim.unpinned_paths_blocks(candidates)
        + private
    )


@pytest.mark.parametrize("case", EQUIVALENCE_CASES)
def test_group_projected_blocks_match_batchllms_projection(case):
    # Random orders in tight memory: prefixes evicted, requests preempted and queued.
    env = PrefixBatchEnv(**case)
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    checked = 0
    while not env.simulator.done:
        sim = env.simulator
        projected = sim.group_projected_blocks()
        assert projected.dtype == np.int64
        assert projected.tolist() == [_batchllm_projection(sim, g) for g in range(sim.num_groups)]
        checked += sim.num_groups
        env.advance(int(rng.choice(np.flatnonzero(env.action_masks()))))
    assert checked >= 50
