"""GPU and model catalogue, loaded from the shipped ``data/hardware.json``.

Units: the JSON keeps its source's field names, where ``*_gbps`` are gigabytes per second
(e.g. A100 HBM 2039 GB/s) and ``bf16_dense_tflops`` is 1e12 FLOP/s. The dataclasses here convert
to SI units (FLOP/s, bytes/s, bytes) and say so in each field name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from schedgym.core.errors import ConfigError

BYTES_PER_PARAM_BF16 = 2


@dataclass(frozen=True)
class GpuSpec:
    """Datasheet figures of one GPU type, in SI units."""

    name: str
    peak_flops: float  # dense bf16 FLOP/s
    hbm_bytes: float  # memory capacity, bytes
    hbm_bytes_per_s: float
    nvlink_bytes_per_s: float  # per GPU, one direction; 0 when there is no NVLink
    internode_bytes_per_s: float  # per GPU network bandwidth between nodes
    pcie_bytes_per_s: float
    sm_count: int
    # Profiled GPU of the same silicon whose fitted efficiencies and NCCL tables apply; the
    # GPU's own name when it has none.
    calibration_name: str = ""

    @property
    def calibrated_as(self) -> str:
        """Name under which fitted coefficients and network tables are looked up."""
        return self.calibration_name or self.name


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer (Llama family: gated MLP, RMSNorm, RoPE)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    params_b: float  # parameters, billions

    @property
    def head_dim(self) -> int:
        """Dimension of one attention head."""
        return self.hidden // self.heads

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights in bf16."""
        return self.params_b * 1e9 * BYTES_PER_PARAM_BF16


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Any]:
    text = resources.files("schedgym.costmodels").joinpath("data/hardware.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def gpu_names() -> list[str]:
    """Canonical GPU names in the catalogue."""
    return sorted(_catalogue()["gpus"])


def model_names() -> list[str]:
    """Canonical model names in the catalogue."""
    return sorted(_catalogue()["models"])


def _lookup(table: dict[str, Any], name: str, field: str) -> str:
    """Resolves a name case-insensitively, including short aliases like ``A100``."""
    aliases: dict[str, str] = _catalogue()["aliases"]
    by_lower = {key.lower(): key for key in table}
    by_lower.update({alias.lower(): target for alias, target in aliases.items()})
    resolved = by_lower.get(str(name).lower())
    if resolved is None or resolved not in table:
        raise ConfigError(f"{field}: unknown {field} {name!r}; known: {', '.join(sorted(table))}")
    return resolved


@lru_cache(maxsize=64)
def get_gpu(name: str) -> GpuSpec:
    """Returns the spec of a GPU by canonical name or alias (``A100``, ``H100``).

    Raises:
        ConfigError: ``gpu: unknown gpu ...`` when the name is not in the catalogue.
    """
    gpus = _catalogue()["gpus"]
    key = _lookup(gpus, name, "gpu")
    raw = gpus[key]
    giga = 1e9
    return GpuSpec(
        name=key,
        peak_flops=raw["bf16_dense_tflops"] * 1e12,
        hbm_bytes=raw["hbm_gb"] * giga,
        hbm_bytes_per_s=raw["hbm_gbps"] * giga,
        nvlink_bytes_per_s=raw["nvlink_gbps_per_gpu"] * giga,
        internode_bytes_per_s=raw["internode_gbps_per_gpu"] * giga,
        pcie_bytes_per_s=raw["pcie_gbps"] * giga,
        sm_count=int(raw["sm_count"]),
        calibration_name=raw.get("same_silicon_as", key),
    )


@lru_cache(maxsize=64)
def get_model(name: str) -> ModelSpec:
    """Returns the architecture of a model by name (case-insensitive), e.g. ``Llama-2-7B``.

    Raises:
        ConfigError: ``model: unknown model ...`` when the name is not in the catalogue.
    """
    models = _catalogue()["models"]
    key = _lookup(models, name, "model")
    raw = models[key]
    return ModelSpec(name=key, **raw)


def check_tp(model: ModelSpec, tp: int) -> None:
    """Validates a tensor-parallel degree against a model's heads.

    Raises:
        ConfigError: ``tp: ...`` when tp is not positive or does not divide the heads.
    """
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ConfigError(f"tp: must be a positive integer, got {tp!r}")
    if model.heads % tp:
        raise ConfigError(
            f"tp: {tp} does not divide the {model.heads} attention heads of {model.name}"
        )
