"""MeshAssign-v0: invariants, masks, config validation, baselines and the ByteScale effect."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedgym  # noqa: F401
from schedgym.baselines.mesh import karmarkar_karp
from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode
from schedgym.envs.mesh.config import MeshConfig
from schedgym.envs.mesh.env import MeshAssignEnv
from schedgym.envs.mesh.generator import MeshGenerator, MeshInstance
from schedgym.workloads.lengths import LengthMixture

ENV_ID = "schedgym/MeshAssign-v0"
POLICIES = ("static", "token-balanced", "balanced-cp", "bytescale", "random")


def small_env(**overrides) -> MeshAssignEnv:
    kwargs = {
        "num_gpus": 16,
        "gpus_per_node": 4,
        "capacity_tokens_per_rank": 8192,
        "global_batch_tokens": 131072,
        "max_seq_tokens": 65536,
        "num_batches": 1,
    }
    kwargs.update(overrides)
    return MeshAssignEnv(**kwargs)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    offload=st.booleans(),
    policy_seed=st.integers(0, 1000),
    per_node=st.sampled_from([2, 4, 8]),
)
def test_invariants_under_random_valid_actions(seed, offload, policy_seed, per_node):
    env = small_env(allow_offload=offload, gpus_per_node=per_node)
    env.reset(seed=seed)
    sim = env.simulator
    rng = np.random.default_rng(policy_seed)
    rewards = []
    done = False
    while not done:
        mask = env.action_masks()
        k_min, _ = sim.degree_range()
        action = int(rng.choice(np.flatnonzero(mask)))
        k, slot = sim.decode(action)
        assert k >= k_min and (slot + 1) * sim.degrees[k] <= sim.num_ranks
        _, reward, done, _, info = env.step(action)
        rewards.append(reward)
    # Capacity is never exceeded by any micro-batch on any rank.
    assert max(sim.mb_tokens_per_rank) <= sim.rank_capacity_tokens + 1e-9
    # Every sequence placed exactly once, with all its tokens.
    assert np.all(sim.seq_degree >= 1)
    assert sim.tokens_held.sum() == pytest.approx(sim.batch_tokens)
    shards = np.zeros(sim.num_ranks)
    for s, c, r0 in zip(sim.batch_lengths, sim.seq_degree, sim.seq_first_rank, strict=True):
        shards[r0 : r0 + c] += s / c
    np.testing.assert_allclose(shards, sim.tokens_held)
    # Step time is the slowest rank's timeline plus the all-reduce.
    result = sim.results[-1]
    assert result.step_time_s == pytest.approx(sim.finish_s.max() + sim.allreduce_s)
    busy = sim.compute_s + sim.exposed_comm_s + sim.exposed_offload_s
    assert np.all(busy + sim.idle_s <= sim.finish_s + 1e-9)
    assert np.all(sim.idle_s >= 0.0)
    summary = info
    fractions = (
        summary["compute_frac"]
        + summary["exposed_comm_frac"]
        + summary["offload_frac"]
        + summary["idle_frac"]
    )
    assert fractions == pytest.approx(1.0)
    # Reward: zero until the batch ends, then minus step time over the ideal step (<= -1).
    assert all(r == 0.0 for r in rewards[:-1])
    assert rewards[-1] == pytest.approx(-result.step_time_s / result.ideal_step_s)
    assert rewards[-1] <= -1.0


def test_micro_batches_pack_and_queue():
    env = small_env()
    env.reset(seed=0)
    sim = env.simulator
    # Place everything on rank 0 (degree 1 where allowed): short ones pack, then queue.
    done = False
    while not done:
        k = sim.degree_range()[0]
        _, _, done, _, _ = env.step(sim.encode(k, 0))
    singles = [i for i, c in enumerate(sim.mb_degree) if c == 1]
    assert any(sim.mb_num_seqs[i] > 1 for i in singles)  # packing happened
    assert sim.num_microbatches[0] > 1  # and several micro-batches in sequence
    starts = [sim.mb_start_s[i] for i in singles]
    assert starts == sorted(starts)


def test_masks_forbid_overflow_and_missing_groups():
    env = small_env(max_ranks=64)
    obs, _ = env.reset(seed=1)
    sim = env.simulator
    mask = env.action_masks()
    assert mask.shape == (127,) and obs["rank_features"].shape == (64, 6)
    assert obs["rank_mask"].sum() == 16
    s = sim.current_tokens
    for k in range(sim.num_degrees):
        c = sim.degrees[k]
        start = sim.degree_offsets[k]
        row = mask[start : start + 64 // c]
        fits = np.ceil(s / c) <= sim.rank_capacity_tokens and c <= 16 and c <= s
        assert row[: 16 // c].all() == fits if 16 // c else True
        assert not row[16 // c :].any()  # groups of ranks that do not exist
    invalid = int(np.flatnonzero(~mask)[0])
    with pytest.raises(InvalidActionError):
        env.step(invalid)


def test_offload_lowers_the_smallest_degree():
    plain = small_env()
    offload = small_env(allow_offload=True, offload_capacity_factor=4.0)
    plain.reset(seed=3)
    offload.reset(seed=3)
    s = plain.simulator.current_tokens
    assert s == offload.simulator.current_tokens and s > 8192
    assert offload.simulator.degree_range()[0] < plain.simulator.degree_range()[0]


def test_sequences_come_longest_first_and_batches_fill_the_budget():
    env = small_env(num_batches=3)
    env.reset(seed=5)
    sim = env.simulator
    for _ in range(3):
        lengths = sim.batch_lengths
        assert np.all(np.diff(lengths) <= 0)
        assert lengths.sum() <= 131072 and lengths.max() <= 65536
        for _ in range(sim.batch_size):
            env.step(int(np.flatnonzero(env.action_masks())[0]))
    assert sim.done and len(sim.results) == 3


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_gpus", 12),
        ("num_gpus", 2048),
        ("gpus_per_node", 3),
        ("gpu", "TPU"),
        ("model", "GPT-9"),
        ("capacity_tokens_per_rank", 10),
        ("global_batch_tokens", 0),
        ("num_batches", 0),
        ("length_mixture", (("gamma", 1.0, 2.0, 3.0),)),
        ("length_mixture", (("pareto", 1.0, 100.0, 0.0),)),
        ("min_seq_tokens", 0),
        ("max_seq_tokens", 3_000_000),
        ("allow_offload", "yes"),
        ("offload_capacity_factor", 0.5),
        ("max_ranks", 32),
        ("invalid_action", "ignore"),
    ],
)
def test_every_field_is_validated(field, value):
    kwargs = {"num_gpus": 64, field: value}
    if field == "max_ranks":
        kwargs["num_gpus"] = 64
    with pytest.raises(ConfigError, match=field.split("[")[0]):
        MeshConfig(**kwargs)


def test_length_mixture_clips_and_is_deterministic():
    mixture = LengthMixture(
        (("lognormal", 1.0, 1000.0, 2.0), ("pareto", 1.0, 4096.0, 0.8)), 64, 100_000
    )
    a = mixture.sample(np.random.default_rng(0), 5000)
    b = mixture.sample(np.random.default_rng(0), 5000)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 64 and a.max() <= 100_000 and (a == 100_000).any()
    batch = mixture.sample_batch(np.random.default_rng(1), 1_000_000)
    assert batch.sum() <= 1_000_000 and batch.size > 10
    assert 0.0 < mixture.token_share_above(np.random.default_rng(2), 4096) < 1.0


def test_karmarkar_karp_balances_a_known_instance():
    # Korf's (2009) example: differencing gives {8,6} / {7,5,4} (14 vs 16); the optimum is
    # 15/15, which greedy LPT misses too ({8,5,4} / {7,6}: 17 vs 13).
    parts = karmarkar_karp(np.array([8.0, 7.0, 6.0, 5.0, 4.0]), 2)
    sums = np.bincount(parts, weights=[8, 7, 6, 5, 4], minlength=2)
    assert sorted(sums) == [14.0, 16.0]
    weights = np.random.default_rng(0).lognormal(8, 1.5, 400)
    parts = karmarkar_karp(weights, 8)
    sums = np.bincount(parts, weights=weights, minlength=8)
    assert sums.max() - sums.min() < 0.01 * sums.mean()


@pytest.mark.parametrize("name", POLICIES)
def test_baselines_are_valid_and_deterministic(name):
    env = gym.make(ENV_ID, preset="tiny", disable_env_checker=True)
    first = run_episode(env, make_policy(ENV_ID, name), seed=4, record_actions=True)
    second = run_episode(env, make_policy(ENV_ID, name), seed=4, record_actions=True)
    assert first.actions == second.actions
    assert first.metrics == second.metrics
    for key in ("step_time_s", "tokens_per_s", "mfu", "idle_frac", "exposed_comm_frac"):
        assert np.isfinite(first.metrics[key])


def _mean_step(preset: str, name: str, seeds, **overrides) -> float:
    env = gym.make(ENV_ID, preset=preset, disable_env_checker=True, **overrides)
    return float(
        np.mean(
            [run_episode(env, make_policy(ENV_ID, name), s).metrics["step_time_s"] for s in seeds]
        )
    )


def test_paper_effect_long_tail_heavy_reduced_scale():
    # Half the GPUs and half the batch of the full-scale benchmark (64 H100, 8M tokens).
    scale = {"num_gpus": 32, "global_batch_tokens": 4_194_304}
    seeds = (0, 1, 2)
    static = _mean_step("long-tail-heavy", "static", seeds, **scale)
    balanced = _mean_step("long-tail-heavy", "token-balanced", seeds, **scale)
    bytescale = _mean_step("long-tail-heavy", "bytescale", seeds, **scale)
    assert static / bytescale >= 3.0  # "several times" (the paper: up to 7.89x)
    assert bytescale <= 0.5 * balanced


def test_paper_effect_uniform_short_all_within_ten_percent():
    scale = {"num_gpus": 32, "global_batch_tokens": 2_097_152}
    steps = [
        _mean_step("uniform-short", name, (0, 1), **scale)
        for name in ("static", "token-balanced", "balanced-cp", "bytescale")
    ]
    assert max(steps) <= 1.10 * min(steps)


def test_render_shows_every_rank_and_the_gantt():
    env = small_env(render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text.count("\n  rank ") == 16
    env = small_env(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(int(np.flatnonzero(env.action_masks())[0]))
    image = env.render()
    assert image.ndim == 3 and image.std() > 0


def test_lazy_batches_are_the_generated_instance_for_every_policy():
    """The batches a seeded episode draws as it goes are MeshGenerator.generate's, whatever
    the policy does (common random numbers)."""
    env = MeshAssignEnv(preset="tiny", num_batches=3)
    expected = MeshGenerator.generate(env.config, 4)

    class BatchRecorder:
        uses_observation = False

        def __init__(self, name: str) -> None:
            self.policy = make_policy("MeshAssign-v0", name)
            self.batches: dict[int, list[int]] = {}

        def reset(self, env):
            self.policy.reset(env)

        def act(self, observation, env):
            sim = env.unwrapped.simulator
            self.batches.setdefault(sim.batch_index, sorted(sim.batch_lengths.tolist()))
            return self.policy.act(observation, env)

    for name in ("static", "token-balanced"):
        recorder = BatchRecorder(name)
        run_episode(env, recorder, seed=4)
        assert recorder.batches == {
            i: sorted(expected.batch(i).tolist()) for i in range(expected.num_batches)
        }


def test_recorded_batches_are_checked_and_placed():
    env = MeshAssignEnv(preset="tiny", num_batches=2)
    recorded = MeshInstance.from_batches([np.array([4096, 100, 8000]), np.array([20000])])
    result = run_episode(
        env, make_policy("MeshAssign-v0", "token-balanced"), seed=0, options={"instance": recorded}
    )
    assert result.metrics["tokens_per_s"] > 0
    assert [r.num_sequences for r in env.simulator.results] == [3, 1]
    with pytest.raises(ConfigError, match="holds 1 batches, the config's num_batches is 2"):
        env.reset(options={"instance": MeshInstance.from_batches([np.array([5])])})
    too_long = MeshInstance.from_batches([np.array([5]), np.array([10**6])])
    with pytest.raises(ConfigError, match="a sequence of 1000000 tokens is longer than"):
        env.reset(options={"instance": too_long})
    with pytest.raises(ConfigError, match="every batch needs at least one sequence"):
        MeshInstance.from_batches([np.array([5]), np.zeros(0, np.int64)])
    stream = MeshGenerator.batch_stream(env.config, {"lengths": np.random.default_rng(0)})
    with pytest.raises(ValueError, match="draws batch 0 next"):
        stream.batch(1)
