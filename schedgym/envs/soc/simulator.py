"""The SoCDAG event-driven simulator: streaming DAG jobs on a heterogeneous SoC.

Pure state machine, no Gymnasium. Time is in microseconds and jumps from event to event (job
arrivals and task completions); it stops at *decision points*, moments when some ready task (all
predecessors finished) and some idle PE that can run it exist. The caller then either starts a
(task, PE) pair or waits until the next event.

Semantics, following DS3:
- A PE runs one task at a time. Starting task ``t`` on PE ``p`` at time ``now`` reserves ``p`` from
  ``now``; execution begins when the data of every predecessor has arrived on ``p``, i.e. at
  ``max(now, max_pred(finish_pred + bits / bandwidth(pe_pred, p)))``; a transfer on the same PE is
  free. Transfers do not contend for links (as in DS3's default model).
- The actual execution time is the nominal (profiled) time times a per-episode systematic factor
  per (task kind, PE type) times a per-instance random factor; both are lognormal with mean 1.
  Arrivals, templates and both factors come from the episode's :class:`SoCInstance` (see
  ``generator.py``), drawn before the first decision, so every policy faces the same draws for a
  seed.
- Jobs are admitted in arrival order into at most ``max_active_jobs`` slots; later arrivals wait
  in a FIFO backlog. A job's latency runs from its arrival to its last task's completion.

Node slots: job slot ``j`` owns node slots ``[j*T, (j+1)*T)`` where ``T`` is the largest task count
of the workload, so the padded observation is a fixed-size block layout.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.core.errors import InvalidActionError
from schedgym.core.events import EventQueue
from schedgym.core.fork import Forkable, shared, shared_items
from schedgym.envs.soc.config import SoCConfig
from schedgym.envs.soc.dag import DagTemplate, Platform
from schedgym.envs.soc.generator import SoCInstance, fixed_templates, platform_for

# Node states.
EMPTY, WAITING, READY, RUNNING, DONE = 0, 1, 2, 3, 4
# Event kinds.
_ARRIVAL, _FINISH = 0, 1


# Executed tasks kept for rendering and inspection: the most recent ones only, so that memory
# does not grow with the episode (a DS3 job has up to 34 tasks: ~240 jobs' worth).
TASK_RECORD_WINDOW = 8192


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One executed task, for Gantt charts, invariant checks and the regret regressor."""

    job_id: int
    task: int
    pe: int
    dispatch_us: float  # when the PE was reserved for it
    start_us: float  # when execution began (all input data arrived)
    finish_us: float
    expected_us: float  # nominal execution time on the PE's type


class TaskRecordWindow:
    """The most recent executed tasks, at most ``capacity``, oldest first.

    Records are numbered in execution order from 0 (``total`` have been appended); a reader
    that keeps up (e.g. a learner reading the new records at every decision) asks for
    :meth:`since` its last count. Copies share the (frozen) records.
    """

    def __init__(self, capacity: int = TASK_RECORD_WINDOW) -> None:
        self.capacity = capacity
        self._records: deque[TaskRecord] = deque(maxlen=capacity)
        self.total = 0  # records appended so far, including those dropped from the window

    def append(self, record: TaskRecord) -> None:
        self._records.append(record)
        self.total += 1

    def __len__(self) -> int:
        """Records held now (at most ``capacity``)."""
        return len(self._records)

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(self._records)

    def recent(self, count: int) -> list[TaskRecord]:
        """The last ``count`` records (fewer if fewer are held), oldest first."""
        held = len(self._records)
        return [self._records[i] for i in range(max(0, held - count), held)]

    def since(self, index: int) -> list[TaskRecord]:
        """Records number ``index`` onwards; raises if some were already dropped."""
        first_held = self.total - len(self._records)
        if index < first_held:
            raise ValueError(
                f"task records {index}..{first_held - 1} left the {self.capacity}-record window"
            )
        return self.recent(self.total - index)

    def copy(self) -> TaskRecordWindow:
        """An independent window holding the same records."""
        out = TaskRecordWindow(self.capacity)
        out._records.extend(self._records)
        out.total = self.total
        return out


class ArrivedTemplates(Sequence[DagTemplate]):
    """The DAG template of every job that has arrived so far, by job id (a read-only view of
    the instance: one shared template per application, no per-job objects)."""

    def __init__(self, simulator: SoCSimulator) -> None:
        self._simulator = simulator

    def __len__(self) -> int:
        return self._simulator.jobs_arrived

    def __getitem__(self, job_id: int) -> DagTemplate:  # type: ignore[override]
        if not 0 <= job_id < self._simulator.jobs_arrived:
            raise IndexError(f"job {job_id} has not arrived (jobs 0..{len(self) - 1} have)")
        return self._simulator.instance_template(job_id)


class SoCSimulator(Forkable):
    """Streaming DAG jobs on a heterogeneous SoC.

    Args:
        config: the validated configuration.
        instance: the episode's jobs (``SoCGenerator.generate(config, seed)`` or a recorded
            one); checked against ``config``.
    """

    def __init__(self, config: SoCConfig, instance: SoCInstance) -> None:
        self.config = config
        self.platform: Platform = platform_for(config)
        self._fixed_templates, _ = fixed_templates(config)
        self.tasks_per_job = max_tasks_per_job(config)
        instance.check_fits(config, self.platform, self.tasks_per_job)
        self._instance = instance
        self.edges_per_job = max_edges_per_job(config)
        platform = self.platform
        self.num_pes = platform.num_pes
        self.pe_type = platform.pe_type
        # us per bit, 0 on the diagonal: transfer time = bits * inverse bandwidth.
        self.inverse_bandwidth = 1.0 / platform.bandwidth_bits_per_us
        self._rank_cache: dict[int, np.ndarray] = {}  # by template index in the instance
        n = config.max_active_jobs * self.tasks_per_job
        self.num_node_slots = n
        # Per node slot (shape (num_node_slots,) unless stated).
        self.node_state = np.zeros(n, np.int8)
        self.node_pending_preds = np.zeros(n, np.int64)
        self.node_pe = np.full(n, -1, np.int64)
        self.node_dispatch_us = np.zeros(n)
        self.node_start_us = np.zeros(n)
        self.node_finish_us = np.zeros(n)  # actual; meaningful for DONE nodes only
        self.node_expected_finish_us = np.zeros(n)  # start + nominal time on its PE type
        self.node_exec_us = np.full((n, platform.num_pe_types), np.nan)  # nominal
        self.node_capable_pe = np.zeros((n, self.num_pes), bool)
        self.node_rank_us = np.zeros(n)
        self.node_job_slot = np.repeat(np.arange(config.max_active_jobs), self.tasks_per_job)
        # Decision bookkeeping, kept up to date as nodes become ready or start and PEs free up,
        # so that the decision mask and has_decision (asked after every event) cost O(1)
        # instead of a scan of every node slot:
        # - the capable-PE rows of the READY nodes (False elsewhere), and those rows restricted
        #   to the idle PEs (= decision_mask());
        # - per PE, how many READY nodes it can run; bit p of _ready_pe_bits is set when that
        #   count is positive, bit p of _idle_pe_bits when PE p is idle;
        # - per node slot, the PEs that can run its task (set at admission).
        self._ready_capable = np.zeros((n, self.num_pes), bool)
        self._decision = np.zeros((n, self.num_pes), bool)
        self._idle = np.ones(self.num_pes, bool)
        self._ready_per_pe = [0] * self.num_pes
        self._ready_pe_bits = 0
        self._idle_pe_bits = (1 << self.num_pes) - 1
        self._node_capable_pes: list[tuple[int, ...]] = [()] * n
        self._capable_pes_cache: dict[int, list[tuple[int, ...]]] = {}  # by template index
        self._node_actual_us = np.zeros((n, platform.num_pe_types))
        # Per job slot (shape (max_active_jobs,)).
        self.slot_job_id = np.full(config.max_active_jobs, -1, np.int64)
        self._slot_template: list[DagTemplate | None] = [None] * config.max_active_jobs
        self.slot_remaining = np.zeros(config.max_active_jobs, np.int64)
        self.slot_arrival_us = np.zeros(config.max_active_jobs)
        # Per PE (shape (num_pes,)).
        self.pe_node = np.full(self.num_pes, -1, np.int64)
        self.pe_busy_us = np.zeros(self.num_pes)  # accumulated actual execution time
        self.pe_expected_free_us = np.zeros(self.num_pes)
        # Per job, by job id: its template (a view of the instance) and arrival/finish times
        # (compact float64 arrays, 16 bytes per job, for exact metrics).
        self.job_template = ArrivedTemplates(self)
        self._job_arrival_us = np.full(config.num_jobs, math.nan)
        self._job_finish_us = np.full(config.num_jobs, math.nan)  # nan while in flight
        self.task_records = TaskRecordWindow(TASK_RECORD_WINDOW)
        self.backlog: deque[int] = deque()
        self.ready_nodes: set[int] = set()
        self.events = EventQueue()
        self.now_us = 0.0
        self.jobs_arrived = 0
        self.jobs_completed = 0
        self.jobs_in_system = 0
        self.jobs_in_system_area_us = 0.0  # integral of jobs in system over time
        self.truncated = False
        self.done = False
        self._free_job_slots = list(range(config.max_active_jobs - 1, -1, -1))
        self.events.push(float(instance.arrival_us[0]), _ARRIVAL)
        self._advance()

    # ----------------------------------------------------------------- read-only view helpers
    @property
    def job_arrival_us(self) -> np.ndarray:
        """``(jobs_arrived,)`` arrival time of every job so far (a read-only view)."""
        view = self._job_arrival_us[: self.jobs_arrived]
        view.flags.writeable = False
        return view

    @property
    def job_finish_us(self) -> np.ndarray:
        """``(jobs_arrived,)`` completion time of every job so far, nan while in flight (a
        read-only view)."""
        view = self._job_finish_us[: self.jobs_arrived]
        view.flags.writeable = False
        return view

    def job_noise(self, job_id: int) -> np.ndarray:
        """A copy of the random execution-time factors of ``job_id``'s tasks (a job that has
        arrived; KeyError for one that has not)."""
        if not 0 <= job_id < self.jobs_arrived:
            raise KeyError(f"job {job_id} has not arrived")
        return self._instance.job_noise(job_id).copy()

    @property
    def episode(self) -> SoCInstance:
        """The whole episode, future jobs included: for recording and replay (a policy must
        not read it; it is the future)."""
        return self._instance

    def instance_template(self, job_id: int) -> DagTemplate:
        """The DAG template of job ``job_id``."""
        instance = self._instance
        return instance.templates[int(instance.job_template[job_id])]

    def idle_pes(self) -> np.ndarray:
        """``(num_pes,)`` bool: PEs neither running nor reserved."""
        return self.pe_node < 0

    def decision_mask(self, out: np.ndarray | None = None) -> np.ndarray:
        """``(num_node_slots, num_pes)`` bool: ready node x idle PE that can run it (a copy,
        or written into ``out`` when given, e.g. a view of a larger action mask)."""
        if out is None:
            return self._decision.copy()
        out[...] = self._decision
        return out

    def has_decision(self) -> bool:
        """Whether some ready task can start on some idle PE now."""
        return bool(self._ready_pe_bits & self._idle_pe_bits)

    def can_wait(self) -> bool:
        """Waiting is possible when some event is still to come."""
        return self.config.allow_wait and bool(self.events)

    def data_ready_us(self, node: int) -> np.ndarray:
        """``(num_pes,)``: when all of ``node``'s finished predecessors' data is on each PE.

        Only meaningful once every predecessor is DONE (i.e. for READY nodes).
        """
        template = self.template_of(node)
        base = node - node % self.tasks_per_job
        task = node - base
        ready = np.full(self.num_pes, self.slot_arrival_us[self.node_job_slot[node]])
        for e in template.pred_edges[task]:
            src = base + int(template.edges[e, 0])
            arrival = (
                self.node_finish_us[src]
                + template.edge_bits[e] * self.inverse_bandwidth[self.node_pe[src]]
            )
            np.maximum(ready, arrival, out=ready)
        return ready

    def data_ready_on_us(self, node: int, pe: int) -> float:
        """``data_ready_us(node)[pe]``, computed for the one PE (the same float operations,
        NaN propagating as in ``np.maximum``)."""
        template = self.template_of(node)
        base = node - node % self.tasks_per_job
        task = node - base
        ready = float(self.slot_arrival_us[self.node_job_slot[node]])
        for e in template.pred_edges[task]:
            src = base + int(template.edges[e, 0])
            arrival = float(
                self.node_finish_us[src]
                + template.edge_bits[e] * self.inverse_bandwidth[self.node_pe[src], pe]
            )
            if arrival > ready or arrival != arrival:
                ready = arrival
        return ready

    def template_of(self, node: int) -> DagTemplate:
        """The DAG template of the job holding ``node``."""
        template = self._slot_template[int(self.node_job_slot[node])]
        if template is None:
            raise IndexError(f"node slot {node} holds no job")
        return template

    def node_of(self, job_id: int, task: int) -> int:
        """Node slot of task ``task`` of active job ``job_id`` (-1 if the job is not active)."""
        slots = np.flatnonzero(self.slot_job_id == job_id)
        return int(slots[0]) * self.tasks_per_job + task if slots.size else -1

    def job_id_of(self, node: int) -> int:
        return int(self.slot_job_id[self.node_job_slot[node]])

    @property
    def application_templates(self) -> dict[str, DagTemplate]:
        """The fixed applications jobs are drawn from, by config name (empty for random DAGs)."""
        return dict(self._fixed_templates)

    # ------------------------------------------------------------------------ look-ahead support
    def redact_unrevealed(self) -> None:
        """Replace, in this simulator, what a policy cannot know yet by its expectation.

        For look-ahead policies that roll a copy forward: every task that has not started gets
        its nominal execution time instead of its drawn one, and the instance is replaced by its
        :meth:`SoCInstance.redacted` copy (every noise and profile-bias factor 1), so jobs not
        yet admitted run at their nominal times too. What has started or finished stays as it
        happened. Call it on a copy, never on the simulator an env runs.
        """
        self.config = dataclasses.replace(self.config, noise_std=0.0, profile_bias_std=0.0)
        self._instance = self._instance.redacted()
        unstarted = (self.node_state == READY) | (self.node_state == WAITING)
        self._node_actual_us[unstarted] = self.node_exec_us[unstarted]

    # ----------------------------------------------------------------------------- actions
    def start(self, node: int, pe: int) -> None:
        """Start ready task ``node`` on idle PE ``pe`` now (it runs once its data arrives)."""
        if not (0 <= node < self.num_node_slots and 0 <= pe < self.num_pes):
            raise InvalidActionError(
                f"action: node {node} must be in [0, {self.num_node_slots}) and pe {pe} in "
                f"[0, {self.num_pes})"
            )
        if self.node_state[node] != READY:
            raise InvalidActionError(f"action: node slot {node} holds no ready task")
        if self.pe_node[pe] >= 0:
            raise InvalidActionError(f"action: PE {pe} is busy")
        if not self.node_capable_pe[node, pe]:
            raise InvalidActionError(f"action: PE {pe} cannot run the task in node slot {node}")
        pe_type = int(self.pe_type[pe])
        start_us = max(self.now_us, self.data_ready_on_us(node, pe))
        finish_us = start_us + float(self._node_actual_us[node, pe_type])
        self.node_state[node] = RUNNING
        self.ready_nodes.discard(node)
        self._ready_capable[node] = False
        self._decision[node] = False
        self._decision[:, pe] = False
        self._idle[pe] = False
        self._idle_pe_bits &= ~(1 << pe)
        counts = self._ready_per_pe
        for capable_pe in self._node_capable_pes[node]:
            counts[capable_pe] -= 1
            if counts[capable_pe] == 0:
                self._ready_pe_bits &= ~(1 << capable_pe)
        self.node_pe[node] = pe
        self.node_dispatch_us[node] = self.now_us
        self.node_start_us[node] = start_us
        self.node_finish_us[node] = finish_us
        expected_finish = start_us + float(self.node_exec_us[node, pe_type])
        self.node_expected_finish_us[node] = expected_finish
        self.pe_node[pe] = node
        self.pe_expected_free_us[pe] = expected_finish
        self.events.push(finish_us, _FINISH, node)
        self._advance()

    def wait(self) -> None:
        """Let time run to the next event (and on to the next decision point)."""
        if not self.config.allow_wait:
            raise InvalidActionError("action: waiting is disabled (allow_wait=False)")
        if not self.events:
            raise InvalidActionError("action: cannot wait, no event is pending")
        self._process_next_time()
        self._advance()

    # --------------------------------------------------------------------------- dynamics
    def _advance(self) -> None:
        while not self.done and not self.has_decision():
            if not self.events:
                self.done = True
                return
            self._process_next_time()

    def _process_next_time(self) -> None:
        """Pop every event at the earliest pending time."""
        time_us = self.events.peek_time()
        horizon = self.config.horizon_us
        if horizon is not None and time_us > horizon:
            self._advance_clock(horizon)
            self.truncated = True
            self.done = True
            return
        self._advance_clock(time_us)
        while self.events and self.events.peek_time() == time_us:
            _, kind, payload = self.events.pop()
            if kind == _FINISH:
                self._finish(int(payload))
            else:
                self._arrive()

    def _advance_clock(self, time_us: float) -> None:
        self.jobs_in_system_area_us += self.jobs_in_system * (time_us - self.now_us)
        self.now_us = time_us

    def _arrive(self) -> None:
        job_id = self.jobs_arrived
        self.jobs_arrived += 1
        self.jobs_in_system += 1
        self._job_arrival_us[job_id] = self.now_us
        if self.jobs_arrived < self.config.num_jobs:
            # Pushed now, as each arrival schedules the next: ties with task completions at
            # the same time then resolve in the same order as when the gap was drawn here.
            self.events.push(float(self._instance.arrival_us[self.jobs_arrived]), _ARRIVAL)
        if self._free_job_slots:
            self._admit(job_id, self._free_job_slots.pop())
        else:
            self.backlog.append(job_id)

    def _template_rank(self, template_index: int) -> np.ndarray:
        if template_index not in self._rank_cache:
            template = self._instance.templates[template_index]
            self._rank_cache[template_index] = template.upward_rank_us(self.platform)
        return self._rank_cache[template_index]

    def _template_capable_pes(self, template_index: int) -> list[tuple[int, ...]]:
        """Per task of the template, the PEs that can run it."""
        if template_index not in self._capable_pes_cache:
            exec_us = self._instance.templates[template_index].exec_us[:, self.pe_type]
            self._capable_pes_cache[template_index] = [
                tuple(np.flatnonzero(~np.isnan(row)).tolist()) for row in exec_us
            ]
        return self._capable_pes_cache[template_index]

    def _count_ready(self, node: int) -> None:
        """Count a node that became READY in the per-PE ready counts."""
        counts = self._ready_per_pe
        for pe in self._node_capable_pes[node]:
            counts[pe] += 1
            self._ready_pe_bits |= 1 << pe

    def _admit(self, job_id: int, slot: int) -> None:
        instance = self._instance
        template_index = int(instance.job_template[job_id])
        template = instance.templates[template_index]
        self._slot_template[slot] = template
        t = self.tasks_per_job
        base, n = slot * t, template.num_tasks
        nodes = slice(base, base + n)
        self.slot_job_id[slot] = job_id
        self.slot_remaining[slot] = n
        self.slot_arrival_us[slot] = self._job_arrival_us[job_id]
        self.node_exec_us[nodes] = template.exec_us
        self.node_capable_pe[nodes] = ~np.isnan(template.exec_us[:, self.pe_type])
        self.node_rank_us[nodes] = self._template_rank(template_index)
        self._node_actual_us[nodes] = (
            template.exec_us
            * instance.template_bias[template_index]
            * instance.job_noise(job_id)[:, None]
        )
        self.node_pe[nodes] = -1
        pending = np.array([len(p) for p in template.pred_edges], dtype=np.int64)
        self.node_pending_preds[nodes] = pending
        self.node_state[nodes] = np.where(pending == 0, READY, WAITING)
        self._node_capable_pes[nodes] = self._template_capable_pes(template_index)
        ready = base + np.flatnonzero(pending == 0)
        capable = self.node_capable_pe[ready]
        self._ready_capable[ready] = capable
        self._decision[ready] = capable & self._idle
        for node in ready.tolist():
            self.ready_nodes.add(node)
            self._count_ready(node)

    def _finish(self, node: int) -> None:
        pe = int(self.node_pe[node])
        self.node_state[node] = DONE
        self.pe_node[pe] = -1
        self.pe_expected_free_us[pe] = self.now_us
        self._idle[pe] = True
        self._idle_pe_bits |= 1 << pe
        self._decision[:, pe] = self._ready_capable[:, pe]
        pe_type = int(self.pe_type[pe])
        self.pe_busy_us[pe] += self.node_finish_us[node] - self.node_start_us[node]
        slot = int(self.node_job_slot[node])
        job_id = int(self.slot_job_id[slot])
        template = self._slot_template[slot]
        assert template is not None  # the slot holds the job whose task finished
        base = slot * self.tasks_per_job
        task = node - base
        self.task_records.append(
            TaskRecord(
                job_id,
                task,
                pe,
                float(self.node_dispatch_us[node]),
                float(self.node_start_us[node]),
                float(self.node_finish_us[node]),
                float(self.node_exec_us[node, pe_type]),
            )
        )
        for e in template.succ_edges[task]:
            succ = base + int(template.edges[e, 1])
            self.node_pending_preds[succ] -= 1
            if self.node_pending_preds[succ] == 0:
                self.node_state[succ] = READY
                self.ready_nodes.add(succ)
                capable = self.node_capable_pe[succ]
                self._ready_capable[succ] = capable
                np.logical_and(capable, self._idle, out=self._decision[succ])
                self._count_ready(succ)
        self.slot_remaining[slot] -= 1
        if self.slot_remaining[slot] == 0:
            self._complete_job(job_id, slot)

    def _complete_job(self, job_id: int, slot: int) -> None:
        self._job_finish_us[job_id] = self.now_us
        self.jobs_completed += 1
        self.jobs_in_system -= 1
        t = self.tasks_per_job
        self.node_state[slot * t : (slot + 1) * t] = EMPTY
        self.node_capable_pe[slot * t : (slot + 1) * t] = False
        self.node_exec_us[slot * t : (slot + 1) * t] = np.nan
        self.slot_job_id[slot] = -1
        self._slot_template[slot] = None
        if self.backlog:
            self._admit(self.backlog.popleft(), slot)
        else:
            self._free_job_slots.append(slot)

    # ---------------------------------------------------------------------------- metrics
    def summary(self) -> dict[str, float | int]:
        """Episode metrics; latency statistics exclude the warm-up jobs."""
        warmup = self.config.warmup_jobs
        finish = self.job_finish_us
        arrival = self.job_arrival_us
        counted = np.arange(finish.size) >= warmup
        done = ~np.isnan(finish)
        latency_us = (finish - arrival)[counted & done]
        elapsed_us = self.now_us
        out = {
            "mean_job_latency_us": float(latency_us.mean()) if latency_us.size else math.nan,
            "p95_job_latency_us": (
                float(np.percentile(latency_us, 95)) if latency_us.size else math.nan
            ),
            "jobs_arrived": self.jobs_arrived,
            "jobs_completed": self.jobs_completed,
            "jobs_in_flight": self.jobs_arrived - self.jobs_completed,
            "throughput_jobs_per_ms": (
                1000.0 * self.jobs_completed / elapsed_us if elapsed_us > 0 else math.nan
            ),
            "pe_utilisation": (
                float(self.pe_busy_us.mean() / elapsed_us) if elapsed_us > 0 else 0.0
            ),
            "sim_time_us": float(elapsed_us),
        }
        if self.config.num_jobs == 1:
            out["makespan_us"] = float(finish[0] - arrival[0]) if done.all() else math.nan
        return out

    # ---------------------------------------------------------------------------- forking
    def fork_memo(self) -> dict[int, Any]:
        """What a :meth:`fork` shares: the config, the platform and the DAG templates (never
        changed once built); the window of executed-task records is copied shallowly (its
        records are frozen)."""
        # The episode instance (every job's template, arrival and noise) is frozen and copies
        # of it are itself; only the fixed templates are listed here.
        memo = shared(self.config, self.platform)
        memo.update(shared_items(self._fixed_templates.values()))
        memo[id(self.task_records)] = self.task_records.copy()
        return memo


def max_tasks_per_job(config: SoCConfig) -> int:
    if config.workload == "random_dag":
        return config.dag_num_tasks
    templates, _ = fixed_templates(config)
    return max(t.num_tasks for t in templates.values())


def max_edges_per_job(config: SoCConfig) -> int:
    if config.workload == "random_dag":
        # Each task links to at most out_degree successors; orphan repair adds at most one more.
        return config.dag_num_tasks * config.dag_out_degree + config.dag_num_tasks
    templates, _ = fixed_templates(config)
    return max(t.num_edges for t in templates.values())
