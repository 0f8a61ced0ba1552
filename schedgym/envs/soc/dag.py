"""Task DAGs, the SoC platforms they run on, and the data files that define both.

A :class:`DagTemplate` is one application (e.g. WiFi TX): tasks, precedence edges with data volumes,
and each task's expected execution time per PE type. A :class:`Platform` is a set of processing
elements (PEs), each of one type, and the bandwidth between every pair of PEs. Both are immutable
and shared by every job and episode that uses them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError

# Config names of the DS3 applications -> their names in ds3_reference.json.
DS3_APPLICATIONS: dict[str, str] = {
    "wifi_tx": "WiFi_Transmitter",
    "wifi_rx": "WiFi_Receiver",
    "range_detection": "lag_detection",
    "sc_tx": "SC-T",
    "sc_rx": "SC-R",
    "temporal_mitigation": "Temporal_Mitigation",
}


@dataclass(frozen=True, eq=False)
class Platform:
    """Processing elements and the links between them.

    Attributes:
        name: platform preset name.
        pe_type_names: ``(num_pe_types,)`` names of the PE types (``A7``, ``FFT``, ...).
        pe_type: ``(num_pes,)`` int, the type index of each PE.
        bandwidth_bits_per_us: ``(num_pes, num_pes)`` float; ``inf`` on the diagonal because
            data that stays on one PE costs no transfer time.
    """

    name: str
    pe_type_names: tuple[str, ...]
    pe_type: np.ndarray
    bandwidth_bits_per_us: np.ndarray
    pe_names: tuple[str, ...] = field(default=())

    @property
    def num_pes(self) -> int:
        return int(self.pe_type.shape[0])

    @property
    def num_pe_types(self) -> int:
        return len(self.pe_type_names)

    def mean_inverse_bandwidth(self) -> float:
        """Mean of ``1 / bandwidth`` over ordered pairs of distinct PEs (us per bit).

        Topcuoglu's average communication cost of an edge is its volume times this.
        """
        n = self.num_pes
        if n < 2:
            return 0.0
        inverse = 1.0 / self.bandwidth_bits_per_us
        off_diagonal = ~np.eye(n, dtype=bool)
        return float(inverse[off_diagonal].mean())


@dataclass(frozen=True, eq=False)
class DagTemplate:
    """One application's task graph.

    Attributes:
        name: application name.
        task_names: ``(num_tasks,)`` names, tasks indexed ``0..num_tasks-1`` in topological order.
        exec_us: ``(num_tasks, num_pe_types)`` expected execution time in microseconds; ``nan``
            where the PE type cannot run the task.
        edges: ``(num_edges, 2)`` int ``(src, dst)`` task indices.
        edge_bits: ``(num_edges,)`` data volume of each edge in bits.
        kind: ``(num_tasks,)`` int, a task-kind id per task (same name stem, same app = same kind),
            used to draw the per-episode systematic noise and by online regressors.
        kind_names: name of each kind id.
    """

    name: str
    task_names: tuple[str, ...]
    exec_us: np.ndarray
    edges: np.ndarray
    edge_bits: np.ndarray
    kind: np.ndarray
    kind_names: tuple[str, ...]
    # Derived in __post_init__: predecessor and successor edge lists per task.
    pred_edges: tuple[tuple[int, ...], ...] = field(init=False)
    succ_edges: tuple[tuple[int, ...], ...] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.task_names)
        if self.exec_us.shape[0] != n:
            raise ConfigError(
                f"exec_us: {self.name} has {self.exec_us.shape[0]} rows for {n} tasks"
            )
        capable = ~np.isnan(self.exec_us)
        if not capable.any(axis=1).all():
            bad = int(np.flatnonzero(~capable.any(axis=1))[0])
            raise ConfigError(f"exec_us: task {self.task_names[bad]} of {self.name} runs on no PE")
        preds: list[list[int]] = [[] for _ in range(n)]
        succs: list[list[int]] = [[] for _ in range(n)]
        for e, (src, dst) in enumerate(self.edges.tolist()):
            if not (0 <= src < dst < n):
                raise ConfigError(
                    f"edges: edge {src}->{dst} of {self.name} is not forward in task order"
                )
            preds[dst].append(e)
            succs[src].append(e)
        object.__setattr__(self, "pred_edges", tuple(tuple(p) for p in preds))
        object.__setattr__(self, "succ_edges", tuple(tuple(s) for s in succs))

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def num_edges(self) -> int:
        return int(self.edges.shape[0])

    def upward_rank_us(self, platform: Platform) -> np.ndarray:
        """Topcuoglu's upward rank with mean costs, ``(num_tasks,)`` in microseconds.

        ``rank(i) = w_i + max_{j in succ(i)} (c_ij + rank(j))`` where ``w_i`` is the task's
        execution time averaged over the PEs (instances, not types) that can run it and ``c_ij``
        the edge volume times the mean inverse bandwidth over distinct PE pairs.
        """
        counts = np.bincount(platform.pe_type, minlength=platform.num_pe_types).astype(float)
        exec_filled = np.where(np.isnan(self.exec_us), 0.0, self.exec_us)
        capable_counts = (~np.isnan(self.exec_us)) @ counts
        mean_exec = (exec_filled @ counts) / capable_counts
        mean_comm = self.edge_bits * platform.mean_inverse_bandwidth()
        rank = np.zeros(self.num_tasks)
        for task in range(self.num_tasks - 1, -1, -1):
            best = 0.0
            for e in self.succ_edges[task]:
                best = max(best, mean_comm[e] + rank[self.edges[e, 1]])
            rank[task] = mean_exec[task] + best
        return rank

    def critical_path_lower_bound_us(self) -> float:
        """Longest path with every task on its fastest PE type and no communication."""
        fastest = np.nanmin(self.exec_us, axis=1)
        finish = np.zeros(self.num_tasks)
        for task in range(self.num_tasks):
            start = max((finish[self.edges[e, 0]] for e in self.pred_edges[task]), default=0.0)
            finish[task] = start + fastest[task]
        return float(finish.max())


_REPLICA_SUFFIX = re.compile(r"_\d+$")


@cache
def _reference() -> dict[str, Any]:
    text = resources.files("schedgym.envs.soc").joinpath("data/ds3_reference.json").read_text()
    return dict(json.loads(text))


def _kinds(app: str, task_names: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    # Replicated stages (ifft_1, ifft_2, ...) share one kind: they are the same kernel.
    stems = [app + "/" + _REPLICA_SUFFIX.sub("", name) for name in task_names]
    kind_names = tuple(dict.fromkeys(stems))
    index = {name: i for i, name in enumerate(kind_names)}
    return np.array([index[s] for s in stems], dtype=np.int64), kind_names


def _template(
    name: str, task_names: list[str], exec_us: np.ndarray, edges: list[list[int]]
) -> DagTemplate:
    kind, kind_names = _kinds(name, task_names)
    edge_array = np.array([[s, d] for s, d, _ in edges], dtype=np.int64).reshape(-1, 2)
    bits = np.array([v for _, _, v in edges], dtype=np.float64)
    return DagTemplate(name, tuple(task_names), exec_us, edge_array, bits, kind, kind_names)


@cache
def ds3_platform() -> Platform:
    """The DS3 reference SoC: 4 A7, 4 A15, 2 MM, 4 FFT, 2 VIT and DS3's bandwidth table."""
    ref = _reference()
    type_names = tuple(t["name"] for t in ref["pe_types"])
    pe_type = np.concatenate(
        [np.full(t["count"], i, dtype=np.int64) for i, t in enumerate(ref["pe_types"])]
    )
    names = tuple(f"{t['name']}_{k}" for t in ref["pe_types"] for k in range(int(t["count"])))
    bw_table = ref["bandwidth_bits_per_us"]
    fft = type_names.index("FFT")
    slow_side = {type_names.index(n) for n in ("A7", "A15", "MM")}
    n = pe_type.shape[0]
    bandwidth = np.full((n, n), float(bw_table["default"]))
    for a in range(n):
        for b in range(n):
            ta, tb = int(pe_type[a]), int(pe_type[b])
            if (ta == fft and tb in slow_side) or (tb == fft and ta in slow_side):
                bandwidth[a, b] = float(bw_table["to_or_from_FFT_from_CPU_or_MM"])
    np.fill_diagonal(bandwidth, np.inf)
    return Platform("ds3", type_names, pe_type, bandwidth, names)


@cache
def ds3_applications() -> dict[str, DagTemplate]:
    """The six DS3 applications keyed by their config names (``wifi_tx``, ...)."""
    ref = _reference()
    type_names = ds3_platform().pe_type_names
    out: dict[str, DagTemplate] = {}
    for key, ref_name in DS3_APPLICATIONS.items():
        job = ref["jobs"][ref_name]
        tasks = sorted(job["tasks"], key=lambda t: t["id"])
        exec_us = np.full((len(tasks), len(type_names)), np.nan)
        for t in tasks:
            for pe_name, us in t["exec_us"].items():
                exec_us[t["id"], type_names.index(pe_name)] = float(us)
        out[key] = _template(key, [t["name"] for t in tasks], exec_us, job["edges_bits"])
    return out


@cache
def topcuoglu_platform() -> Platform:
    """Topcuoglu et al.'s three processors; edge weights are times, so bandwidth is 1 per us."""
    ex = _reference()["topcuoglu_example"]
    n = len(ex["processors"])
    bandwidth = np.ones((n, n))
    np.fill_diagonal(bandwidth, np.inf)
    names = tuple(ex["processors"])
    return Platform("topcuoglu", names, np.arange(n, dtype=np.int64), bandwidth, names)


@cache
def topcuoglu_dag() -> DagTemplate:
    """The 10-task example of Topcuoglu et al. (2002), Fig. 2; HEFT makespan 80."""
    ex = _reference()["topcuoglu_example"]
    tasks = sorted(ex["tasks"], key=lambda t: t["id"])
    exec_us = np.array([t["cost"] for t in tasks], dtype=np.float64)
    return _template("topcuoglu", [t["name"] for t in tasks], exec_us, ex["edges_cost"])


def random_dag(
    rng: np.random.Generator,
    platform: Platform,
    num_tasks: int,
    shape_alpha: float,
    out_degree: int,
    ccr: float,
    heterogeneity_beta: float,
    mean_exec_us: float,
    name: str = "random",
) -> DagTemplate:
    """A random DAG from Topcuoglu et al.'s generator (2002, Section 6.1).

    Levels: height ``~ sqrt(v)/alpha`` and width ``~ alpha*sqrt(v)`` on average (each drawn
    uniformly with that mean). Each task links to up to ``out_degree`` tasks of later levels (every
    non-entry task gets at least one predecessor). Costs: a task's mean ``w_i ~ U[0, 2*w_dag]``;
    its cost on PE type ``j`` ``~ U[w_i (1 - beta/2), w_i (1 + beta/2)]``; edge costs ``~ U[0,
    2*CCR*w_dag]`` microseconds, stored as volume on the platform's mean link, so that the mean
    communication cost over the links equals that draw. Every PE type can run every task.
    """
    sqrt_v = np.sqrt(num_tasks)
    height = int(np.clip(round(rng.uniform(0.5, 1.5) * sqrt_v / shape_alpha), 1, num_tasks))
    # Distribute tasks over levels with random widths, every level non-empty.
    cuts = np.sort(rng.choice(np.arange(1, num_tasks), size=height - 1, replace=False))
    level_of = np.zeros(num_tasks, dtype=np.int64)
    for cut in cuts:
        level_of[cut:] += 1
    edges: list[tuple[int, int]] = []
    for task in range(num_tasks):
        later = np.flatnonzero(level_of > level_of[task])
        if later.size:
            k = min(int(later.size), int(rng.integers(1, out_degree + 1)))
            for dst in rng.choice(later, size=k, replace=False):
                edges.append((task, int(dst)))
    has_pred = {d for _, d in edges}
    for task in range(num_tasks):
        if level_of[task] > 0 and task not in has_pred:
            earlier = np.flatnonzero(level_of < level_of[task])
            edges.append((int(rng.choice(earlier)), task))
    edges.sort(key=lambda e: (e[1], e[0]))
    w_mean = rng.uniform(0.0, 2.0 * mean_exec_us, size=num_tasks)
    low, high = 1.0 - heterogeneity_beta / 2.0, 1.0 + heterogeneity_beta / 2.0
    exec_us = w_mean[:, None] * rng.uniform(low, high, size=(num_tasks, platform.num_pe_types))
    # Zero-cost tasks would make latency degenerate; keep a small floor.
    exec_us = np.maximum(exec_us, 1e-3 * mean_exec_us)
    comm_us = rng.uniform(0.0, 2.0 * ccr * mean_exec_us, size=len(edges))
    inv_bw = platform.mean_inverse_bandwidth()
    bits = comm_us / inv_bw if inv_bw > 0 else np.zeros(len(edges))
    names = [f"t{i}" for i in range(num_tasks)]
    edge_rows = [[s, d, float(b)] for (s, d), b in zip(edges, bits, strict=True)]
    template = _template(name, names, exec_us, edge_rows)  # type: ignore[arg-type]
    # Every random task is its own kind.
    object.__setattr__(template, "kind", np.arange(num_tasks, dtype=np.int64))
    object.__setattr__(template, "kind_names", tuple(f"{name}/{n}" for n in names))
    return template
