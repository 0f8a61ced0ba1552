"""NCCL collective times from Vidur's measured tables (A100 and H100 DGX), with fallbacks.

Reusable by any cost model that moves tensors between GPUs: tensor-parallel all-reduce in
inference, KV-block migration (send/recv), and, later, ring-attention exchanges and gradient
all-reduce in training.

Lookup: log-log interpolation in the measured (size, time) curve of the matching collective, GPU,
worker count and GPUs per node; past the largest measured size time grows linearly at the last
measured bandwidth. A GPU without tables uses a latency-bandwidth (alpha-beta) law fitted to the
closest profiled GPU, with the bandwidth scaled by the datasheet ratio of the link in use (NVLink
within a node, the network across nodes, PCIe where a GPU has no NVLink).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from schedgym.core.errors import ConfigError
from schedgym.costmodels.hardware import GpuSpec, get_gpu

GPUS_PER_NODE = 8
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

    def time_s(self, size_bytes: float) -> float:
        """Interpolated time of one call with ``size_bytes`` per rank, seconds."""
        log_size = math.log(max(size_bytes, 1.0))
        if log_size <= self.log_size[-1]:
            return float(math.exp(np.interp(log_size, self.log_size, self.log_time)))
        # Beyond the table the call is bandwidth-bound: extend at the largest size's rate.
        largest_s = math.exp(self.log_time[-1])
        return largest_s * size_bytes / math.exp(self.log_size[-1])

    def alpha_beta(self) -> tuple[float, float]:
        """Least-relative-error fit of ``time = alpha + size / beta`` (seconds, bytes/s)."""
        sizes = np.exp(self.log_size)
        times = np.exp(self.log_time)
        design = np.stack([1.0 / times, sizes / times], axis=1)  # relative residuals
        alpha, inverse_beta = np.linalg.lstsq(design, np.ones_like(times), rcond=None)[0]
        return max(float(alpha), 1e-7), 1.0 / max(float(inverse_beta), 1e-15)


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
def _curves() -> tuple[CollectiveCurve, ...]:
    return tuple(_raw_curves(smoothed=True))


@lru_cache(maxsize=2)
def _raw_curves(smoothed: bool) -> tuple[CollectiveCurve, ...]:
    text = resources.files("schedgym.costmodels").joinpath("data/nccl.csv").read_text()
    points: dict[tuple[str, str, int, int], list[tuple[float, float]]] = {}
    for row in csv.DictReader(text.splitlines()):
        key = (row["collective"], row["gpu"], int(row["num_workers"]), int(row["devices_per_node"]))
        points.setdefault(key, []).append((float(row["size_bytes"]), float(row["time_ms"]) * 1e-3))
    curves = []
    for (collective, gpu, workers, per_node), values in sorted(points.items()):
        values.sort()
        sizes = np.array([v[0] for v in values])
        times = np.array([v[1] for v in values])
        log_times = smooth_log_times(np.log(times)) if smoothed else np.log(times)
        curves.append(CollectiveCurve(collective, gpu, workers, per_node, np.log(sizes), log_times))
    return tuple(curves)


def measured_curves() -> tuple[CollectiveCurve, ...]:
    """Every shipped NCCL curve."""
    return _curves()


def _pick(collective: str, gpu_name: str, workers: int, same_node: bool) -> CollectiveCurve | None:
    """The measured curve closest to the request on this GPU (same node-ness first)."""
    options = [c for c in _curves() if c.collective == collective and c.gpu == gpu_name]
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
    curve = _pick(collective, spec.calibrated_as, num_workers, same_node)
    if curve is not None and curve.same_node == same_node:
        log_size = np.log(np.maximum(sizes, 1.0))
        inside = np.exp(np.interp(log_size, curve.log_size, curve.log_time))
        # Beyond the table the call is bandwidth-bound: extend at the largest size's rate.
        beyond = math.exp(curve.log_time[-1]) * sizes / math.exp(curve.log_size[-1])
        times = np.where(log_size <= curve.log_size[-1], inside, beyond)
        if collective == "all_reduce" and curve.num_workers != num_workers:
            # A ring all-reduce moves 2(n-1)/n of the message per rank.
            ratio = (num_workers - 1) / num_workers * curve.num_workers / (curve.num_workers - 1)
            times = times * ratio
    else:
        reference = _pick(collective, _REFERENCE_GPU, num_workers, same_node)
        assert reference is not None, "the shipped tables always hold the reference GPU"
        alpha_s, beta = reference.alpha_beta()
        reference_link = _link_bytes_per_s(get_gpu(_REFERENCE_GPU), same_node)
        beta *= _link_bytes_per_s(spec, same_node) / reference_link
        times = alpha_s + sizes / beta
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


def holdout_errors(every: int = 5) -> list[tuple[str, str, int, int, int, float, float]]:
    """Interpolation error on held-out sizes of every measured curve.

    Every ``every``-th size is removed from the curve, predicted by interpolating the rest, and
    compared with the measurement.

    Returns:
        Rows ``(collective, gpu, workers, devices_per_node, points, mape_pct, max_ape_pct)``.
    """
    rows = []
    for curve in _raw_curves(smoothed=False):
        held = np.zeros(curve.log_size.size, bool)
        held[every - 1 :: every] = True
        held[-1] = False  # the largest size anchors extrapolation; it is not interpolated
        train = CollectiveCurve(
            curve.collective,
            curve.gpu,
            curve.num_workers,
            curve.devices_per_node,
            curve.log_size[~held],
            smooth_log_times(curve.log_time[~held]),
        )
        predicted = np.array([train.time_s(math.exp(s)) for s in curve.log_size[held]])
        errors = np.abs(predicted / np.exp(curve.log_time[held]) - 1.0) * 100.0
        rows.append(
            (
                curve.collective,
                curve.gpu,
                curve.num_workers,
                curve.devices_per_node,
                int(errors.size),
                float(errors.mean()),
                float(errors.max()),
            )
        )
    return rows
