"""NCCL collective times from latency-bandwidth laws fitted to Vidur's tables (A100, H100 DGX).

Reusable by any cost model that moves tensors between GPUs: tensor-parallel all-reduce in
inference, KV-block migration (send/recv), and, later, ring-attention exchanges and gradient
all-reduce in training.

All-reduce: each measured curve (GPU, worker count, GPUs per node) is described by up to three
message-size regimes, each a smooth ``alpha + size / beta`` law (fitted in
:mod:`schedgym.costmodels.calibration.nccl_fit`, shipped as ``data/nccl_alpha_beta.json``),
rather than by interpolating the medians, which are bimodal at small sizes on the intra-node
curves. The time never falls when the size grows, and past the largest measured size the last
regime's bandwidth holds. A GPU or a node layout without tables uses the reference GPU's laws
with each bandwidth scaled by the datasheet ratio of the link in use (NVLink within a node, the
network across nodes, PCIe where a GPU has no NVLink).

Send/recv: its medians are unimodal and log-log interpolation of their running median is within
5% held out (the laws do no better), so it stays interpolated; a GPU without tables uses the
reference GPU's single latency-bandwidth law, scaled the same way.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from schedgym.core.errors import ConfigError
from schedgym.costmodels.hardware import GpuSpec, get_gpu

GPUS_PER_NODE = 8
LAWS_FILE = "nccl_alpha_beta.json"
_REFERENCE_GPU = "A100-SXM-80GB"


@dataclass(frozen=True)
class CollectiveCurve:
    """One measured curve: time against message size."""

    collective: str  # "all_reduce" or "send_recv"
    gpu: str
    num_workers: int
    devices_per_node: int
    log_size: NDArray[np.float64]  # ln(bytes), ascending, shape [n]
    log_time: NDArray[np.float64]  # ln(seconds), shape [n]

    @property
    def same_node(self) -> bool:
        """Whether every worker sits in one node (NVLink only)."""
        return self.devices_per_node >= self.num_workers

    def interpolated_times_s(self, sizes_bytes: NDArray[np.float64]) -> Any:
        """Log-log interpolation of the curve, seconds; past the largest measured size the call
        is bandwidth-bound and grows at that size's rate."""
        sizes = np.asarray(sizes_bytes, dtype=float)
        log_size = np.log(np.maximum(sizes, 1.0))
        inside = np.exp(np.interp(log_size, self.log_size, self.log_time))
        beyond = math.exp(self.log_time[-1]) * sizes / math.exp(self.log_size[-1])
        return np.where(log_size <= self.log_size[-1], inside, beyond)

    def alpha_beta(self) -> tuple[float, float]:
        """Least-relative-error fit of ``time = alpha + size / beta`` (seconds, bytes/s)."""
        sizes = np.exp(self.log_size)
        times = np.exp(self.log_time)
        design = np.stack([1.0 / times, sizes / times], axis=1)  # relative residuals
        alpha, inverse_beta = np.linalg.lstsq(design, np.ones_like(times), rcond=None)[0]
        return max(float(alpha), 1e-7), 1.0 / max(float(inverse_beta), 1e-15)


@dataclass(frozen=True)
class AlphaBetaRegime:
    """One message-size regime: ``time = alpha_s + size_bytes * seconds_per_byte`` from
    ``lower_bytes`` up to the next regime's ``lower_bytes``."""

    lower_bytes: float
    alpha_s: float
    seconds_per_byte: float


@dataclass(frozen=True)
class CollectiveLaw:
    """The fitted regimes of one collective on one (GPU, workers, GPUs per node)."""

    collective: str
    gpu: str
    num_workers: int
    devices_per_node: int
    regimes: tuple[AlphaBetaRegime, ...]

    @property
    def same_node(self) -> bool:
        """Whether every worker sits in one node (NVLink only)."""
        return self.devices_per_node >= self.num_workers

    def times_s(self, sizes_bytes: NDArray[np.float64], bandwidth_scale: float = 1.0) -> Any:
        """Time of one call per message size (bytes per rank), seconds; never decreasing.

        Args:
            sizes_bytes: message sizes.
            bandwidth_scale: multiplies every regime's bandwidth (another GPU's link).
        """
        sizes = np.asarray(sizes_bytes, dtype=float)
        times = np.zeros_like(sizes)
        floor_s = 0.0
        for index, regime in enumerate(self.regimes):
            law = regime.alpha_s + sizes * regime.seconds_per_byte / bandwidth_scale
            inside = sizes >= regime.lower_bytes
            # A protocol switch may be slower at the boundary than the previous regime's law
            # was just below it; a bigger message never costs less than a smaller one.
            times = np.where(inside, np.maximum(law, floor_s), times)
            if index + 1 < len(self.regimes):
                upper = self.regimes[index + 1].lower_bytes
                end_s = regime.alpha_s + upper * regime.seconds_per_byte / bandwidth_scale
                floor_s = max(floor_s, end_s)
        return times

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {
            "collective": self.collective,
            "gpu": self.gpu,
            "num_workers": self.num_workers,
            "devices_per_node": self.devices_per_node,
            "regimes": [
                {
                    "lower_bytes": r.lower_bytes,
                    "alpha_s": r.alpha_s,
                    "seconds_per_byte": r.seconds_per_byte,
                }
                for r in self.regimes
            ],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CollectiveLaw:
        """Inverse of :meth:`to_dict`."""
        regimes = tuple(
            AlphaBetaRegime(
                float(r["lower_bytes"]), float(r["alpha_s"]), float(r["seconds_per_byte"])
            )
            for r in raw["regimes"]
        )
        return cls(
            raw["collective"],
            raw["gpu"],
            int(raw["num_workers"]),
            int(raw["devices_per_node"]),
            regimes,
        )


def smooth_log_times(log_time: NDArray[np.float64], window: int = 3) -> NDArray[np.float64]:
    """Running median over neighbouring sizes.

    NCCL medians of three runs are bimodal at small sizes (7 us or 40 us for the same message on
    H100); a median of neighbours keeps one stray run from setting the interpolated time.
    """
    half = window // 2
    padded = np.pad(log_time, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    return np.median(windows, axis=1)


@lru_cache(maxsize=1)
def measured_curves() -> tuple[CollectiveCurve, ...]:
    """Every shipped NCCL curve (Vidur medians, ``data/nccl.csv``), sizes ascending."""
    text = resources.files("schedgym.costmodels").joinpath("data/nccl.csv").read_text()
    points: dict[tuple[str, str, int, int], list[tuple[float, float]]] = {}
    for row in csv.DictReader(text.splitlines()):
        key = (row["collective"], row["gpu"], int(row["num_workers"]), int(row["devices_per_node"]))
        points.setdefault(key, []).append((float(row["size_bytes"]), float(row["time_ms"]) * 1e-3))
    curves = []
    for (collective, gpu, workers, per_node), values in sorted(points.items()):
        values.sort()
        sizes = np.log([v[0] for v in values])
        times = np.log([v[1] for v in values])
        curves.append(CollectiveCurve(collective, gpu, workers, per_node, sizes, times))
    return tuple(curves)


@lru_cache(maxsize=1)
def _smoothed_send_recv_curves() -> tuple[CollectiveCurve, ...]:
    return tuple(
        CollectiveCurve(
            c.collective,
            c.gpu,
            c.num_workers,
            c.devices_per_node,
            c.log_size,
            smooth_log_times(c.log_time),
        )
        for c in measured_curves()
        if c.collective == "send_recv"
    )


@lru_cache(maxsize=2)
def _reference_send_recv_alpha_beta(same_node: bool) -> tuple[float, float]:
    """The reference GPU's send/recv latency-bandwidth law (a least-squares fit of a shipped
    curve: fitted once, not at every call for a GPU without tables)."""
    reference = next(
        c
        for c in _smoothed_send_recv_curves()
        if c.gpu == _REFERENCE_GPU and c.same_node == same_node
    )
    return reference.alpha_beta()


def _send_recv_times_s(sizes: NDArray[np.float64], spec: GpuSpec, same_node: bool) -> Any:
    """Send/recv: interpolation of the running-median curve (unimodal; within 5% held out),
    or, for a GPU without tables, the reference GPU's single latency-bandwidth law with the
    bandwidth scaled by the link ratio."""
    options = [
        c
        for c in _smoothed_send_recv_curves()
        if c.gpu == spec.calibrated_as and c.same_node == same_node
    ]
    if options:
        return options[0].interpolated_times_s(sizes)
    alpha_s, beta = _reference_send_recv_alpha_beta(same_node)
    beta *= _link_bytes_per_s(spec, same_node) / _link_bytes_per_s(
        get_gpu(_REFERENCE_GPU), same_node
    )
    return alpha_s + sizes / beta


@lru_cache(maxsize=1)
def shipped_laws() -> tuple[CollectiveLaw, ...]:
    """The fitted laws shipped with the package (``data/nccl_alpha_beta.json``)."""
    text = resources.files("schedgym.costmodels").joinpath(f"data/{LAWS_FILE}").read_text()
    return tuple(CollectiveLaw.from_dict(raw) for raw in json.loads(text)["curves"])


def _pick(collective: str, gpu_name: str, workers: int, same_node: bool) -> CollectiveLaw | None:
    """The fitted law closest to the request on this GPU (same node-ness first)."""
    options = [c for c in shipped_laws() if c.collective == collective and c.gpu == gpu_name]
    if not options:
        return None
    scored = sorted(
        options,
        key=lambda c: (c.same_node != same_node, abs(math.log(c.num_workers / workers))),
    )
    return scored[0]


def _link_bytes_per_s(gpu: GpuSpec, same_node: bool) -> float:
    if not same_node:
        return gpu.internode_bytes_per_s
    return gpu.nvlink_bytes_per_s or gpu.pcie_bytes_per_s


def collective_times_s(
    collective: str,
    sizes_bytes: NDArray[np.float64],
    gpu: str | GpuSpec,
    num_workers: int = 2,
    same_node: bool | None = None,
) -> NDArray[np.float64]:
    """Vectorised :func:`collective_time_s` over an array of message sizes (bytes), seconds."""
    if collective not in ("all_reduce", "send_recv"):
        raise ConfigError(f"collective: must be all_reduce or send_recv, got {collective!r}")
    sizes = np.asarray(sizes_bytes, dtype=float)
    if not np.all(sizes >= 0):
        raise ConfigError("size_bytes: must be >= 0")
    if isinstance(num_workers, bool) or num_workers < 1:
        raise ConfigError(f"num_workers: must be >= 1, got {num_workers!r}")
    if num_workers == 1:
        return np.zeros_like(sizes)
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    if same_node is None:
        same_node = num_workers <= GPUS_PER_NODE
    if collective == "send_recv":
        return np.where(sizes > 0, _send_recv_times_s(sizes, spec, same_node), 0.0)
    law = _pick(collective, spec.calibrated_as, num_workers, same_node)
    scale = 1.0
    if law is None or law.same_node != same_node:
        law = _pick(collective, _REFERENCE_GPU, num_workers, same_node)
        assert law is not None, "the shipped laws always hold the reference GPU's all-reduce"
        reference_link = _link_bytes_per_s(get_gpu(_REFERENCE_GPU), same_node)
        scale = _link_bytes_per_s(spec, same_node) / reference_link
    times = law.times_s(sizes, scale)
    if collective == "all_reduce" and law.num_workers != num_workers:
        # A ring all-reduce moves 2(n-1)/n of the message per rank.
        times = times * (num_workers - 1) / num_workers * law.num_workers / (law.num_workers - 1)
    return np.where(sizes > 0, times, 0.0)


def collective_time_s(
    collective: str,
    size_bytes: float,
    gpu: str | GpuSpec,
    num_workers: int = 2,
    same_node: bool | None = None,
) -> float:
    """Time of one NCCL collective, seconds.

    Args:
        collective: ``"all_reduce"`` or ``"send_recv"``.
        size_bytes: message size per rank, bytes.
        gpu: GPU name (aliases allowed) or spec.
        num_workers: ranks taking part (2 for send/recv).
        same_node: whether all ranks share a node; default: ``num_workers <= 8``.

    Raises:
        ConfigError: ``size_bytes``/``num_workers``/``collective`` out of range.
    """
    if not size_bytes >= 0:
        raise ConfigError(f"size_bytes: must be >= 0, got {size_bytes!r}")
    sizes = np.array([float(size_bytes)])
    return float(collective_times_s(collective, sizes, gpu, num_workers, same_node)[0])


def all_reduce_time_s(
    size_bytes: float, gpu: str | GpuSpec, num_workers: int, same_node: bool | None = None
) -> float:
    """Time of an all-reduce of ``size_bytes`` per rank over ``num_workers`` GPUs, seconds."""
    return collective_time_s("all_reduce", size_bytes, gpu, num_workers, same_node)


def send_recv_time_s(size_bytes: float, gpu: str | GpuSpec, same_node: bool = True) -> float:
    """Time to send ``size_bytes`` from one GPU to another, seconds."""
    return collective_time_s("send_recv", size_bytes, gpu, 2, same_node)
