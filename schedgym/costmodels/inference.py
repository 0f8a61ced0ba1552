"""LLM inference cost model: iteration time, KV-cache capacity, KV migration time.

An engine iteration runs every layer once over the batch's tokens. Its time (seconds) is::

    layers * (token-level operators(M) + 2 all-reduces(M) when tp > 1
              + sum over prefill chunks of prefill attention(chunk, context)
              + decode attention(number of decodes, sum of their KV lengths))
    + embedding(M) + LM head(sequences)

where M is the batch's token count (prefill chunk tokens plus one per decode). Every operator is
a fitted soft roofline (see :mod:`schedgym.costmodels.roofline`) whose compute efficiencies come
from isolated operator profiles; a whole forward pass sustains a different tensor throughput
(on H100 about 22% less), so the compute efficiencies of the GEMMs and of prefill attention are
divided by a per-GPU ``compute_scale`` fitted to independent whole-forward measurements
(:mod:`schedgym.costmodels.calibration.whole_forward`; 1 where none is applied).

The engine's CPU work (scheduling, input preparation, sampling) overlaps with it, since
kernel launches are asynchronous: iteration = softmax_p(GPU time, CPU time), which is their max
for a large p (what Sarathi's measurements fit) and their sum for p = 1.

Token-level parts depend only on M, so they are tabulated once per (model, GPU, tp) and the hot
call is a few list lookups and two closed-form attention terms:
:meth:`InferenceCostModel.time_from_summary_s` takes the batch as aggregates so a serving engine
need not build lists.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError
from schedgym.costmodels.coefficients import Calibration, shipped_calibration
from schedgym.costmodels.hardware import (
    BYTES_PER_PARAM_BF16,
    GpuSpec,
    ModelSpec,
    check_tp,
    get_gpu,
    get_model,
)
from schedgym.costmodels.network import collective_times_s, send_recv_time_s
from schedgym.costmodels.roofline import (
    ATTN_QUERY_TILE,
    ELEMENTWISE_OPS,
    LINEAR_OPS,
    RooflineCoefficients,
    op_work,
    token_op_time_s,
)

DEFAULT_TABLE_TOKENS = 16384
DEFAULT_BLOCK_TOKENS = 16
# The LM head has the shape class of the up projection (K = hidden, wide N).
LM_HEAD_COEFFICIENTS_FROM = "mlp_up_proj"
BREAKDOWN_GROUPS = (
    "linear",
    "elementwise",
    "all_reduce",
    "attn_prefill",
    "attn_decode",
    "embedding",
    "lm_head",
    "engine_overhead",
)


@dataclass(frozen=True)
class EngineOverhead:
    """CPU-side time of an engine iteration (scheduling, input preparation, sampling, Python).

    CPU time is ``per_iteration_s + per_sequence_s * sequences`` (seconds); it overlaps the GPU
    time as the p-norm with p = ``overlap_sharpness`` (large: full overlap, 1: none).
    ``EngineOverhead()`` means no CPU cost: pure GPU time.
    """

    per_iteration_s: float = 0.0
    per_sequence_s: float = 0.0
    overlap_sharpness: float = 50.0


ENGINES = ("none", "sarathi", "tensorrt-llm")
WHOLE_FORWARD_FILE = "whole_forward_fit.json"
# Operators whose compute term the whole-forward compute scale applies to (the LM head borrows
# the up projection's coefficients).
COMPUTE_SCALED_OPS = (*LINEAR_OPS, "attn_prefill")


@lru_cache(maxsize=1)
def _whole_forward_fit() -> dict[str, Any]:
    path = resources.files("schedgym.costmodels").joinpath(f"data/{WHOLE_FORWARD_FILE}")
    raw: dict[str, Any] = json.loads(path.read_text())
    return raw


def shipped_compute_scales() -> dict[str, float]:
    """Per-GPU whole-forward compute scales (``data/whole_forward_fit.json``); GPUs without
    whole-forward measurements are absent (scale 1: the operator profiles as they are)."""
    return {d: float(v) for d, v in _whole_forward_fit()["compute_scale"].items()}


def tensorrt_llm_engine_overhead() -> EngineOverhead:
    """Per-iteration time TensorRT-LLM adds to the GPU-time model (launch gaps, sampling,
    runtime), fitted to the NeMo and TensorRT-LLM whole-forward measurements on A100 and H100
    (about 1.9 ms, added to every iteration: those engines do not overlap it)."""
    engine = _whole_forward_fit()["engines"]["tensorrt-llm"]
    return EngineOverhead(float(engine["per_iteration_s"]), 0.0, overlap_sharpness=1.0)


def with_compute_scale(
    coefficients: dict[str, RooflineCoefficients], scale: float
) -> dict[str, RooflineCoefficients]:
    """Coefficients whose GEMM and prefill-attention compute efficiencies are divided by
    ``scale`` (> 1: a whole forward pass runs those parts slower than the isolated profiles)."""
    if not (math.isfinite(scale) and scale > 0.0):
        raise ConfigError(f"compute_scale: must be a positive number, got {scale!r}")
    return {
        op: dataclasses.replace(c, compute_eff=c.compute_eff / scale)
        if op in COMPUTE_SCALED_OPS
        else c
        for op, c in coefficients.items()
    }


@dataclass(frozen=True)
class SharedPrefixKernel:
    """A cascade (shared-prefix) decode-attention kernel's coefficients.

    Cascade kernels (FlashInfer's cascade inference, Hydragen, ChunkAttention, BatchLLM's
    prefix-shared attention, vLLM's cascade attention) split a decoding batch's attention into a
    multi-query pass over each shared prefix, whose KV is read once for all the requests that
    share it, a decode pass over each request's own suffix, and a merge of the two softmax
    states. The multi-query pass of ``n`` requests over a ``P``-token prefix is a soft roofline
    of ``4 * heads * head_dim * n * P`` FLOPs at the calibrated prefill kernel's compute
    efficiency (tensor cores, the KV split across SMs) and of the prefix's KV read once per KV
    head at the decode kernel's bandwidth efficiency. Per layer the pass takes
    ``soft_max_p(fixed_s, work)``: the extra kernel launches and the merge are a floor that
    large work hides (``p = overlap_sharpness``). Fitted to published kernel measurements
    (``data/shared_prefix_kernel.csv``, :mod:`schedgym.costmodels.calibration.shared_prefix_fit`).
    """

    fixed_s: float  # per layer, seconds
    overlap_sharpness: float


@lru_cache(maxsize=1)
def shipped_shared_prefix_kernel() -> SharedPrefixKernel:
    """The shipped cascade-kernel coefficients (``data/shared_prefix_kernel.json``)."""
    path = resources.files("schedgym.costmodels").joinpath("data/shared_prefix_kernel.json")
    raw = json.loads(path.read_text())
    return SharedPrefixKernel(raw["fixed_s"], raw["overlap_sharpness"])


@lru_cache(maxsize=1)
def sarathi_engine_overhead() -> EngineOverhead:
    """CPU overhead fitted to Sarathi-Serve's measured iterations (``data/engine_overhead.json``).

    It describes that 2023 Python engine driving two GPUs through Ray (about 50 ms per iteration
    plus 1.1 ms per sequence, hidden behind GPU work when that is longer); use it to reproduce
    those measurements, not as a property of the GPU.
    """
    path = resources.files("schedgym.costmodels").joinpath("data/engine_overhead.json")
    raw = json.loads(path.read_text())
    return EngineOverhead(raw["per_iteration_s"], raw["per_sequence_s"], raw["overlap_sharpness"])


def _check_count(value: float, field: str) -> None:
    if isinstance(value, bool) or not value >= 0:
        raise ConfigError(f"{field}: must be >= 0, got {value!r}")


@dataclass(frozen=True)
class DecodeConstants:
    """Decode-only iteration constants folded from model, GPU and coefficients (seconds).

    Decode attention per layer is the soft maximum (``sharpness``) of the work spread over the
    GPU (``per_sequence_spread_s * sequences + per_key_spread_s * keys``) and one thread block's
    critical path (``block_latency_s + per_key_critical_s * keys / sequences``), plus
    ``floor_s``; the CPU side is ``cpu_fixed_s + cpu_sequence_s * sequences``, overlapped with
    the GPU by a soft maximum of ``overlap_sharpness``.
    """

    layers: float
    per_sequence_spread_s: float
    per_key_spread_s: float
    block_latency_s: float
    per_key_critical_s: float
    sharpness: float
    floor_s: float
    cpu_fixed_s: float
    cpu_sequence_s: float
    overlap_sharpness: float


class InferenceCostModel:
    """Iteration-time predictor for one (model, GPU, tensor-parallel degree), cached tables.

    Args:
        model: model name (``Llama-2-7B``, ...) or spec.
        gpu: GPU name or alias (``A100``, ``H100``) or spec.
        tp: tensor-parallel degree; must divide the attention heads.
        calibration: fitted coefficients; default: the shipped ones.
        overhead: engine CPU overhead; default none (GPU time only), or e.g.
            :func:`sarathi_engine_overhead`.
        table_tokens: batch sizes (tokens) tabulated for the fast path.
        gqa_decode: the decode-attention kernel reads each KV head once for its group of query
            heads (FlashInfer's batch decode, Sarathi-Serve's default backend). ``False``
            (default) charges the KV reads per query head, as the calibration data's kernel
            behaves: LLMServingSim's FlashAttention decode profile (Llama-3.1-70B, GQA 8,
            H100 TP4) fits that law at 8% held-out MAPE with 82% of HBM bandwidth, while one
            read per KV head would need 5x the peak bandwidth. The fitted efficiency carries
            over to the grouped kernel. Identical for models without GQA.
        compute_scale: whole-forward tensor-throughput scale of this GPU (see the module
            docstring); default: the shipped fit for the GPU (1.0 where none was fitted).
            ``1.0`` gives the operator profiles' own efficiencies.

    Raises:
        ConfigError: unknown model or GPU, bad tp, a non-positive compute_scale.
    """

    def __init__(
        self,
        model: str | ModelSpec,
        gpu: str | GpuSpec,
        tp: int = 1,
        calibration: Calibration | None = None,
        overhead: EngineOverhead | None = None,
        table_tokens: int = DEFAULT_TABLE_TOKENS,
        gqa_decode: bool = False,
        shared_prefix_kernel: SharedPrefixKernel | None = None,
        compute_scale: float | None = None,
    ) -> None:
        self.gqa_decode = gqa_decode
        self.shared_prefix_kernel = shared_prefix_kernel or shipped_shared_prefix_kernel()
        self.model = model if isinstance(model, ModelSpec) else get_model(model)
        self.gpu = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
        check_tp(self.model, tp)
        self.tp = tp
        calibration = calibration or shipped_calibration()
        if compute_scale is None:
            compute_scale = shipped_compute_scales().get(self.gpu.calibrated_as, 1.0)
        self.compute_scale = float(compute_scale)
        self.coefficients = with_compute_scale(
            calibration.for_device(self.gpu.calibrated_as), self.compute_scale
        )
        missing = [
            op
            for op in (*LINEAR_OPS, *ELEMENTWISE_OPS, "emb", "attn_prefill", "attn_decode")
            if op not in self.coefficients
        ]
        if missing:
            raise ConfigError(f"calibration: no coefficients for {', '.join(missing)}")
        self.overhead = overhead if overhead is not None else EngineOverhead()
        self._cpu_fixed_s = self.overhead.per_iteration_s
        self._cpu_sequence_s = self.overhead.per_sequence_s
        self._overlap = self.overhead.overlap_sharpness
        self._table_tokens = int(table_tokens)
        tokens = np.arange(self._table_tokens + 1, dtype=float)
        parts = self._token_parts(tokens)
        parts["lm_head"] = self._lm_head(tokens)
        self._tables = {name: values.tolist() for name, values in parts.items()}
        self._token_total = (
            parts["linear"] + parts["elementwise"] + parts["all_reduce"] + parts["embedding"]
        ).tolist()
        self._lm_total = self._tables["lm_head"]
        self._init_attention_constants()

    # ----------------------------------------------------------------- token-level parts
    def _token_parts(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Per-iteration time (s) of each token-level group for every token count in ``tokens``."""
        layers = self.model.layers
        parts: dict[str, np.ndarray] = {}
        for group, ops in (("linear", LINEAR_OPS), ("elementwise", ELEMENTWISE_OPS)):
            total = np.zeros_like(tokens)
            for op in ops:
                flops, moved = op_work(self.model, self.tp, op, tokens)
                total += token_op_time_s(self.gpu, self.coefficients[op], flops, moved, tokens)
            parts[group] = layers * np.where(tokens > 0, total, 0.0)
        flops, moved = op_work(self.model, self.tp, "emb", tokens)
        emb = token_op_time_s(self.gpu, self.coefficients["emb"], flops, moved, tokens)
        parts["embedding"] = np.where(tokens > 0, emb, 0.0)
        # Two all-reduces per layer (after attention and after the MLP) of the hidden states.
        sizes = tokens * self.model.hidden * BYTES_PER_PARAM_BF16
        parts["all_reduce"] = (
            2 * layers * collective_times_s("all_reduce", sizes, self.gpu, self.tp)
        )
        return parts

    def _lm_head(self, sequences: np.ndarray) -> np.ndarray:
        """LM head time (s): engines compute logits only for each sequence's last token."""
        flops, moved = op_work(self.model, self.tp, "lm_head", sequences)
        coeffs = self.coefficients[LM_HEAD_COEFFICIENTS_FROM]
        head = token_op_time_s(self.gpu, coeffs, flops, moved, sequences)
        return np.where(sequences > 0, head, 0.0)

    def _token_time_s(self, tokens: int) -> float:
        if tokens <= self._table_tokens:
            return self._token_total[tokens]
        parts = self._token_parts(np.array([float(tokens)]))
        return float(sum(values[0] for values in parts.values()))

    def _lm_time_s(self, sequences: int) -> float:
        if sequences <= self._table_tokens:
            return self._lm_total[sequences]
        return float(self._lm_head(np.array([float(sequences)]))[0])

    def decode_non_attention_time_s(self, num_decodes: int) -> float:
        """Seconds of a decode-only iteration of ``num_decodes`` sequences outside attention
        (every per-token operator plus the LM head)."""
        return self._token_time_s(num_decodes) + self._lm_time_s(num_decodes)

    def decode_constants(self) -> DecodeConstants:
        """The folded constants of decode attention and CPU overhead, for vectorised timers."""
        return DecodeConstants(
            layers=self._layers,
            per_sequence_spread_s=self._d_seq_s,
            per_key_spread_s=self._d_key_s,
            block_latency_s=self._d_cta_s,
            per_key_critical_s=self._d_crit_key_s,
            sharpness=self._d_sharp,
            floor_s=self._d_floor_s,
            cpu_fixed_s=self._cpu_fixed_s,
            cpu_sequence_s=self._cpu_sequence_s,
            overlap_sharpness=self._overlap,
        )

    # ----------------------------------------------------------------- attention
    def _init_attention_constants(self) -> None:
        """Folds model, GPU and coefficients into a few floats for the scalar attention terms."""
        model, gpu, tp = self.model, self.gpu, self.tp
        self._heads = model.heads / tp
        kv_heads = max(1.0, model.kv_heads / tp)
        head_dim = float(model.head_dim)
        prefill = self.coefficients["attn_prefill"]
        rate = gpu.peak_flops * prefill.compute_eff
        bandwidth = gpu.hbm_bytes_per_s * prefill.memory_eff
        self._p_flops_s = 4.0 * self._heads * head_dim / rate  # per chunk*context-token pair
        self._p_tile_s = 4.0 * ATTN_QUERY_TILE * head_dim * gpu.sm_count / rate  # per key
        self._p_kv_s = 2.0 * 2.0 * head_dim * kv_heads / bandwidth  # per key (K and V)
        self._p_q_s = 2.0 * 2.0 * head_dim * self._heads / bandwidth  # per query (Q and O)
        self._p_sharp = prefill.sharpness
        self._p_floor_s = prefill.floor_s
        self._sm = float(gpu.sm_count)
        decode = self.coefficients["attn_decode"]
        key_bytes = 2.0 * 2.0 * head_dim
        decode_bandwidth = gpu.hbm_bytes_per_s * decode.memory_eff
        # Thread blocks streaming KV: one per (sequence, query head), or per KV head when the
        # kernel groups the query heads that share one (``gqa_decode``).
        streams = kv_heads if self.gqa_decode else self._heads
        self._d_seq_s = streams * decode.cta_latency_s / gpu.sm_count  # spread, per sequence
        self._d_key_s = streams * key_bytes / decode_bandwidth  # spread, per key
        self._d_cta_s = decode.cta_latency_s
        self._d_crit_key_s = key_bytes * gpu.sm_count / decode_bandwidth  # one block, per key
        self._d_sharp = decode.sharpness
        self._d_floor_s = decode.floor_s
        self._layers = float(model.layers)
        self._s_kv_s = key_bytes * kv_heads / decode_bandwidth  # per prefix token, once

    @staticmethod
    def _soft_max(first: float, second: float, sharpness: float) -> float:
        top = first if first > second else second
        if top <= 0.0:
            return 0.0
        return top * ((first / top) ** sharpness + (second / top) ** sharpness) ** (1.0 / sharpness)

    def prefill_attention_s(self, chunk_tokens: int, context_tokens: int) -> float:
        """Prefill attention of one chunk over all layers, seconds (mirrors the roofline law)."""
        if chunk_tokens <= 0:
            return 0.0
        keys = context_tokens + chunk_tokens
        spread = self._p_flops_s * chunk_tokens * (context_tokens + (chunk_tokens + 1) * 0.5)
        tiles = self._heads * math.ceil(chunk_tokens / ATTN_QUERY_TILE)
        critical = self._p_tile_s * keys * math.ceil(tiles / self._sm)
        compute = spread if spread > critical else critical
        memory = self._p_kv_s * keys + self._p_q_s * chunk_tokens
        return self._layers * (self._soft_max(compute, memory, self._p_sharp) + self._p_floor_s)

    def decode_attention_s(self, num_decodes: int, sum_kv_tokens: float) -> float:
        """Decode attention of a batch over all layers, seconds (mirrors the roofline law)."""
        if num_decodes <= 0:
            return 0.0
        spread = self._d_seq_s * num_decodes + self._d_key_s * sum_kv_tokens
        critical = self._d_cta_s + self._d_crit_key_s * sum_kv_tokens / num_decodes
        return self._layers * (self._soft_max(spread, critical, self._d_sharp) + self._d_floor_s)

    # ----------------------------------------------------------------- shared prefixes
    def shared_prefix_group_layer_s(self, queries: int, prefix_tokens: int) -> float:
        """One layer of a cascade kernel's multi-query pass for one shared prefix, seconds.

        ``queries`` decoding requests share ``prefix_tokens`` of KV: the pass reads the prefix's
        KV once per KV head and computes every query against it on tensor cores (see
        :class:`SharedPrefixKernel`).
        """
        if queries <= 0 or prefix_tokens <= 0:
            return 0.0
        compute = self._p_flops_s * queries * prefix_tokens
        memory = self._s_kv_s * prefix_tokens
        return self._soft_max(compute, memory, self._p_sharp)

    def shared_prefix_attention_s(self, group_work_layer_s: float) -> float:
        """The shared-prefix pass over all layers, seconds, given the sum over groups of
        :meth:`shared_prefix_group_layer_s` (the kernel's fixed cost overlaps the work)."""
        if group_work_layer_s <= 0.0:
            return 0.0
        kernel = self.shared_prefix_kernel
        per_layer = self._soft_max(kernel.fixed_s, group_work_layer_s, kernel.overlap_sharpness)
        return self._layers * per_layer

    def decode_attention_shared_s(
        self,
        num_decodes: int,
        sum_kv_tokens: float,
        shared_kv_tokens: float,
        group_work_layer_s: float,
    ) -> float:
        """Decode attention of a batch whose requests share prefixes, seconds (all layers).

        ``shared_kv_tokens`` of the batch's ``sum_kv_tokens`` lie in prefixes that two or more
        of its requests share; ``group_work_layer_s`` is their groups' multi-query work. The
        engine runs the cascade kernel (suffixes by the decode kernel, shared prefixes read once
        per group) when that is predicted faster than the plain decode kernel, which re-reads
        each request's whole KV, as vLLM's ``use_cascade_attention`` heuristic decides.
        """
        plain = self.decode_attention_s(num_decodes, sum_kv_tokens)
        if shared_kv_tokens <= 0.0:
            return plain
        cascade = self.decode_attention_s(
            num_decodes, sum_kv_tokens - shared_kv_tokens
        ) + self.shared_prefix_attention_s(group_work_layer_s)
        return cascade if cascade < plain else plain

    # ----------------------------------------------------------------- public API
    def time_from_summary_s(
        self,
        num_decodes: int = 0,
        sum_decode_kv_tokens: float = 0.0,
        prefill_chunks: Iterable[tuple[int, int]] = (),
        shared_kv_tokens: float = 0.0,
        shared_group_work_layer_s: float = 0.0,
    ) -> float:
        """Iteration time (s) from a batch summary: the fast path for serving engines.

        No validation here (it is called millions of times); validate inputs once upstream or
        use :meth:`iteration_time_s`.

        Args:
            num_decodes: sequences generating one token this iteration.
            sum_decode_kv_tokens: sum of those sequences' KV lengths, tokens.
            prefill_chunks: ``(chunk_tokens, context_tokens)`` per prefill chunk, where
                ``context_tokens`` were cached before the chunk.
            shared_kv_tokens / shared_group_work_layer_s: the decodes' KV in shared prefixes
                and their groups' multi-query work (see :meth:`decode_attention_shared_s`);
                0 prices the plain decode kernel.
        """
        tokens = num_decodes
        sequences = num_decodes
        attention = 0.0
        for chunk, context in prefill_chunks:
            tokens += chunk
            sequences += 1
            attention += self.prefill_attention_s(chunk, context)
        if num_decodes:
            if shared_kv_tokens > 0.0:
                attention += self.decode_attention_shared_s(
                    num_decodes, sum_decode_kv_tokens, shared_kv_tokens, shared_group_work_layer_s
                )
            else:
                attention += self.decode_attention_s(num_decodes, sum_decode_kv_tokens)
        if tokens == 0:
            return 0.0
        gpu_s = self._token_time_s(tokens) + self._lm_time_s(sequences) + attention
        cpu_s = self._cpu_fixed_s + self._cpu_sequence_s * sequences
        if cpu_s <= 0.0:
            return gpu_s
        return self._soft_max(gpu_s, cpu_s, self._overlap)

    def iteration_time_s(
        self,
        prefill_chunks: Sequence[tuple[int, int]] = (),
        decode_kv_lens: Sequence[int] = (),
    ) -> float:
        """Validated iteration time, seconds.

        Args:
            prefill_chunks: ``(chunk_tokens, context_tokens)`` per prefill chunk.
            decode_kv_lens: KV length (tokens) of each decoding sequence.

        Raises:
            ConfigError: ``prefill_chunks``/``decode_kv_lens`` with negative or malformed values.
        """
        chunks = _validated_chunks(prefill_chunks)
        for kv in decode_kv_lens:
            _check_count(kv, "decode_kv_lens")
        return self.time_from_summary_s(len(decode_kv_lens), float(sum(decode_kv_lens)), chunks)

    def breakdown_s(
        self,
        prefill_chunks: Sequence[tuple[int, int]] = (),
        decode_kv_lens: Sequence[int] = (),
    ) -> dict[str, float]:
        """Iteration time split by operator group (keys: :data:`BREAKDOWN_GROUPS`), seconds.

        The values sum to :meth:`iteration_time_s` of the same batch; ``engine_overhead`` is the
        part of the CPU time that the GPU work does not hide.
        """
        chunks = _validated_chunks(prefill_chunks)
        for kv in decode_kv_lens:
            _check_count(kv, "decode_kv_lens")
        return self.breakdown_from_summary_s(
            len(decode_kv_lens), float(sum(decode_kv_lens)), chunks
        )

    def breakdown_from_summary_s(
        self,
        num_decodes: int = 0,
        sum_decode_kv_tokens: float = 0.0,
        prefill_chunks: Sequence[tuple[int, int]] = (),
    ) -> dict[str, float]:
        """:meth:`breakdown_s` from a batch summary (the decode batch enters only through its
        size and its total KV length), so a batch of a million identical decodes costs nothing
        to describe.

        Raises:
            ConfigError: a negative count or malformed chunk.
        """
        chunks = _validated_chunks(prefill_chunks)
        _check_count(num_decodes, "num_decodes")
        _check_count(sum_decode_kv_tokens, "sum_decode_kv_tokens")
        tokens = sum(chunk for chunk, _ in chunks) + num_decodes
        sequences = len(chunks) + num_decodes
        result = dict.fromkeys(BREAKDOWN_GROUPS, 0.0)
        if tokens == 0:
            return result
        parts = self._token_parts(np.array([float(tokens)]))
        for name in ("linear", "elementwise", "all_reduce", "embedding"):
            result[name] = float(parts[name][0])
        result["lm_head"] = self._lm_time_s(sequences)
        result["attn_prefill"] = sum(self.prefill_attention_s(c, k) for c, k in chunks)
        result["attn_decode"] = self.decode_attention_s(num_decodes, sum_decode_kv_tokens)
        gpu_s = sum(result.values())
        result["engine_overhead"] = max(
            0.0, self.time_from_summary_s(num_decodes, sum_decode_kv_tokens, chunks) - gpu_s
        )
        return result


def _validated_chunks(prefill_chunks: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    chunks = []
    for item in prefill_chunks:
        try:
            chunk, context = item
        except (TypeError, ValueError):
            raise ConfigError(
                f"prefill_chunks: each item must be (tokens, kv_tokens), got {item!r}"
            ) from None
        _check_count(chunk, "prefill_chunks")
        _check_count(context, "prefill_chunks")
        chunks.append((int(chunk), int(context)))
    return chunks


def engine_overhead(engine: str) -> EngineOverhead:
    """The CPU overhead preset of an engine name in :data:`ENGINES`.

    Raises:
        ConfigError: ``engine: ...`` for an unknown name.
    """
    if engine == "none":
        return EngineOverhead()
    if engine == "sarathi":
        return sarathi_engine_overhead()
    if engine == "tensorrt-llm":
        return tensorrt_llm_engine_overhead()
    raise ConfigError(f"engine: must be one of {', '.join(ENGINES)}, got {engine!r}")


@lru_cache(maxsize=128)
def get_cost_model(
    model: str, gpu: str, tp: int = 1, engine: str = "none", gqa_decode: bool = False
) -> InferenceCostModel:
    """A cached :class:`InferenceCostModel` with the shipped calibration."""
    return InferenceCostModel(
        model, gpu, tp, overhead=engine_overhead(engine), gqa_decode=gqa_decode
    )


def iteration_time_s(
    model: str,
    gpu: str,
    tp: int = 1,
    prefill_chunks: Sequence[tuple[int, int]] = (),
    decode_kv_lens: Sequence[int] = (),
    engine: str = "none",
) -> float:
    """Predicted time of one engine iteration, seconds.

    Args:
        model: model name, e.g. ``"Llama-2-7B"``.
        gpu: GPU name or alias, e.g. ``"A100"``.
        tp: tensor-parallel degree.
        prefill_chunks: ``(chunk_tokens, context_tokens)`` for each prefill chunk in the batch;
            ``context_tokens`` is the request's KV length before the chunk.
        decode_kv_lens: KV length (tokens) of each decoding request.
        engine: CPU-overhead preset: ``"none"`` (GPU time only), ``"sarathi"`` or
            ``"tensorrt-llm"``.

    Raises:
        ConfigError: unknown model/GPU/engine, bad tp, negative tokens.
    """
    cost_model = get_cost_model(model, gpu, tp, engine)
    return cost_model.iteration_time_s(prefill_chunks, decode_kv_lens)


def kv_cache_bytes_per_token(model: str | ModelSpec, tp: int = 1) -> float:
    """KV-cache bytes one token occupies on each tensor-parallel rank (bf16 keys and values).

    KV heads are split across ranks; when tp exceeds the KV heads they are replicated.
    """
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    check_tp(spec, tp)
    kv_heads_per_rank = math.ceil(spec.kv_heads / tp)
    return 2.0 * spec.layers * kv_heads_per_rank * spec.head_dim * BYTES_PER_PARAM_BF16


def activation_bytes(model: str | ModelSpec, tp: int = 1, max_batch_tokens: int = 2048) -> float:
    """Peak activation memory (bytes per rank) of one forward pass over ``max_batch_tokens``.

    Counts the widest live tensors of a layer (hidden states, fused QKV, gated MLP input) and
    fp32 logits for up to 256 sequences, which is what engines reserve by a profiling pass.
    """
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    per_token = BYTES_PER_PARAM_BF16 * (
        4 * spec.hidden + (spec.heads + 2 * spec.kv_heads) / tp * spec.head_dim + 3 * spec.ffn / tp
    )
    logits = 4.0 * min(max_batch_tokens, 256) * spec.vocab / tp
    return per_token * max_batch_tokens + logits


def kv_blocks_capacity(
    model: str,
    gpu: str,
    tp: int = 1,
    block_tokens: int = DEFAULT_BLOCK_TOKENS,
    memory_utilization: float = 0.9,
    max_batch_tokens: int = 2048,
    reserved_bytes: float = 1.0 * 2**30,
) -> int:
    """Number of KV blocks (per instance) that fit in GPU memory after weights and activations.

    Args:
        model: model name.
        gpu: GPU name or alias.
        tp: tensor-parallel degree (weights and KV heads are split over ranks).
        block_tokens: tokens per KV block (vLLM's default 16).
        memory_utilization: fraction of HBM the engine may use (vLLM's default 0.9).
        max_batch_tokens: largest batch, in tokens, whose activations must fit.
        reserved_bytes: CUDA context, NCCL buffers and allocator slack per rank, bytes.

    Raises:
        ConfigError: when the weights alone do not fit (``gpu: ...``), or bad arguments.
    """
    if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
        raise ConfigError(f"block_tokens: must be a positive integer, got {block_tokens!r}")
    if not 0.0 < memory_utilization <= 1.0:
        raise ConfigError(f"memory_utilization: must be in (0, 1], got {memory_utilization!r}")
    spec = get_model(model)
    device = get_gpu(gpu)
    check_tp(spec, tp)
    free = (
        device.hbm_bytes * memory_utilization
        - spec.weight_bytes / tp
        - activation_bytes(spec, tp, max_batch_tokens)
        - reserved_bytes
    )
    if free <= 0:
        raise ConfigError(
            f"gpu: {spec.name} at tp={tp} needs {spec.weight_bytes / tp / 1e9:.1f} GB of weights "
            f"per GPU; {device.name} has {device.hbm_bytes / 1e9:.0f} GB"
        )
    return int(free // (block_tokens * kv_cache_bytes_per_token(spec, tp)))


# A pure function of the static catalogues, asked at every LLMCluster migration (twice: the copy
# stages) with recurring block counts; interpolating the NCCL tables each time cost ~10% of an
# LLMCluster step. typed=True keeps e.g. ``True`` (rejected) from hitting the entry of ``1``.
@lru_cache(maxsize=16384, typed=True)
def kv_migration_time_s(
    model: str,
    gpu: str,
    num_blocks: int,
    tp: int = 1,
    same_node: bool = True,
    block_tokens: int = DEFAULT_BLOCK_TOKENS,
) -> float:
    """Time to copy ``num_blocks`` KV blocks of one request to another instance, seconds.

    Each tensor-parallel rank sends its shard to its peer at the same time, so the time is one
    send/recv of the per-rank bytes: over NVLink within a node, over the network across nodes
    (Vidur's measured NCCL send/recv tables).

    Raises:
        ConfigError: negative block count, unknown model/GPU, bad tp.
    """
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
        raise ConfigError(f"num_blocks: must be a non-negative integer, got {num_blocks!r}")
    if num_blocks == 0:
        return 0.0
    size = num_blocks * block_tokens * kv_cache_bytes_per_token(model, tp)
    return send_recv_time_s(size, gpu, same_node=same_node)
