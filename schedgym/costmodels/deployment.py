"""What an LLM serving instance runs on: one description shared by the LLM environments.

LLMCluster, PrefillChunk and PrefixBatch each serve a model on GPUs through a continuous-batching
engine. What they run on (model, GPU, tensor-parallel degree, the engine's CPU overhead and decode
kernel, how much GPU memory the engine may use, or a fixed KV capacity) is a :class:`Deployment`:
validated once here, with one vocabulary and one set of ranges, and resolved once
(:meth:`Deployment.resolve`) into what the simulators consume: the iteration cost model, the KV
capacity in blocks and the time to migrate KV blocks between instances.

Each environment's config inherits :class:`DeploymentFields`, so the deployment's fields stay flat
config fields (``--set tp=2``, ``--set gpu_memory_utilization=0.8``) next to the environment's
own, and reads the validated :class:`Deployment` as ``config.deployment``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property, lru_cache

from schedgym.core.config import require_choice, require_number
from schedgym.core.errors import ConfigError
from schedgym.costmodels.hardware import check_tp, get_gpu, get_model
from schedgym.costmodels.inference import (
    DEFAULT_BLOCK_TOKENS,
    ENGINES,
    InferenceCostModel,
    get_cost_model,
    kv_blocks_capacity,
    kv_migration_time_s,
)
from schedgym.costmodels.network import GPUS_PER_NODE

# Tensor parallelism splits every layer and all-reduces twice per layer, so engines keep a
# tensor-parallel group inside one NVLink domain. The catalogue's systems are 8-GPU nodes
# (A100/H100 SXM, Calculon's nvl8 tables) and its measured all-reduce tables go up to 8 ranks
# within a node; a larger group would be costed as an all-reduce across nodes, which is not how
# tensor-parallel serving is deployed. So tp is at most the catalogue's node size.
MAX_TP = GPUS_PER_NODE
# Bounds of a fixed KV capacity, in blocks of DEFAULT_BLOCK_TOKENS tokens: below 8 an instance
# cannot hold even one short conversation; 1e9 blocks (16e9 tokens) is beyond any GPU.
MIN_KV_CAPACITY_BLOCKS = 8
MAX_KV_CAPACITY_BLOCKS = 1_000_000_000


@dataclass(frozen=True)
class DeploymentFields:
    """The fields of a :class:`Deployment`, flat, for environment configs to inherit.

    Attributes:
        model: the served model (cost-model catalogue name, e.g. ``Mistral-7B``).
        gpu: the GPU of each tensor-parallel rank (catalogue name or alias, e.g. ``A100``).
        tp: tensor-parallel degree, 1 to :data:`MAX_TP`; must divide the model's attention heads.
        engine_overhead: the engine's CPU overhead per iteration: ``none`` (GPU time only, a
            modern engine whose CPU work hides behind the GPU), ``sarathi`` (fitted to the 2023
            Sarathi-Serve engine) or ``tensorrt-llm``.
        gqa_decode_attention: the decode-attention kernel reads each KV head once per group of
            query heads (FlashInfer's); ``False`` charges the reads per query head, as the
            calibration profile's kernel behaves (see
            :class:`~schedgym.costmodels.inference.InferenceCostModel`). Matters for GQA models.
        gpu_memory_utilization: fraction of each GPU's memory the engine may use, in (0, 1]
            (vLLM's ``gpu_memory_utilization``, default 0.9); the KV capacity is what is left
            after weights, activations and a reserve.
        kv_capacity_blocks: a fixed KV capacity per instance in 16-token blocks, overriding
            the one derived from GPU memory (e.g. to study memory pressure at a small scale);
            ``None`` derives it.
    """

    model: str = "Mistral-7B"
    gpu: str = "A100"
    tp: int = 1
    engine_overhead: str = "none"
    gqa_decode_attention: bool = False
    gpu_memory_utilization: float = 0.9
    kv_capacity_blocks: int | None = None

    def __post_init__(self) -> None:
        """Validates the deployment fields, by building the :class:`Deployment` (once)."""
        _ = self.deployment

    @cached_property
    def deployment(self) -> Deployment:
        """These fields as a validated :class:`Deployment` (built, and so validated, once)."""
        return Deployment(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(DeploymentFields)}
        )


@dataclass(frozen=True)
class Deployment(DeploymentFields):
    """What one serving instance runs on, validated at construction (fields as in
    :class:`DeploymentFields`).

    Raises:
        ConfigError: naming the field and its allowed range or choices.
    """

    def __post_init__(self) -> None:
        # The catalogue's errors already start with the field name (``model: unknown ...``).
        model = get_model(self.model)
        get_gpu(self.gpu)
        require_number("tp", self.tp, 1, MAX_TP, integer=True)
        check_tp(model, self.tp)
        require_choice("engine_overhead", self.engine_overhead, ENGINES)
        if not isinstance(self.gqa_decode_attention, bool):
            raise ConfigError(
                f"gqa_decode_attention: must be true or false, got {self.gqa_decode_attention!r}"
            )
        require_number(
            "gpu_memory_utilization",
            self.gpu_memory_utilization,
            0.0,
            1.0,
            low_inclusive=False,
        )
        if self.kv_capacity_blocks is not None:
            require_number(
                "kv_capacity_blocks",
                self.kv_capacity_blocks,
                MIN_KV_CAPACITY_BLOCKS,
                MAX_KV_CAPACITY_BLOCKS,
                integer=True,
            )

    @property
    def deployment(self) -> Deployment:
        """The deployment itself (a config's ``deployment`` is one of these)."""
        return self

    def resolve(self, activation_batch_tokens: int) -> ResolvedDeployment:
        """The cost model, KV capacity and migration time of this deployment (cached).

        Args:
            activation_batch_tokens: the largest batch, in tokens, whose activations the engine
                reserves memory for (what the environment's batching can put in one
                iteration); ignored when ``kv_capacity_blocks`` fixes the capacity.

        Raises:
            ConfigError: ``gpu: ...`` when the weights and activations leave no KV memory.
        """
        require_number(
            "activation_batch_tokens", activation_batch_tokens, 1, 10_000_000, integer=True
        )
        return _resolve(self, activation_batch_tokens)


@dataclass(frozen=True)
class ResolvedDeployment:
    """A :class:`Deployment` resolved into what a simulator runs on.

    Attributes:
        deployment: what was resolved.
        cost_model: the calibrated iteration-time model of one instance (shared, read-only).
        kv_capacity_blocks: KV blocks of one instance (16 tokens each).
        block_tokens: tokens per KV block.
    """

    deployment: Deployment
    cost_model: InferenceCostModel
    kv_capacity_blocks: int
    block_tokens: int = DEFAULT_BLOCK_TOKENS

    def kv_migration_time_s(self, num_blocks: int, same_node: bool) -> float:
        """Time to copy ``num_blocks`` KV blocks of one request to another instance of the same
        deployment, seconds: over NVLink within a node, over the network across nodes."""
        d = self.deployment
        return kv_migration_time_s(d.model, d.gpu, num_blocks, d.tp, same_node, self.block_tokens)


@lru_cache(maxsize=64)
def _resolve(deployment: Deployment, activation_batch_tokens: int) -> ResolvedDeployment:
    d = deployment
    capacity = d.kv_capacity_blocks
    if capacity is None:
        capacity = kv_blocks_capacity(
            d.model,
            d.gpu,
            d.tp,
            memory_utilization=d.gpu_memory_utilization,
            max_batch_tokens=activation_batch_tokens,
        )
    cost_model = get_cost_model(d.model, d.gpu, d.tp, d.engine_overhead, d.gqa_decode_attention)
    return ResolvedDeployment(d, cost_model, capacity)
