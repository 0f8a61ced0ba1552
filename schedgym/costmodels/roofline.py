"""Roofline shapes of the transformer operator groups, and the fitted-coefficient time laws.

Every operator's time is a *soft roofline*: the p-norm of a compute term (FLOPs over peak times a
fitted efficiency) and a memory term (bytes over HBM bandwidth times a fitted efficiency), plus a
fitted launch floor. As ``sharpness`` (p) grows this is exactly ``max(compute, memory)``; a finite
p captures the gradual knee that real GEMMs show near the ridge point. Because the terms come from
the architecture (shapes) and the GPU (datasheet figures), fitted efficiencies carry over to models
and GPUs that were never profiled.

All times here are seconds; token counts are integers or float arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from schedgym.costmodels.hardware import GpuSpec, ModelSpec

FloatArray = NDArray[np.float64]
BYTES_BF16 = 2.0
# FlashAttention processes queries in tiles of this many rows; one thread block per (head, tile).
ATTN_QUERY_TILE = 128

LINEAR_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = ("input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add")
TOKEN_OPS = (*LINEAR_OPS, *ELEMENTWISE_OPS)
# Operator groups reported by calibration: name -> member operators.
GROUPS = {
    "linear": LINEAR_OPS,
    "elementwise": ELEMENTWISE_OPS,
    "embedding": ("emb",),
    "attn_prefill": ("attn_prefill",),
    "attn_decode": ("attn_decode",),
}


@dataclass(frozen=True)
class RooflineCoefficients:
    """Fitted coefficients of one operator (or operator group) on one GPU.

    Attributes:
        compute_eff: achieved fraction of peak FLOP/s.
        memory_eff: achieved fraction of HBM bandwidth.
        floor_s: launch and latency floor added to every call, seconds.
        sharpness: p of the p-norm joining the compute and memory terms (>= 1).
        cta_latency_s: fixed per-thread-block time (decode attention only), seconds.
        rows_per_sm: row-parallel kernels (norms, activations) give each thread block one
            token's row; with fewer rows than ``rows_per_sm * sm_count`` the SMs are not all
            busy and time stops falling with the token count. 0 disables the limit.
    """

    compute_eff: float
    memory_eff: float
    floor_s: float
    sharpness: float = 4.0
    cta_latency_s: float = 0.0
    rows_per_sm: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """Plain-dict form for JSON."""
        return {
            "compute_eff": self.compute_eff,
            "memory_eff": self.memory_eff,
            "floor_s": self.floor_s,
            "sharpness": self.sharpness,
            "cta_latency_s": self.cta_latency_s,
            "rows_per_sm": self.rows_per_sm,
        }


def soft_max(a: FloatArray, b: FloatArray, sharpness: float) -> FloatArray:
    """p-norm of two non-negative arrays: ``max(a, b)`` when sharpness is large."""
    top = np.maximum(np.maximum(a, b), 1e-30)
    return top * ((a / top) ** sharpness + (b / top) ** sharpness) ** (1.0 / sharpness)


def linear_shape(model: ModelSpec, tp: int, op: str) -> tuple[float, float]:
    """The (K, N) of a token-level GEMM ``[M, K] x [K, N]`` on one tensor-parallel rank."""
    head_dim = model.head_dim
    kv_heads_per_rank = max(1.0, model.kv_heads / tp)
    if op == "attn_pre_proj":
        return model.hidden, (model.heads / tp + 2 * kv_heads_per_rank) * head_dim
    if op == "attn_post_proj":
        return model.heads / tp * head_dim, model.hidden
    if op == "mlp_up_proj":  # gate and up projections fused
        return model.hidden, 2 * model.ffn / tp
    if op == "mlp_down_proj":
        return model.ffn / tp, model.hidden
    if op == "lm_head":
        return model.hidden, model.vocab / tp
    raise KeyError(op)


def op_work(
    model: ModelSpec, tp: int, op: str, tokens: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """FLOPs and HBM bytes of one token-level operator on one rank for ``tokens`` rows."""
    tokens = np.asarray(tokens, dtype=float)
    if op in LINEAR_OPS or op == "lm_head":
        k_dim, n_dim = linear_shape(model, tp, op)
        flops = 2.0 * tokens * k_dim * n_dim
        moved = BYTES_BF16 * (k_dim * n_dim + tokens * (k_dim + n_dim))
        return flops, moved
    hidden = float(model.hidden)
    if op in ("input_layernorm", "post_attention_layernorm"):
        width = 2.0 * hidden  # read and write the full hidden state (not sharded)
    elif op == "add":
        width = 3.0 * hidden  # two inputs, one output
    elif op == "emb":
        width = 2.0 * hidden  # gather a row, write it
    elif op == "attn_rope":
        rotated = (model.heads / tp + max(1.0, model.kv_heads / tp)) * model.head_dim
        width = 2.0 * rotated  # q and k (not v) are rotated in place: read and write
    elif op == "mlp_act":
        width = 3.0 * model.ffn / tp  # read gate and up, write the product
    else:
        raise KeyError(op)
    moved = BYTES_BF16 * tokens * width
    return np.zeros_like(moved), moved


def token_op_time_s(
    gpu: GpuSpec,
    coeffs: RooflineCoefficients,
    flops: FloatArray,
    moved_bytes: FloatArray,
    tokens: FloatArray | None = None,
) -> FloatArray:
    """Soft-roofline time of a token-level operator, seconds.

    Args:
        gpu: device figures.
        coeffs: fitted coefficients of the operator.
        flops: FLOPs per call.
        moved_bytes: HBM bytes per call.
        tokens: rows per call; needed only when ``coeffs.rows_per_sm`` is set.
    """
    memory_s = moved_bytes / (gpu.hbm_bytes_per_s * coeffs.memory_eff)
    if coeffs.rows_per_sm > 0.0 and tokens is not None:
        rows = np.maximum(np.asarray(tokens, dtype=float), 1.0)
        busy_rows = coeffs.rows_per_sm * gpu.sm_count
        # Below busy_rows the per-row critical path sets the time: scale up to full occupancy.
        memory_s = memory_s * soft_max(rows, np.full_like(rows, busy_rows), coeffs.sharpness) / rows
    if not np.any(flops):
        return memory_s + coeffs.floor_s
    compute_s = flops / (gpu.peak_flops * coeffs.compute_eff)
    return soft_max(compute_s, memory_s, coeffs.sharpness) + coeffs.floor_s


def prefill_attention_time_s(
    model: ModelSpec,
    tp: int,
    gpu: GpuSpec,
    coeffs: RooflineCoefficients,
    chunk_tokens: FloatArray,
    context_tokens: FloatArray,
) -> FloatArray:
    """Time of causal attention for one prefill chunk on one layer and rank, seconds.

    Args:
        chunk_tokens: new tokens in the chunk.
        context_tokens: tokens already in the KV cache before the chunk.

    The compute term has two parts: all FLOPs spread over every SM, and the critical path of one
    thread block (the last query tile attends to every key) at one SM's share of the peak. The
    second dominates for short chunks, where there are fewer tiles than SMs.
    """
    chunk = np.asarray(chunk_tokens, dtype=float)
    context = np.asarray(context_tokens, dtype=float)
    heads = model.heads / tp
    kv_heads = max(1.0, model.kv_heads / tp)
    head_dim = float(model.head_dim)
    total_keys = context + chunk
    tiles = heads * np.ceil(chunk / ATTN_QUERY_TILE)
    # QK^T and PV over the causal triangle of the chunk plus the full context.
    flops = 4.0 * heads * head_dim * chunk * (context + (chunk + 1.0) / 2.0)
    rate = gpu.peak_flops * coeffs.compute_eff
    spread_s = flops / rate
    tile_flops = 4.0 * ATTN_QUERY_TILE * head_dim * total_keys
    critical_s = tile_flops * gpu.sm_count / rate * np.ceil(tiles / gpu.sm_count)
    compute_s = np.maximum(spread_s, critical_s)
    moved = BYTES_BF16 * head_dim * (2.0 * kv_heads * total_keys + 2.0 * heads * chunk)
    memory_s = moved / (gpu.hbm_bytes_per_s * coeffs.memory_eff)
    return soft_max(compute_s, memory_s, coeffs.sharpness) + coeffs.floor_s


def decode_attention_time_s(
    model: ModelSpec,
    tp: int,
    gpu: GpuSpec,
    coeffs: RooflineCoefficients,
    num_decodes: FloatArray,
    sum_kv_tokens: FloatArray,
) -> FloatArray:
    """Time of decode attention for a batch of single-token queries, one layer and rank, seconds.

    Args:
        num_decodes: sequences decoding in the batch.
        sum_kv_tokens: sum of their KV lengths (tokens).

    One thread block per (sequence, query head) streams that sequence's keys and values; a block
    reads at one SM's share of the HBM bandwidth. Time is the larger of the whole batch's work
    spread over every SM and the critical path of one block of average length (the batch summary
    has no maximum; average is exact for equal lengths).
    """
    count = np.maximum(np.asarray(num_decodes, dtype=float), 1.0)
    kv_sum = np.asarray(sum_kv_tokens, dtype=float)
    heads = model.heads / tp
    key_bytes = 2.0 * BYTES_BF16 * model.head_dim  # one key and one value of one head
    bandwidth = gpu.hbm_bytes_per_s * coeffs.memory_eff
    spread_s = heads * (
        count * coeffs.cta_latency_s / gpu.sm_count + kv_sum * key_bytes / bandwidth
    )
    critical_s = coeffs.cta_latency_s + kv_sum / count * key_bytes * gpu.sm_count / bandwidth
    return soft_max(spread_s, critical_s, coeffs.sharpness) + coeffs.floor_s
