"""Baselines for SoCDAG: HEFT and its classic peers, each the published list-scheduling rule.

Every policy reads the simulator's view (``env.unwrapped.simulator``): ready tasks, idle PEs,
expected (nominal) execution times, where finished predecessors ran. None reads sampled execution
times or future arrivals. Registered as ``heft``, ``etf``, ``met``, ``eft``, ``cp``, ``fcfs`` and
``random``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from schedgym.baselines.common import RandomMaskedPolicy
from schedgym.core.policy import SimulatorPolicy, register_policy
from schedgym.envs.soc.dag import DagTemplate, Platform
from schedgym.envs.soc.simulator import DONE, READY, SoCSimulator

FAMILY = "SoCDAG"

# (job_id, template, task) -> expected execution time per PE type, (num_pe_types,) us, nan where
# the type cannot run the task. The default is the nominal profile; regret-heft plugs in a learnt
# one.
ExecEstimator = Callable[[int, DagTemplate, int], np.ndarray]


def nominal_exec_us(job_id: int, template: DagTemplate, task: int) -> np.ndarray:
    """The profiled (nominal) execution times of ``task``."""
    return template.exec_us[task]


def _wait_or_first_valid(sim: SoCSimulator) -> int:
    """Wait if allowed, else the first valid action (used when a rule has no candidate)."""
    num_actions = sim.num_node_slots * sim.num_pes
    if sim.can_wait():
        return num_actions
    return int(np.flatnonzero(sim.decision_mask().ravel())[0])


def _fcfs_ready_nodes(sim: SoCSimulator) -> list[int]:
    """Ready nodes, oldest job first, then by task index (DS3's ready-queue order)."""
    return sorted(sim.ready_nodes, key=lambda n: (sim.job_id_of(n), n))


def _finish_times(sim: SoCSimulator, node: int, pes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Earliest start and finish of ``node`` on each of ``pes`` given when each is expected free."""
    available = np.where(sim.pe_node[pes] >= 0, sim.pe_expected_free_us[pes], sim.now_us)
    start = np.maximum(np.maximum(available, sim.data_ready_us(node)[pes]), sim.now_us)
    return start, start + sim.node_exec_us[node, sim.pe_type[pes]]


class FCFSPolicy(SimulatorPolicy[SoCSimulator]):
    """First come, first served: the oldest ready task goes to the fastest idle capable PE."""

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        idle = sim.idle_pes()
        for node in _fcfs_ready_nodes(sim):
            pes = np.flatnonzero(idle & sim.node_capable_pe[node])
            if pes.size:
                times = sim.node_exec_us[node, sim.pe_type[pes]]
                return node * sim.num_pes + int(pes[np.argmin(times)])
        return _wait_or_first_valid(sim)


class METPolicy(SimulatorPolicy[SoCSimulator]):
    """Minimum Execution Time (Armstrong et al. 1998; Braun et al., JPDC 2001).

    Each task goes to a PE of the type with the smallest expected execution time, whatever that
    PE's availability: a task whose fastest PEs are all busy waits for one of them.
    """

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        idle = sim.idle_pes()
        for node in _fcfs_ready_nodes(sim):
            times = sim.node_exec_us[node, sim.pe_type]
            fastest = sim.node_capable_pe[node] & (times == np.nanmin(times))
            pes = np.flatnonzero(fastest & idle)
            if pes.size:
                return node * sim.num_pes + int(pes[0])
        return _wait_or_first_valid(sim)


def _earliest_finish_dispatch(sim: SoCSimulator, order: list[int]) -> int:
    """Send each ready task, in ``order``, to the PE that finishes it earliest.

    The finish time accounts for when each PE is expected to be free and when the task's data
    arrives there. If that PE is busy the task waits for it (and claims it: later tasks in the
    order look elsewhere); the first task whose best PE is idle starts now.
    """
    claimed = np.zeros(sim.num_pes, bool)
    for node in order:
        pes = np.flatnonzero(sim.node_capable_pe[node] & ~claimed)
        if pes.size == 0:
            continue
        _, finish = _finish_times(sim, node, pes)
        best = int(pes[np.argmin(finish)])
        if sim.pe_node[best] < 0:
            return node * sim.num_pes + best
        claimed[best] = True
    return _wait_or_first_valid(sim)


class EFTPolicy(SimulatorPolicy[SoCSimulator]):
    """Earliest Finish Time, a.k.a. Minimum Completion Time (Braun et al., JPDC 2001).

    Ready tasks in arrival order; each goes to the PE that finishes it earliest given when every PE
    is expected to be free and when its input data arrives there. If that PE is busy the task waits
    for it (it is not sent to a worse idle PE).
    """

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        return _earliest_finish_dispatch(sim, _fcfs_ready_nodes(sim))


class ETFPolicy(SimulatorPolicy[SoCSimulator]):
    """Earliest Task First (Hwang, Chow, Anger, Lee, SIAM J. Computing 1989), in DS3's
    heterogeneous form (Arda et al., IEEE TC 2020).

    Over every (ready task, capable PE) pair, the pair with the earliest expected finish (PE
    availability, data arrival, execution) is scheduled first; ties go to the task with the higher
    upward rank. On homogeneous PEs this is Hwang's earliest-start rule; on a heterogeneous SoC the
    finish time is what makes an accelerator worth its transfer. A pair whose PE is busy makes its
    task wait for that PE; the next pair whose task and PE are both still free is tried.
    """

    def act(self, observation: Any, env: Any) -> int:
        return etf_dispatch(self.simulator(env))


def etf_dispatch(sim: SoCSimulator, node_penalty_us: np.ndarray | None = None) -> int:
    """ETF's choice: (ready task, capable PE) pairs by expected finish (plus
    ``node_penalty_us[node]`` when given: a job priority in microseconds), ties to the higher
    upward rank; a pair whose PE is busy makes its task wait for that PE, and the next pair whose
    task and PE are both still free is tried."""
    pairs: list[tuple[float, float, int, int]] = []
    for node in sim.ready_nodes:
        pes = np.flatnonzero(sim.node_capable_pe[node])
        _, finish = _finish_times(sim, node, pes)
        if node_penalty_us is not None:
            finish = finish + node_penalty_us[node]
        rank = -float(sim.node_rank_us[node])
        pairs.extend(
            zip(
                finish.tolist(),
                [rank] * pes.size,
                [node] * pes.size,
                pes.tolist(),
                strict=False,
            )
        )
    pairs.sort()
    handled: set[int] = set()
    claimed: set[int] = set()
    for _, _, node, pe in pairs:
        if node in handled or pe in claimed:
            continue
        if sim.pe_node[pe] < 0:
            return node * sim.num_pes + pe
        handled.add(node)
        claimed.add(pe)
    return _wait_or_first_valid(sim)


class CriticalPathPolicy(SimulatorPolicy[SoCSimulator]):
    """Critical path first (HLFET list scheduling: Adam, Chandy, Dickson, CACM 1974).

    Ready tasks are taken longest remaining path first (static b-level: each task on its fastest
    PE type, no communication), each to the PE that finishes it earliest; a task whose best PE is
    busy waits for it.
    """

    def reset(self, env: Any) -> None:
        self._levels: dict[str, np.ndarray] = {}

    def _level(self, template: DagTemplate) -> np.ndarray:
        if template.name not in self._levels:
            fastest = np.nanmin(template.exec_us, axis=1)
            level = np.zeros(template.num_tasks)
            for task in range(template.num_tasks - 1, -1, -1):
                below = [level[template.edges[e, 1]] for e in template.succ_edges[task]]
                level[task] = fastest[task] + max(below, default=0.0)
            self._levels[template.name] = level
        return self._levels[template.name]

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        order = sorted(
            sim.ready_nodes,
            key=lambda n: (
                -float(self._level(sim.template_of(n))[n % sim.tasks_per_job]),
                sim.job_id_of(n),
                n,
            ),
        )
        return _earliest_finish_dispatch(sim, order)


# ------------------------------------------------------------------------------------ HEFT
@dataclass
class PlannedTask:
    """A task in a PE's HEFT plan: its planned interval (us) and identity."""

    start_us: float
    finish_us: float
    job_id: int
    task: int
    dispatched: bool = False


@dataclass
class HeftPlan:
    """Output of :func:`heft_plan_job`: the order tasks were planned in and where/when."""

    order: list[int]
    pe: dict[int, int] = field(default_factory=dict)
    start_us: dict[int, float] = field(default_factory=dict)
    finish_us: dict[int, float] = field(default_factory=dict)

    @property
    def makespan_us(self) -> float:
        return max(self.finish_us.values()) - min(self.start_us.values())


def _insertion_start(
    timeline: list[PlannedTask], first: int, ready_us: float, duration_us: float, floor_us: float
) -> tuple[float, int]:
    """Earliest start >= ready in a gap of a PE's sorted timeline (HEFT's insertion policy).

    The search starts at index ``first`` with the PE free from ``floor_us``: gaps before an entry
    already dispatched are unusable, because a dispatched task holds its PE from dispatch on.
    """
    prev_end = floor_us
    for index in range(first, len(timeline)):
        slot = timeline[index]
        start = ready_us if ready_us > prev_end else prev_end
        # Strictly before: a zero-length task must not jump ahead of an entry starting at the
        # same instant (it may be that entry's successor).
        if start + duration_us <= slot.start_us and start < slot.start_us:
            return start, index
        if slot.finish_us > prev_end:
            prev_end = slot.finish_us
    return (ready_us if ready_us > prev_end else prev_end), len(timeline)


def heft_plan_job(
    job_id: int,
    template: DagTemplate,
    platform: Platform,
    timelines: list[list[PlannedTask]],
    now_us: float,
    exec_us: Callable[[int], np.ndarray],
    rank_us: np.ndarray,
) -> HeftPlan:
    """HEFT (Topcuoglu, Hariri, Wu, IEEE TPDS 2002) for one job against existing PE timelines.

    Tasks are taken in decreasing upward rank (ties: lower task index); each goes to the PE giving
    the earliest finish time (ties: lower PE index), using the insertion-based policy (the
    earliest idle gap after its data-ready time that is long enough). ``timelines`` (one sorted
    list per PE) is updated in place.

    Args:
        job_id: id recorded in the timeline entries.
        template: the job's DAG.
        platform: PEs and bandwidths.
        timelines: per-PE planned tasks, sorted by start.
        now_us: nothing may be planned before this time.
        exec_us: task -> expected time per PE type, ``(num_pe_types,)``, nan if it cannot run.
        rank_us: upward ranks of the job's tasks.
    """
    # Ranks equal up to rounding (n3 and n4 of the Topcuoglu example) tie-break by task index.
    order = sorted(range(template.num_tasks), key=lambda t: (-round(float(rank_us[t]), 6), t))
    plan = HeftPlan(order=order)
    inverse_bw = 1.0 / platform.bandwidth_bits_per_us
    # Per PE: where the insertion search may start (after the last dispatched entry) and when
    # the PE is free from. Dispatched entries do not change while one job is planned.
    first_free: list[int] = []
    floor_us: list[float] = []
    for timeline in timelines:
        first, floor = 0, now_us
        for index, slot in enumerate(timeline):
            if slot.dispatched:
                first, floor = index + 1, max(floor, slot.finish_us)
        first_free.append(first)
        floor_us.append(floor)
    pe_finish = np.empty(template.num_tasks)
    pe_of = np.empty(template.num_tasks, np.int64)
    for task in order:
        times = exec_us(task)
        ready = np.full(platform.num_pes, now_us)
        for e in template.pred_edges[task]:
            src = int(template.edges[e, 0])
            arrival = pe_finish[src] + template.edge_bits[e] * inverse_bw[pe_of[src]]
            np.maximum(ready, arrival, out=ready)
        duration_by_pe = times[platform.pe_type].tolist()
        ready_by_pe = ready.tolist()
        best_finish = np.inf
        best = (0.0, 0.0, -1, 0)
        for pe in range(platform.num_pes):
            duration = duration_by_pe[pe]
            if duration != duration:  # nan: this PE type cannot run the task
                continue
            start, index = _insertion_start(
                timelines[pe], first_free[pe], ready_by_pe[pe], duration, floor_us[pe]
            )
            if start + duration < best_finish:
                best_finish = start + duration
                best = (start, duration, pe, index)
        start, duration, pe, index = best
        if pe < 0:
            raise ValueError(f"task {task} of {template.name} has no PE that can run it")
        timelines[pe].insert(index, PlannedTask(start, start + duration, job_id, task))
        pe_finish[task], pe_of[task] = start + duration, pe
        plan.pe[task], plan.start_us[task], plan.finish_us[task] = pe, start, start + duration
    return plan


def heft_static_schedule(template: DagTemplate, platform: Platform) -> HeftPlan:
    """HEFT for one DAG on an empty platform at time 0 (the paper's setting)."""
    timelines: list[list[PlannedTask]] = [[] for _ in range(platform.num_pes)]
    return heft_plan_job(
        0,
        template,
        platform,
        timelines,
        0.0,
        lambda t: template.exec_us[t],
        template.upward_rank_us(platform),
    )


class HEFTPolicy(SimulatorPolicy[SoCSimulator]):
    """HEFT for streaming jobs (Topcuoglu, Hariri, Wu, IEEE TPDS 2002).

    Each job is ranked (upward rank, mean costs) and planned with insertion-based earliest finish
    time when it is admitted to the SoC, against the current plan of every PE. Execution follows
    the plan: an idle PE starts the next task of its plan as soon as that task is ready, and waits
    otherwise. Under execution-time noise the remaining plan is shifted, never reordered: before a
    new job is planned, each PE's not-yet-started entries are pushed back so none starts before
    ``now`` or before the PE's previous entry is expected to finish.

    Args:
        exec_estimator: expected execution time per PE type for a task; the nominal profile by
            default (``regret-heft`` passes a learnt one).
    """

    def __init__(self, exec_estimator: ExecEstimator = nominal_exec_us) -> None:
        self.exec_estimator = exec_estimator

    def reset(self, env: Any) -> None:
        sim = self.simulator(env)
        self._timelines: list[list[PlannedTask]] = [[] for _ in range(sim.num_pes)]
        self._planned_jobs: set[int] = set()
        self._ranks: dict[str, np.ndarray] = {}
        self._inverse_bw = 1.0 / sim.platform.bandwidth_bits_per_us

    def _rank(self, sim: SoCSimulator, template: DagTemplate) -> np.ndarray:
        if template.name not in self._ranks:
            self._ranks[template.name] = template.upward_rank_us(sim.platform)
        return self._ranks[template.name]

    def _refresh_timelines(self, sim: SoCSimulator, slot_of: dict[int, int]) -> None:
        """Drop finished entries; if the plan has fallen behind, re-time what is left of it.

        Without noise the plan stays exact and this only prunes. With noise, a running task may
        overrun and planned starts may lie in the past; then every not-yet-dispatched entry is
        re-timed in its current global order: start = max(its PE's previous entry's finish, its
        predecessors' (re-timed or actual) data arrival, now). Processing in planned-start order
        keeps the plan precedence-consistent, so following it can never deadlock.
        """
        late = False
        for timeline in self._timelines:
            while timeline and timeline[0].dispatched:
                head = timeline[0]
                node = self._node(sim, slot_of, head)
                if node < 0 or sim.node_state[node] == DONE:
                    timeline.pop(0)
                    continue
                expected_finish = max(float(sim.node_expected_finish_us[node]), sim.now_us)
                late |= expected_finish > head.finish_us
                head.finish_us = expected_finish
                break
            pending = [entry for entry in timeline if not entry.dispatched]
            late |= bool(pending) and pending[0].start_us < sim.now_us
        if late:
            self._retime(sim, slot_of)

    @staticmethod
    def _node(sim: SoCSimulator, slot_of: dict[int, int], entry: PlannedTask) -> int:
        slot = slot_of.get(entry.job_id)
        return -1 if slot is None else slot * sim.tasks_per_job + entry.task

    def _retime(self, sim: SoCSimulator, slot_of: dict[int, int]) -> None:
        pe_free = [
            timeline[0].finish_us if timeline and timeline[0].dispatched else sim.now_us
            for timeline in self._timelines
        ]
        pending = sorted(
            (
                (entry.start_us, pe, entry)
                for pe, tl in enumerate(self._timelines)
                for entry in tl
                if not entry.dispatched
            ),
            key=lambda item: (item[0], item[1]),
        )
        planned: dict[tuple[int, int], tuple[int, float]] = {
            (e.job_id, e.task): (pe, e.finish_us) for _, pe, e in pending
        }
        inverse_bw = self._inverse_bw
        for _, pe, entry in pending:
            template = sim.job_template[entry.job_id]
            base = slot_of[entry.job_id] * sim.tasks_per_job
            ready = max(sim.now_us, pe_free[pe])
            for e in template.pred_edges[entry.task]:
                src = int(template.edges[e, 0])
                if (entry.job_id, src) in planned:
                    src_pe, src_finish = planned[(entry.job_id, src)]
                else:  # already dispatched: running (expected finish) or done (actual finish)
                    node = base + src
                    src_pe = int(sim.node_pe[node])
                    src_finish = float(
                        sim.node_finish_us[node]
                        if sim.node_state[node] == DONE
                        else max(sim.node_expected_finish_us[node], sim.now_us)
                    )
                ready = max(ready, src_finish + template.edge_bits[e] * inverse_bw[src_pe, pe])
            duration = entry.finish_us - entry.start_us
            entry.start_us, entry.finish_us = ready, ready + duration
            pe_free[pe] = entry.finish_us
            planned[(entry.job_id, entry.task)] = (pe, entry.finish_us)

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        slot_of = {int(j): s for s, j in enumerate(sim.slot_job_id.tolist()) if j >= 0}
        new_jobs = sorted(j for j in slot_of if j not in self._planned_jobs)
        if new_jobs:
            self._refresh_timelines(sim, slot_of)
            for job_id in new_jobs:
                template = sim.job_template[job_id]
                heft_plan_job(
                    job_id,
                    template,
                    sim.platform,
                    self._timelines,
                    sim.now_us,
                    partial(self.exec_estimator, job_id, template),
                    self._rank(sim, template),
                )
                self._planned_jobs.add(job_id)
        for pe in np.flatnonzero(sim.idle_pes()).tolist():
            timeline = self._timelines[pe]
            # Skip entries already run (dispatched and finished) at the head.
            index = 0
            while index < len(timeline) and timeline[index].dispatched:
                index += 1
            if index == len(timeline):
                continue
            entry = timeline[index]
            slot = slot_of.get(entry.job_id)
            if slot is None:
                continue
            node = slot * sim.tasks_per_job + entry.task
            if sim.node_state[node] == READY:
                entry.dispatched = True
                del timeline[:index]
                return node * sim.num_pes + pe
        return _wait_or_first_valid(sim)


for _name, _factory, _description in (
    (
        "heft",
        HEFTPolicy,
        "HEFT: upward rank, insertion-based earliest finish time (Topcuoglu 2002)",
    ),
    ("etf", ETFPolicy, "Earliest Time First (Hwang et al. 1989)"),
    ("met", METPolicy, "Minimum Execution Time (Braun et al. 2001)"),
    ("eft", EFTPolicy, "Earliest Finish Time / MCT (Braun et al. 2001)"),
    ("cp", CriticalPathPolicy, "Critical path first, HLFET (Adam et al. 1974)"),
    ("fcfs", FCFSPolicy, "Oldest ready task to the fastest idle capable PE"),
    (
        "random",
        partial(RandomMaskedPolicy, noop_action=lambda env: env.unwrapped.wait_action),
        "Uniformly random valid (task, PE) pair; waits only when nothing can start",
    ),
):
    register_policy(FAMILY, _name, _factory, _description)
