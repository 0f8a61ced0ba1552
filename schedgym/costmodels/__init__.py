"""What LLM inference costs: a calibrated, roofline-shaped iteration-time model.

Public API (times in seconds, sizes in bytes, lengths in tokens):

- :func:`iteration_time_s` / :class:`InferenceCostModel` (fast path
  :meth:`InferenceCostModel.time_from_summary_s`): one engine iteration.
- :func:`kv_cache_bytes_per_token`, :func:`kv_blocks_capacity`: KV-cache memory.
- :func:`kv_migration_time_s`: moving KV blocks between GPUs (NVLink or network).
- :mod:`schedgym.costmodels.network`: NCCL all-reduce and send/recv times.
- :class:`Deployment`: what an LLM serving instance runs on (model, GPU, tp, engine, memory),
  validated once and resolved once into its cost model, KV capacity and migration time.
"""

from schedgym.costmodels.deployment import Deployment, ResolvedDeployment
from schedgym.costmodels.hardware import GpuSpec, ModelSpec, get_gpu, get_model
from schedgym.costmodels.inference import (
    EngineOverhead,
    InferenceCostModel,
    engine_overhead,
    get_cost_model,
    iteration_time_s,
    kv_blocks_capacity,
    kv_cache_bytes_per_token,
    kv_migration_time_s,
    sarathi_engine_overhead,
)
from schedgym.costmodels.network import all_reduce_time_s, send_recv_time_s

__all__ = [
    "Deployment",
    "EngineOverhead",
    "GpuSpec",
    "InferenceCostModel",
    "ModelSpec",
    "ResolvedDeployment",
    "all_reduce_time_s",
    "engine_overhead",
    "get_cost_model",
    "get_gpu",
    "get_model",
    "iteration_time_s",
    "kv_blocks_capacity",
    "kv_cache_bytes_per_token",
    "kv_migration_time_s",
    "sarathi_engine_overhead",
    "send_recv_time_s",
]
