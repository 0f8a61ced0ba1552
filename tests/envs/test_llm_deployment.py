"""The LLM environments share one deployment description and one field vocabulary; the old
field names still work, for one version, as deprecated aliases."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import pytest

import schedgym  # noqa: F401
from schedgym.commands.common import make_kwargs
from schedgym.core.config import resolve_config, with_overrides
from schedgym.core.errors import ConfigError
from schedgym.costmodels.deployment import Deployment, DeploymentFields
from schedgym.envs.llmcluster.config import PRESETS as LLM_PRESETS
from schedgym.envs.llmcluster.config import LLMClusterConfig
from schedgym.envs.prefillchunk.config import PRESETS as PREFILL_PRESETS
from schedgym.envs.prefillchunk.config import PrefillChunkConfig
from schedgym.envs.prefixbatch.config import PRESETS as PREFIX_PRESETS
from schedgym.envs.prefixbatch.config import PrefixBatchConfig
from schedgym.leaderboard.suites import (
    DIGEST_ADDED_FIELDS,
    DIGEST_FIELD_NAMES,
    Scenario,
    digested_config,
    resolved_config,
)
from schedgym.serving.engine import default_watermark_blocks, min_kv_capacity_blocks

LLM = "schedgym/LLMCluster-v0"
PREFILL = "schedgym/PrefillChunk-v0"
PREFIX = "schedgym/PrefixBatch-v0"
CONFIGS = {
    LLM: (LLMClusterConfig, LLM_PRESETS),
    PREFILL: (PrefillChunkConfig, PREFILL_PRESETS),
    PREFIX: (PrefixBatchConfig, PREFIX_PRESETS),
}
# (env id, old name, new name, a valid value other than the default)
ALIASES = [
    (LLM, "memory_utilization", "gpu_memory_utilization", 0.8),
    (LLM, "kv_blocks_per_instance", "kv_capacity_blocks", 640),
    (LLM, "arrival", "arrival_process", "gamma"),
    (PREFILL, "kv_memory_utilization", "gpu_memory_utilization", 0.8),
    (PREFILL, "qps", "request_rate_per_s", 2.5),
    (PREFIX, "kv_memory_utilization", "gpu_memory_utilization", 0.8),
]


def test_every_renamed_field_is_listed_and_maps_to_a_field():
    listed = {(env_id, old, new) for env_id, old, new, _ in ALIASES}
    for env_id, (config_cls, _) in CONFIGS.items():
        names = {f.name for f in dataclasses.fields(config_cls)}
        for old, new in config_cls.renamed_fields.items():
            assert (env_id, old, new) in listed
            assert new in names and old not in names
        # The suites digest these configs under the names they were published with.
        assert DIGEST_FIELD_NAMES[env_id] == {
            new: old for old, new in config_cls.renamed_fields.items()
        }
    assert len(listed) == sum(len(c.renamed_fields) for c, _ in CONFIGS.values())


def test_one_vocabulary_across_the_llm_environments():
    for config_cls, presets in CONFIGS.values():
        names = {f.name for f in dataclasses.fields(config_cls)}
        assert issubclass(config_cls, DeploymentFields)
        assert {f.name for f in dataclasses.fields(DeploymentFields)} <= names
        assert not names & set(config_cls.renamed_fields)
        for preset in presets.values():  # presets speak the new vocabulary
            assert set(preset) <= names
    assert {"arrival_process", "request_rate_per_s"} <= {
        f.name for f in dataclasses.fields(LLMClusterConfig)
    }
    assert {"arrival_process", "request_rate_per_s"} <= {
        f.name for f in dataclasses.fields(PrefillChunkConfig)
    }


@pytest.mark.parametrize(("env_id", "old", "new", "value"), ALIASES)
def test_an_old_name_maps_to_the_new_field_with_a_warning(env_id, old, new, value):
    config_cls, presets = CONFIGS[env_id]
    expected = resolve_config(config_cls, presets, None, "tiny", {new: value})
    assert getattr(expected, new) == value
    # Through the env's keyword overrides (gymnasium.make, resolve_config).
    with pytest.warns(FutureWarning, match=rf"^{old}: renamed to {new}; .*set {new} instead"):
        config = resolve_config(config_cls, presets, None, "tiny", {old: value})
    assert config == expected
    # On an explicit config.
    with pytest.warns(FutureWarning, match=rf"^{old}: renamed to {new}"):
        assert with_overrides(config_cls(**presets["tiny"]), {old: value}) == expected
    # Through the CLI's --set.
    with pytest.warns(FutureWarning, match=rf"^{old}: renamed to {new}"):
        kwargs = make_kwargs(env_id, "tiny", [f"{old}={value}"])
    assert kwargs[new] == value and old not in kwargs
    # And gymnasium.make itself.
    with pytest.warns(FutureWarning, match=rf"^{old}: renamed to {new}"):
        env = gym.make(env_id, preset="tiny", disable_env_checker=True, **{old: value})
    assert env.unwrapped.config == expected
    env.close()


@pytest.mark.parametrize(("env_id", "old", "new", "value"), ALIASES)
def test_setting_a_field_under_both_names_is_an_error(env_id, old, new, value):
    config_cls, presets = CONFIGS[env_id]
    both = rf"^{new}: given both under its name and under its deprecated name {old}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before any warning
        with pytest.raises(ConfigError, match=both):
            resolve_config(config_cls, presets, None, None, {old: value, new: value})
        with pytest.raises(ConfigError, match=both):
            resolve_config(config_cls, presets, None, None, {new: value, old: value})
        with pytest.raises(ConfigError, match=both):
            make_kwargs(env_id, None, [f"{new}={value}", f"{old}={value}"])


def test_new_names_do_not_warn_and_other_envs_do_not_know_the_old_names():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_kwargs(PREFILL, None, ["request_rate_per_s=2", "gpu_memory_utilization=0.8"])
    with pytest.raises(ConfigError, match=r"^qps: unknown config field"):
        make_kwargs("schedgym/SoCDAG-v0", None, ["qps=3"])
    with pytest.raises(ConfigError, match=r"^memory_utilization: unknown config field"):
        make_kwargs(PREFIX, None, ["memory_utilization=0.8"])


def test_the_three_envs_resolve_the_same_deployment_identically():
    fields = {
        "model": "Llama-3-8B",
        "gpu": "H100",
        "tp": 2,
        "engine_overhead": "sarathi",
        "gqa_decode_attention": True,
        "gpu_memory_utilization": 0.8,
    }
    deployment = Deployment(**fields)
    for fixed in (None, 3000):
        expected = dataclasses.replace(deployment, kv_capacity_blocks=fixed)
        instances = []  # the engines of the three environments
        for env_id in CONFIGS:
            env = gym.make(
                env_id,
                preset="tiny",
                disable_env_checker=True,
                **fields,
                kv_capacity_blocks=fixed,
            )
            env.reset(seed=0)
            config, sim = env.unwrapped.config, env.unwrapped.simulator
            assert config.deployment == expected
            resolved = config.resolved_deployment()
            assert resolved.deployment == expected
            # What the engine runs on: the (first) instance of the cluster, or the replica.
            instance = sim.instances[0] if env_id == LLM else sim.instance
            assert instance.cost_model is resolved.cost_model
            assert instance.kv.capacity_blocks == resolved.kv_capacity_blocks
            instances.append(instance)
            env.close()
        cost_models = {id(instance.cost_model) for instance in instances}
        assert len(cost_models) == 1  # one cost model for one deployment
        if fixed is not None:
            assert {instance.kv.capacity_blocks for instance in instances} == {fixed}
    # LLMCluster copies KV at the deployment's migration time.
    env = gym.make(LLM, preset="tiny", disable_env_checker=True, gpus_per_node=4, **fields)
    env.reset(seed=0)
    sim = env.unwrapped.simulator
    resolved = env.unwrapped.config.resolved_deployment()
    # Two instances of tp=2 per 4-GPU node: instances 0 and 1 share a node.
    assert sim.cluster.migration_time_s(50, 0, 1) == resolved.kv_migration_time_s(50, True)
    env.close()


def test_prefillchunk_fixed_kv_capacity_must_hold_a_whole_request():
    base = {"lengths": "fixed", "prompt_tokens": 1000, "output_tokens": 24}
    smallest = min_kv_capacity_blocks(1024)
    assert (
        smallest - default_watermark_blocks(smallest)
        >= 64
        > (smallest - 1 - default_watermark_blocks(smallest - 1))
    )
    with pytest.raises(
        ConfigError, match=rf"^kv_capacity_blocks: must be in \[{smallest}, 1e\+09\]"
    ):
        PrefillChunkConfig(max_total_tokens=1024, kv_capacity_blocks=smallest - 1, **base)
    # At the smallest capacity, requests of the longest length run (one at a time) to the end.
    env = gym.make(
        PREFILL,
        disable_env_checker=True,
        num_requests=3,
        max_total_tokens=1024,
        kv_capacity_blocks=smallest,
        **base,
    )
    env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(int(mask.nonzero()[0][-1]))
        mask = env.unwrapped.action_masks()
        steps += 1
        assert steps < 10_000
    assert terminated and info["requests_completed"] == 3
    env.close()


def test_suite_digests_see_configs_as_published():
    plain = Scenario(LLM, "x", "tiny")
    published = digested_config(plain)
    current = resolved_config(plain)
    assert published["kv_blocks_per_instance"] == current["kv_capacity_blocks"] == 64
    assert "kv_capacity_blocks" not in published and "gqa_decode_attention" not in published
    assert set(published) == (
        set(current) - set(DIGEST_ADDED_FIELDS[LLM]) - set(DIGEST_FIELD_NAMES[LLM])
    ) | set(DIGEST_FIELD_NAMES[LLM].values())
    # A knob added since still counts once it leaves its published value.
    changed = digested_config(Scenario(LLM, "x", "tiny", {"gqa_decode_attention": True}))
    assert changed["gqa_decode_attention"] is True
    fixed = digested_config(Scenario(PREFILL, "x", "tiny", {"kv_capacity_blocks": 4000}))
    assert fixed["kv_capacity_blocks"] == 4000
    assert "kv_capacity_blocks" not in digested_config(Scenario(PREFILL, "x", "tiny"))
