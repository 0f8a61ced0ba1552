"""The shared deployment description of the LLM environments: validation and resolution."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from schedgym.core.errors import ConfigError
from schedgym.costmodels.deployment import (
    MAX_TP,
    Deployment,
    DeploymentFields,
)
from schedgym.costmodels.hardware import get_model, model_names
from schedgym.costmodels.inference import (
    get_cost_model,
    kv_blocks_capacity,
    kv_migration_time_s,
)
from schedgym.costmodels.network import GPUS_PER_NODE


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "GPT-9", r"^model: unknown model 'GPT-9'"),
        ("gpu", "TPUv5", r"^gpu: unknown gpu 'TPUv5'"),
        ("tp", 0, r"^tp: must be in \[1, 8\], got 0"),
        ("tp", 16, r"^tp: must be in \[1, 8\], got 16"),
        ("tp", 2.0, r"^tp: must be an integer"),
        ("tp", 3, r"^tp: 3 does not divide the 32 attention heads"),
        ("engine_overhead", "fast", r"^engine_overhead: must be one of \['none', 'sarathi'"),
        ("gqa_decode_attention", "yes", r"^gqa_decode_attention: must be true or false"),
        ("gpu_memory_utilization", 0.0, r"^gpu_memory_utilization: must be in \(0, 1\], got 0"),
        ("gpu_memory_utilization", 1.5, r"^gpu_memory_utilization: must be in \(0, 1\]"),
        ("gpu_memory_utilization", float("nan"), r"^gpu_memory_utilization: must be finite"),
        ("kv_capacity_blocks", 4, r"^kv_capacity_blocks: must be in \[8, 1e\+09\], got 4"),
        ("kv_capacity_blocks", 2 * 10**9, r"^kv_capacity_blocks: must be in \[8, 1e\+09\]"),
        ("kv_capacity_blocks", 100.5, r"^kv_capacity_blocks: must be an integer"),
    ],
)
def test_bad_deployment_names_the_field_and_its_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        Deployment(**{field: value})


def test_tp_cap_is_the_catalogues_node_size_and_every_model_fits_it():
    """Tensor parallelism stays inside one NVLink node of the catalogue (8 GPUs), and every
    catalogue model has a tensor-parallel degree up to that cap that divides its heads."""
    assert MAX_TP == GPUS_PER_NODE == 8
    for name in model_names():
        heads = get_model(name).heads
        assert any(heads % tp == 0 for tp in range(2, MAX_TP + 1)), name
    Deployment(model="Llama-2-70B", tp=8)  # the largest accepted degree


def test_resolution_matches_the_cost_model_functions_and_is_cached():
    deployment = Deployment(
        model="Llama-3-8B",
        gpu="H100",
        tp=2,
        engine_overhead="sarathi",
        gqa_decode_attention=True,
        gpu_memory_utilization=0.8,
    )
    resolved = deployment.resolve(4096)
    assert resolved is deployment.resolve(4096)  # resolved once
    assert resolved.deployment == deployment
    assert resolved.cost_model is get_cost_model("Llama-3-8B", "H100", 2, "sarathi", True)
    assert resolved.kv_capacity_blocks == kv_blocks_capacity(
        "Llama-3-8B", "H100", 2, memory_utilization=0.8, max_batch_tokens=4096
    )
    # Larger activation reservations leave fewer KV blocks.
    assert deployment.resolve(65_536).kv_capacity_blocks < resolved.kv_capacity_blocks
    for blocks, same_node in ((0, True), (7, True), (300, False)):
        assert resolved.kv_migration_time_s(blocks, same_node) == kv_migration_time_s(
            "Llama-3-8B", "H100", blocks, 2, same_node
        )
    assert resolved.kv_migration_time_s(300, False) > resolved.kv_migration_time_s(300, True)


def test_fixed_kv_capacity_overrides_the_memory_model():
    fixed = Deployment(kv_capacity_blocks=1234, gpu_memory_utilization=0.3)
    assert fixed.resolve(16).kv_capacity_blocks == 1234
    assert fixed.resolve(100_000).kv_capacity_blocks == 1234


def test_resolution_rejects_what_does_not_fit():
    with pytest.raises(ConfigError, match=r"^gpu: Llama-2-70B at tp=1 needs"):
        Deployment(model="Llama-2-70B", gpu="A10").resolve(2048)
    with pytest.raises(ConfigError, match=r"^activation_batch_tokens: must be in"):
        Deployment().resolve(0)


@dataclasses.dataclass(frozen=True)
class Config(DeploymentFields):
    """An environment config in miniature: the deployment fields plus its own."""

    other: int = 3


def test_fields_build_an_equal_validated_deployment():
    config = Config(model="Llama-2-7B", tp=4, other=5)
    assert config.deployment == Deployment(model="Llama-2-7B", tp=4)
    assert config.deployment is config.deployment  # built once
    assert Deployment().deployment == Deployment()
    with pytest.raises(ConfigError, match=r"^tp: must be in \[1, 8\]"):
        Config(tp=32)
    # The cached deployment stays out of the config's fields, equality and copies.
    assert [f.name for f in dataclasses.fields(Config)][-1] == "other"
    assert "deployment" not in dataclasses.asdict(config)
    assert pickle.loads(pickle.dumps(config)) == config
    assert dataclasses.replace(config, tp=2).deployment.tp == 2
