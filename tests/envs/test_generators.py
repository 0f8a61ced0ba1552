"""Episode generators of every environment: determinism, recorded-instance round trips, common
random numbers across policies (the per-environment specifics live in each env's test file)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.core.errors import ConfigError
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode
from schedgym.envs.datagen.generator import DataGenGenerator
from schedgym.envs.llmcluster.generator import LLMClusterGenerator
from schedgym.envs.mesh.generator import MeshGenerator
from schedgym.envs.prefillchunk.generator import PrefillChunkGenerator
from schedgym.envs.prefixbatch.generator import PrefixBatchGenerator
from schedgym.envs.soc.generator import SoCGenerator

# env id -> (its generator, workload kwargs with randomness in every stream the generator uses,
# two baselines that decide differently, whether the instance is all the episode's randomness:
# then a different reset seed with the same instance replays the same episode).
CASES = {
    "schedgym/SoCDAG-v0": (
        SoCGenerator,
        {"preset": "noisy", "num_jobs": 25, "warmup_jobs": 0},
        ("fcfs", "heft"),
        True,
    ),
    "schedgym/LLMCluster-v0": (
        LLMClusterGenerator,
        {"preset": "tiny", "num_requests": 30, "high_priority_share": 0.3},
        ("round-robin", "llumnix"),
        True,
    ),
    "schedgym/PrefillChunk-v0": (
        PrefillChunkGenerator,
        {"preset": "tiny", "arrival_process": "gamma", "arrival_cv": 2.0},
        ("vllm", "sarathi-512"),
        True,
    ),
    "schedgym/PrefixBatch-v0": (
        PrefixBatchGenerator,
        {"preset": "mixed", "num_requests": 40},
        ("fcfs-lru", "batchllm"),
        True,
    ),
    "schedgym/MeshAssign-v0": (
        MeshGenerator,
        {"preset": "tiny", "length_mixture": (("lognormal", 0.7, 2048.0, 1.0),)},
        ("static", "bytescale"),
        True,
    ),
    # The instance is the validation set and the initial weights; which simulations run depends
    # on the policy, so their parameters stay with the seed's streams.
    "schedgym/OnlineDataGen-v0": (
        DataGenGenerator,
        {"preset": "tiny"},
        ("online-fifo", "adaptive"),
        False,
    ),
}
# Environments that play the seed's workload lazily (drawn as the episode goes, the same numbers
# as the generated instance): their simulator holds no instance to compare.
LAZY = {"schedgym/MeshAssign-v0"}
IDS = list(CASES)


def make(env_id: str):
    return gym.make(env_id, disable_env_checker=True, **CASES[env_id][1]).unwrapped


def assert_instances_equal(first, second) -> None:
    """Field by field: arrays bit for bit, nested dataclasses and tuples recursively."""
    assert type(first) is type(second)
    if dataclasses.is_dataclass(first):
        for field in dataclasses.fields(first):
            if field.name.startswith("_"):  # caches
                continue
            assert_instances_equal(getattr(first, field.name), getattr(second, field.name))
    elif isinstance(first, np.ndarray):
        assert first.dtype == second.dtype and first.shape == second.shape
        np.testing.assert_array_equal(first, second)
    elif isinstance(first, (tuple, list)):
        assert len(first) == len(second)
        for a, b in zip(first, second, strict=True):
            assert_instances_equal(a, b)
    else:
        assert first == second


def rollout(env, seed: int, options=None, max_steps: int = 400, policy_seed: int | None = None):
    """Rewards and observation bytes of a random masked rollout (the policy seeded by
    ``policy_seed``, default ``seed``)."""
    rng = np.random.default_rng(seed if policy_seed is None else policy_seed)
    obs, _ = env.reset(seed=seed, options=options)
    frames = [b"".join(np.ascontiguousarray(obs[k]).tobytes() for k in sorted(obs))]
    rewards = []
    for _ in range(max_steps):
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(b"".join(np.ascontiguousarray(obs[k]).tobytes() for k in sorted(obs)))
        rewards.append(reward)
        if terminated or truncated:
            break
    return rewards, frames


@pytest.mark.parametrize("env_id", IDS)
def test_generate_is_deterministic_and_seed_dependent(env_id):
    generator = CASES[env_id][0]
    config = make(env_id).config
    first = generator.generate(config, 3)
    assert isinstance(first, generator.instance_class)
    assert_instances_equal(first, generator.generate(config, 3))
    assert_instances_equal(first, generator.generate(config, np.random.default_rng(3)))
    with pytest.raises(AssertionError):
        assert_instances_equal(first, generator.generate(config, 4))


@pytest.mark.parametrize("env_id", IDS)
def test_generated_instance_is_the_seeded_episode(env_id):
    generator = CASES[env_id][0]
    env = make(env_id)
    seeded = rollout(env, seed=5)
    if env_id not in LAZY:
        assert_instances_equal(env.simulator.episode, generator.generate(env.config, 5))
    assert rollout(env, seed=5, options={"instance": generator.generate(env.config, 5)}) == seeded


@pytest.mark.parametrize("env_id", IDS)
def test_recorded_instance_survives_pickle_and_replaces_the_seed(env_id):
    generator, _, _, instance_is_everything = CASES[env_id]
    env = make(env_id)
    recorded = pickle.loads(pickle.dumps(generator.generate(env.config, 8)))
    assert copy.deepcopy(recorded) is recorded  # immutable: forks share it
    seeded = rollout(env, seed=8)
    assert rollout(env, seed=8, options={"instance": recorded}) == seeded
    if instance_is_everything:
        # Another reset seed, same instance and policy: the same episode.
        assert rollout(env, seed=999, options={"instance": recorded}, policy_seed=8) == seeded


@pytest.mark.parametrize("env_id", IDS)
def test_two_policies_face_the_same_instance(env_id):
    _, _, policies, _ = CASES[env_id]
    env = make(env_id)
    short = env_id.split("/")[1]
    instances, summaries = [], []
    for name in policies:
        result = run_episode(env, make_policy(short, name), seed=2)
        if env_id not in LAZY:
            instances.append(env.simulator.episode)
        summaries.append(result.metrics)
    if instances:
        assert_instances_equal(*instances)
    assert summaries[0] != summaries[1]  # the policies did decide differently


@pytest.mark.parametrize("env_id", IDS)
def test_instance_option_must_be_an_instance(env_id):
    env = make(env_id)
    with pytest.raises(ConfigError, match=r"options\['instance'\]"):
        env.reset(seed=0, options={"instance": {"arrival_us": [0.0]}})
