"""What one LLM training step costs on a mesh of GPUs with context parallelism (ByteScale-style).

Public API (times in seconds, lengths in tokens):

- :func:`training_flops` / :func:`non_embedding_params`: the FLOPs of one sequence.
- :class:`TrainingCostModel`: compute time of a micro-batch shard at a token-dependent MFU, the
  exposed part of the ring-attention exchange, activation offload over PCIe, the data-parallel
  gradient all-reduce, and the ideal (perfectly balanced) step.
- :func:`shipped_training_calibration` / :class:`TrainingCalibration`: the fitted efficiency
  curves, read from the shipped ``data/training_efficiency.json``.

FLOPs (:func:`training_flops`): a sequence of ``s`` tokens costs ``6 N s + 6 l h s^2`` forward plus
backward, with ``N`` the non-embedding parameters, ``l`` layers and ``h`` the hidden size. Counted:
every weight GEMM (2 FLOPs per parameter per token forward, twice that backward) and causal
attention scores and values (``QK^T`` and ``AV`` are ``4 s^2 h`` per layer forward without the mask,
half of it with the causal mask, and backward is twice forward). Not counted: the embedding lookup
and LM head, norms, activations, softmax, rotary embeddings, the optimizer, and the re-forward of
activation checkpointing; their time is part of the calibrated efficiency, not of the FLOPs, so
MFU here is *model* FLOPs utilisation as in the Llama 3 and ByteScale papers.

Calibration (fitted by :mod:`schedgym.costmodels.calibration.training_fit` from the shipped data
into ``data/training_efficiency.json``, which is all this module reads; nothing here is a free
guess):

1. GEMM efficiency against tokens per rank: Vidur's measured forward time of every token-level
   operator of one layer (4 GEMMs and 5 elementwise ops; Llama-2-7B and -70B, tp=1) gives an
   achieved fraction of peak at 1..4096 tokens. A Hill curve ``eta(T) = eta_inf T^n / (T^n +
   T_half^n)`` is fitted per GPU (relative least squares, grid search), so small shards run less
   efficiently. GPUs without profiles use the fit of the profiled GPU of the same silicon, else the
   A100's.
2. Training overhead ``kappa``: the backward pass, recomputation, the optimizer and framework time
   are not in a forward profile. ``kappa`` scales the curve so that a Llama-3-405B-shaped model at
   8K tokens per H100 reaches the MFU of 0.43 reported by Llama 3 (hardware.json
   ``achieved_mfu_examples``).
3. Attention efficiency: FlashAttention reaches a lower fraction of peak than GEMMs. Its asymptote
   is ``rho`` times the GEMM one, with ``rho`` solved so that the same model at 131K context with
   context parallelism 16 (8K tokens per rank) reaches Llama 3's 0.38. Communication is not
   separated out of that figure, so ``rho`` is a lower bound on FlashAttention's real efficiency.
   How attention efficiency falls for small calls comes from LLMServingSim's measured
   FlashAttention prefill on H100: ``eta_attn(W) = eta_attn_inf W / (W + W_half)`` in the forward
   FLOPs ``W`` of one call, ``W_half`` fitted to those points.
4. Links: ring-attention send/recv and the gradient all-reduce come from Vidur's measured NCCL
   tables through :mod:`schedgym.costmodels.network` (NVLink within a node, the network across
   nodes). Here those curves are sampled once on a log grid (:class:`LinkTable`) so the simulator
   can look a time up in a microsecond; the grid's error against the network module is reported by
   :meth:`LinkTable.max_grid_error`.

The GEMM datasheet efficiencies of hardware.json (``gemm_large`` 0.95, ``gemm_1MB`` 0.6) are a
roofline upper bound; the measured Vidur curves land below them (about 0.65-0.75 of peak at 4096
tokens) and are what the model uses.
:func:`schedgym.costmodels.calibration.training_fit.calibration_report` prints the fit errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from schedgym.core.errors import ConfigError
from schedgym.costmodels.hardware import BYTES_PER_PARAM_BF16, GpuSpec, ModelSpec, get_gpu
from schedgym.costmodels.network import collective_times_s

BYTES_BF16 = 2.0
# The GPU whose fitted curve stands in for GPUs without operator profiles.
_FALLBACK_GPU = "A100-SXM-80GB"


def non_embedding_params(model: ModelSpec) -> float:
    """Weights of the transformer blocks (attention and gated MLP), excluding embeddings/LM head."""
    kv_dim = model.kv_heads * model.head_dim
    per_layer = 2.0 * model.hidden * model.hidden + 2.0 * model.hidden * kv_dim
    per_layer += 3.0 * model.hidden * model.ffn
    return model.layers * per_layer


def training_flops(
    model: ModelSpec, seq_tokens: float | NDArray[np.float64]
) -> NDArray[np.float64]:
    """Forward plus backward model FLOPs of sequences of ``seq_tokens`` tokens: ``6Ns + 6lhs^2``."""
    s = np.asarray(seq_tokens, dtype=np.float64)
    return 6.0 * non_embedding_params(model) * s + 6.0 * model.layers * model.hidden * s * s


# ------------------------------------------------------------------------------------ calibration
TRAINING_TABLE_FILE = "training_efficiency.json"


@dataclass(frozen=True)
class GemmCurve:
    """Fitted forward efficiency of the token-level operators against tokens per rank."""

    gpu: str
    eta_inf: float  # asymptotic fraction of peak
    half_tokens: float  # tokens at which half of the asymptote is reached
    power: float  # Hill exponent
    mape_pct: float  # fit error on the measured points
    points: int

    def efficiency(self, tokens: float) -> float:
        """Forward efficiency (fraction of peak) at ``tokens`` rows per GEMM."""
        if tokens <= 0.0:
            return self.eta_inf * 1e-9
        scaled = (tokens / self.half_tokens) ** self.power
        return self.eta_inf * scaled / (1.0 + scaled)


@dataclass(frozen=True)
class TrainingCalibration:
    """The fitted efficiency curves, with the fit errors (see the module docstring; fitted by
    :func:`schedgym.costmodels.calibration.training_fit.fit_training_calibration`)."""

    gemm: dict[str, GemmCurve]  # by calibrated GPU name
    kappa: float  # training-step efficiency relative to the forward operator profile
    rho: float  # FlashAttention asymptote relative to the GEMM asymptote
    attn_half_flops: float  # forward FLOPs of one attention call at half the asymptote
    attn_mape_pct: float  # fit error of the attention shape on LLMServingSim's points
    attn_points: int
    llama3_mfu_8k_pred: float  # the model's MFU at Llama 3's operating points (fitted to them)
    llama3_mfu_131k_pred: float

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON floats are Python's shortest round-trip repr, so exact)."""
        out = dataclasses.asdict(self)
        out["gemm"] = {name: dataclasses.asdict(curve) for name, curve in self.gemm.items()}
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainingCalibration:
        """Inverse of :meth:`to_dict`."""
        values = {f.name: raw[f.name] for f in dataclasses.fields(cls)}
        values["gemm"] = {name: GemmCurve(**curve) for name, curve in raw["gemm"].items()}
        return cls(**values)


@lru_cache(maxsize=1)
def shipped_training_calibration() -> TrainingCalibration:
    """The fitted curves shipped with the package (``data/training_efficiency.json``)."""
    path = f"data/{TRAINING_TABLE_FILE}"
    text = resources.files("schedgym.costmodels").joinpath(path).read_text()
    return TrainingCalibration.from_dict(json.loads(text)["calibration"])


# ------------------------------------------------------------------------------------ links
class LinkTable:
    """Measured NCCL send/recv time against message size, sampled on a log grid for fast lookup.

    Args:
        gpu: the GPU spec.
        same_node: NVLink (True) or the inter-node network (False).
    """

    GRID_POINTS = 257
    MIN_BYTES = 1e3
    MAX_BYTES = 1e11

    def __init__(self, gpu: GpuSpec, same_node: bool) -> None:
        self.gpu = gpu
        self.same_node = same_node
        sizes = np.geomspace(self.MIN_BYTES, self.MAX_BYTES, self.GRID_POINTS)
        times = collective_times_s("send_recv", sizes, gpu, 2, same_node)
        self._log_sizes = np.log(sizes).tolist()
        self._log_times = np.log(times).tolist()
        self._step = (self._log_sizes[-1] - self._log_sizes[0]) / (self.GRID_POINTS - 1)
        self._largest_rate = float(times[-1] / sizes[-1])

    def time_s(self, size_bytes: float) -> float:
        """Time to send ``size_bytes`` to a neighbour (log-log interpolation), seconds."""
        if size_bytes <= 0.0:
            return 0.0
        if size_bytes >= self.MAX_BYTES:
            return self._largest_rate * size_bytes
        x = math.log(max(size_bytes, self.MIN_BYTES))
        i = min(int((x - self._log_sizes[0]) / self._step), self.GRID_POINTS - 2)
        frac = (x - self._log_sizes[i]) / self._step
        return math.exp(self._log_times[i] + frac * (self._log_times[i + 1] - self._log_times[i]))

    def times_s(self, sizes_bytes: NDArray[np.float64]) -> NDArray[np.float64]:
        """Vectorised :meth:`time_s`."""
        sizes = np.asarray(sizes_bytes, dtype=np.float64)
        log_sizes = np.log(np.clip(sizes, self.MIN_BYTES, self.MAX_BYTES))
        inside = np.exp(np.interp(log_sizes, self._log_sizes, self._log_times))
        out = np.where(sizes >= self.MAX_BYTES, self._largest_rate * sizes, inside)
        return np.where(sizes > 0.0, out, 0.0)

    def max_grid_error(self) -> float:
        """Largest relative error of the grid against the network module between grid points."""
        mids = np.exp(np.array(self._log_sizes[:-1]) + 0.5 * self._step)
        exact = collective_times_s("send_recv", mids, self.gpu, 2, self.same_node)
        approx = np.array([self.time_s(float(m)) for m in mids])
        return float(np.max(np.abs(approx / exact - 1.0)))


# ------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class MicrobatchCost:
    """Time of one micro-batch on each rank of its group, seconds."""

    compute_s: float  # linear + attention compute at the calibrated efficiency
    exposed_comm_s: float  # ring-attention exchange not hidden behind attention compute
    exposed_offload_s: float  # activation offload over PCIe not hidden behind compute

    @property
    def total_s(self) -> float:
        """Wall time of the micro-batch."""
        return self.compute_s + self.exposed_comm_s + self.exposed_offload_s


class TrainingCostModel:
    """Training-step costs of one model on one GPU type.

    A *micro-batch* on a group of ``c`` ranks (context-parallel degree ``c``) holds one or more
    sequences, each split evenly over the group (load-balanced zigzag ring attention, so every
    rank does ``1/c`` of each sequence's causal attention). It is described by the tokens each
    rank holds, ``T = sum_i s_i / c``, and the sum of squared shard lengths ``Q = sum_i (s_i/c)^2``.

    - Compute per rank: ``6 N T`` linear FLOPs at ``kappa * eta(T)`` of peak and ``6 l h c Q``
      attention FLOPs at the attention efficiency of a ring step's call (``2 h Q`` forward FLOPs).
    - Ring attention: per layer, ``c - 1`` steps; each forward step sends the K and V of the shard
      (``4 T d_kv`` bytes, bf16) to the next rank, each backward step K, V and their gradients
      (twice that). A step's exchange runs while that step's attention computes; the exposed part
      is ``max(0, send - attention)``. A group inside one node uses NVLink, a group spanning nodes
      is paced by its network hops.
    - Offload (optional): tokens beyond the per-rank capacity ``C`` keep their layer-boundary
      activations (``2 h l`` bytes per token) in host memory, written during forward and read
      during backward over PCIe; the part not hidden behind the micro-batch's compute is exposed.
    - Gradient all-reduce: one ring all-reduce of the bf16 gradients (``2 * params`` bytes) over
      all ranks per step, from the measured NCCL all-reduce tables.

    Args:
        model: the architecture.
        gpu: the GPU type.
        gpus_per_node: GPUs sharing NVLink.
    """

    def __init__(self, model: ModelSpec, gpu: GpuSpec, gpus_per_node: int = 8) -> None:
        if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int):
            raise ConfigError(f"gpus_per_node: must be an integer, got {gpus_per_node!r}")
        if gpus_per_node < 1:
            raise ConfigError(f"gpus_per_node: must be in [1, inf], got {gpus_per_node}")
        calibration = shipped_training_calibration()
        self.model = model
        self.gpu = gpu
        self.gpus_per_node = gpus_per_node
        self.calibration = calibration
        curve = calibration.gemm.get(gpu.calibrated_as) or calibration.gemm[_FALLBACK_GPU]
        self.gemm_curve = curve
        self.params_nonembedding = non_embedding_params(model)
        self.kv_dim = float(model.kv_heads * model.head_dim)
        self._peak_kappa = gpu.peak_flops * calibration.kappa
        self._linear_flops_per_token = 6.0 * self.params_nonembedding
        self._attn_coeff = 6.0 * model.layers * model.hidden
        self._attn_inf = calibration.rho * curve.eta_inf
        self._attn_half = calibration.attn_half_flops
        self._act_bytes_per_token = BYTES_BF16 * model.hidden * model.layers
        self.links = {True: LinkTable(gpu, True), False: LinkTable(gpu, False)}

    # -- efficiencies ---------------------------------------------------------------------------
    @property
    def peak_mfu(self) -> float:
        """Sustained MFU of the linear part with large shards (the curve's asymptote)."""
        return self.calibration.kappa * self.gemm_curve.eta_inf

    def linear_mfu(self, tokens_per_rank: float) -> float:
        """MFU of the weight GEMMs with ``tokens_per_rank`` rows (small shards run slower)."""
        return self.calibration.kappa * self.gemm_curve.efficiency(tokens_per_rank)

    def attention_mfu(self, call_flops: float) -> float:
        """MFU of attention whose forward call does ``call_flops`` FLOPs."""
        eff = self._attn_inf * call_flops / (call_flops + self._attn_half)
        return self.calibration.kappa * max(eff, 1e-12)

    # -- micro-batches ---------------------------------------------------------------------------
    def spans_nodes(self, first_rank: int, degree: int) -> bool:
        """Whether ranks ``[first_rank, first_rank + degree)`` sit in more than one node."""
        return first_rank // self.gpus_per_node != (first_rank + degree - 1) // self.gpus_per_node

    def microbatch(
        self,
        tokens_per_rank: float,
        shard_sq_sum: float,
        degree: int,
        spans_nodes: bool,
        capacity_tokens: float = math.inf,
    ) -> MicrobatchCost:
        """Cost of a micro-batch on each rank of a ``degree``-rank group.

        Args:
            tokens_per_rank: ``T``, tokens of the micro-batch each rank holds.
            shard_sq_sum: ``Q = sum_i (s_i / degree)^2`` over the micro-batch's sequences.
            degree: context-parallel degree ``c``.
            spans_nodes: whether the group crosses a node boundary (network instead of NVLink).
            capacity_tokens: per-rank capacity ``C``; tokens beyond it are offloaded.
        """
        if tokens_per_rank <= 0.0:
            return MicrobatchCost(0.0, 0.0, 0.0)
        linear_s = (
            self._linear_flops_per_token
            * tokens_per_rank
            / (self._peak_kappa * self.gemm_curve.efficiency(tokens_per_rank))
        )
        call_flops = 2.0 * self.model.hidden * shard_sq_sum
        attn_eff = self._attn_inf * call_flops / (call_flops + self._attn_half)
        attn_total_s = self._attn_coeff * degree * shard_sq_sum / (self._peak_kappa * attn_eff)
        compute_s = linear_s + attn_total_s
        exposed_s = 0.0
        if degree > 1:
            link = self.links[not spans_nodes]
            per_step_attn_s = attn_total_s / (self.model.layers * degree)  # fwd + bwd of a step
            fwd_attn_s = per_step_attn_s / 3.0  # backward is twice forward
            kv_bytes = 2.0 * BYTES_BF16 * tokens_per_rank * self.kv_dim
            fwd = max(0.0, link.time_s(kv_bytes) - fwd_attn_s)
            bwd = max(0.0, link.time_s(2.0 * kv_bytes) - 2.0 * fwd_attn_s)
            exposed_s = self.model.layers * (degree - 1) * (fwd + bwd)
        offload_s = 0.0
        if tokens_per_rank > capacity_tokens:
            moved = (tokens_per_rank - capacity_tokens) * self._act_bytes_per_token
            transfer_s = 2.0 * moved / self.gpu.pcie_bytes_per_s
            offload_s = max(0.0, transfer_s - compute_s)
        return MicrobatchCost(compute_s, exposed_s, offload_s)

    def microbatch_totals_s(
        self,
        tokens_per_rank: NDArray[np.float64],
        shard_sq_sum: NDArray[np.float64],
        degree: int,
        spans_nodes: bool,
        capacity_tokens: float = math.inf,
    ) -> NDArray[np.float64]:
        """Vectorised ``microbatch(...).total_s`` over arrays of micro-batches of one degree."""
        tokens = np.maximum(np.asarray(tokens_per_rank, dtype=np.float64), 1e-12)
        shard_sq = np.asarray(shard_sq_sum, dtype=np.float64)
        curve = self.gemm_curve
        scaled = (tokens / curve.half_tokens) ** curve.power
        eff = curve.eta_inf * scaled / (1.0 + scaled)
        linear_s = self._linear_flops_per_token * tokens / (self._peak_kappa * eff)
        call_flops = 2.0 * self.model.hidden * shard_sq
        attn_eff = self._attn_inf * call_flops / (call_flops + self._attn_half)
        attn_total_s = self._attn_coeff * degree * shard_sq / (self._peak_kappa * attn_eff)
        compute_s = linear_s + attn_total_s
        total = compute_s.copy()
        if degree > 1:
            link = self.links[not spans_nodes]
            fwd_attn_s = attn_total_s / (self.model.layers * degree) / 3.0
            kv_bytes = 2.0 * BYTES_BF16 * tokens * self.kv_dim
            fwd = np.maximum(0.0, link.times_s(kv_bytes) - fwd_attn_s)
            bwd = np.maximum(0.0, link.times_s(2.0 * kv_bytes) - 2.0 * fwd_attn_s)
            total += self.model.layers * (degree - 1) * (fwd + bwd)
        over = tokens - capacity_tokens
        if np.any(over > 0.0):
            transfer_s = 2.0 * np.maximum(over, 0.0) * self._act_bytes_per_token
            total += np.maximum(0.0, transfer_s / self.gpu.pcie_bytes_per_s - compute_s)
        return np.asarray(total)

    def sequence(
        self, seq_tokens: float, degree: int, spans_nodes: bool, capacity_tokens: float = math.inf
    ) -> MicrobatchCost:
        """Cost of one sequence alone in a micro-batch over ``degree`` ranks."""
        shard = seq_tokens / degree
        return self.microbatch(shard, shard * shard, degree, spans_nodes, capacity_tokens)

    # -- step-level terms ------------------------------------------------------------------------
    def allreduce_s(self, num_ranks: int) -> float:
        """Ring all-reduce of the bf16 gradients over ``num_ranks`` GPUs, seconds."""
        if num_ranks <= 1:
            return 0.0
        size = self.model.params_b * 1e9 * BYTES_PER_PARAM_BF16
        same_node = num_ranks <= self.gpus_per_node
        return float(
            collective_times_s("all_reduce", np.array([size]), self.gpu, num_ranks, same_node)[0]
        )

    def ideal_compute_s(self, seq_tokens: NDArray[np.float64], num_ranks: int) -> float:
        """Compute time of a batch spread perfectly evenly over ``num_ranks`` ranks at the
        asymptotic efficiencies, with nothing exposed: a lower bound of any placement's compute."""
        s = np.asarray(seq_tokens, dtype=np.float64)
        linear = (
            self._linear_flops_per_token
            * float(s.sum())
            / (self._peak_kappa * self.gemm_curve.eta_inf)
        )
        attn = self._attn_coeff * float((s * s).sum()) / (self._peak_kappa * self._attn_inf)
        return (linear + attn) / num_ranks

    def model_flops(self, seq_tokens: NDArray[np.float64]) -> float:
        """Total ``6Ns + 6lhs^2`` of a batch."""
        return float(training_flops(self.model, seq_tokens).sum())

    def model_flops_per_sequence(self, seq_tokens: NDArray[np.float64]) -> NDArray[np.float64]:
        """``6Ns + 6lhs^2`` of each sequence."""
        return training_flops(self.model, seq_tokens)


@lru_cache(maxsize=32)
def get_training_cost_model(model: str, gpu: str, gpus_per_node: int = 8) -> TrainingCostModel:
    """A cached :class:`TrainingCostModel` by catalogue names (aliases allowed)."""
    from schedgym.costmodels.hardware import get_model

    return TrainingCostModel(get_model(model), get_gpu(gpu), gpus_per_node)
