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
  per (task kind, PE type) times a per-instance random factor; both are lognormal with mean 1. The
  random factors are drawn when a job arrives, so every policy faces the same draws for a seed.
- Jobs are admitted in arrival order into at most ``max_active_jobs`` slots; later arrivals wait
  in a FIFO backlog. A job's latency runs from its arrival to its last task's completion.

Node slots: job slot ``j`` owns node slots ``[j*T, (j+1)*T)`` where ``T`` is the largest task count
of the workload, so the padded observation is a fixed-size block layout.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.core.errors import InvalidActionError
from schedgym.core.events import EventQueue
from schedgym.core.fork import Forkable, shared, shared_items
from schedgym.envs.soc.config import SoCConfig
from schedgym.envs.soc.dag import (
    DagTemplate,
    Platform,
    ds3_applications,
    ds3_platform,
    random_dag,
    topcuoglu_dag,
    topcuoglu_platform,
)

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


def _lognormal_factors(
    rng: np.random.Generator, rel_std: float, size: tuple[int, ...]
) -> np.ndarray:
    """Mean-one lognormal factors with the given relative standard deviation."""
    if rel_std == 0.0:
        return np.ones(size)
    sigma = math.sqrt(math.log1p(rel_std * rel_std))
    return np.exp(sigma * rng.standard_normal(size) - 0.5 * sigma * sigma)


class SoCSimulator(Forkable):
    """Streaming DAG jobs on a heterogeneous SoC.

    Args:
        config: the validated configuration.
        streams: independent generators named ``arrivals``, ``jobs``, ``noise``, ``profile``.
    """

    def __init__(self, config: SoCConfig, streams: dict[str, np.random.Generator]) -> None:
        self.config = config
        self._rng_arrivals = streams["arrivals"]
        self._rng_jobs = streams["jobs"]
        self._rng_noise = streams["noise"]
        self._rng_profile = streams["profile"]
        self.platform: Platform = platform_for(config)
        self._fixed_templates, mix = fixed_templates(config)
        self._mix_names = list(mix)
        self._mix_probs = np.array([mix[k] for k in self._mix_names])
        self.tasks_per_job = max_tasks_per_job(config)
        self.edges_per_job = max_edges_per_job(config)
        platform = self.platform
        self.num_pes = platform.num_pes
        self.pe_type = platform.pe_type
        # us per bit, 0 on the diagonal: transfer time = bits * inverse bandwidth.
        self.inverse_bandwidth = 1.0 / platform.bandwidth_bits_per_us
        self._rank_cache: dict[str, np.ndarray] = {}
        self._bias_cache: dict[str, np.ndarray] = {}
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
        self._node_actual_us = np.zeros((n, platform.num_pe_types))
        # Per job slot (shape (max_active_jobs,)).
        self.slot_job_id = np.full(config.max_active_jobs, -1, np.int64)
        self.slot_remaining = np.zeros(config.max_active_jobs, np.int64)
        self.slot_arrival_us = np.zeros(config.max_active_jobs)
        # Per PE (shape (num_pes,)).
        self.pe_node = np.full(self.num_pes, -1, np.int64)
        self.pe_busy_us = np.zeros(self.num_pes)  # accumulated actual execution time
        self.pe_expected_free_us = np.zeros(self.num_pes)
        # Per job id (arrival order), grows as jobs arrive.
        # Per job, by job id: its template (shared objects for the fixed applications) and
        # arrival/finish times (compact float64 arrays, 16 bytes per job, for exact metrics).
        self.job_template: list[DagTemplate] = []
        self._job_arrival_us = np.full(config.num_jobs, math.nan)
        self._job_finish_us = np.full(config.num_jobs, math.nan)  # nan while in flight
        # Random execution-time factors of the jobs in the system only (dropped on completion).
        self._job_noise: dict[int, np.ndarray] = {}
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
        self.events.push(0.0, _ARRIVAL)
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
        """A copy of the random execution-time factors of ``job_id`` (a job in the system)."""
        return self._job_noise[job_id].copy()

    def idle_pes(self) -> np.ndarray:
        """``(num_pes,)`` bool: PEs neither running nor reserved."""
        return self.pe_node < 0

    def decision_mask(self) -> np.ndarray:
        """``(num_node_slots, num_pes)`` bool: ready node x idle PE that can run it."""
        ready = self.node_state == READY
        return ready[:, None] & self.idle_pes()[None, :] & self.node_capable_pe

    def has_decision(self) -> bool:
        """Whether some ready task can start on some idle PE now."""
        if not self.ready_nodes:
            return False
        idle = self.pe_node < 0
        if not idle.any():
            return False
        rows = self.node_capable_pe[list(self.ready_nodes)]
        return bool(rows[:, idle].any())

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

    def template_of(self, node: int) -> DagTemplate:
        """The DAG template of the job holding ``node``."""
        return self.job_template[int(self.slot_job_id[self.node_job_slot[node]])]

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
        its nominal execution time instead of its drawn one, jobs already drawn but not admitted
        lose their noise, and later jobs draw neither noise nor profile bias. What has started or
        finished stays as it happened. Call it on a copy, never on the simulator an env runs.
        """
        self.config = dataclasses.replace(self.config, noise_std=0.0, profile_bias_std=0.0)
        self._bias_cache = {}
        self._job_noise = {job: np.ones_like(noise) for job, noise in self._job_noise.items()}
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
        start_us = max(self.now_us, float(self.data_ready_us(node)[pe]))
        finish_us = start_us + float(self._node_actual_us[node, pe_type])
        self.node_state[node] = RUNNING
        self.ready_nodes.discard(node)
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
        config = self.config
        job_id = self.jobs_arrived
        self.jobs_arrived += 1
        self.jobs_in_system += 1
        template = self._draw_template()
        self.job_template.append(template)
        self._job_arrival_us[job_id] = self.now_us
        self._job_noise[job_id] = _lognormal_factors(
            self._rng_noise, config.noise_std, (template.num_tasks,)
        )
        if self.jobs_arrived < config.num_jobs:
            gap_us = self._rng_arrivals.exponential(1000.0 / config.job_rate_per_ms)
            self.events.push(self.now_us + gap_us, _ARRIVAL)
        if self._free_job_slots:
            self._admit(job_id, self._free_job_slots.pop())
        else:
            self.backlog.append(job_id)

    def _draw_template(self) -> DagTemplate:
        config = self.config
        if config.workload == "random_dag":
            return random_dag(
                self._rng_jobs,
                self.platform,
                config.dag_num_tasks,
                config.dag_shape_alpha,
                config.dag_out_degree,
                config.dag_ccr,
                config.dag_heterogeneity_beta,
                config.dag_mean_exec_us,
                name=f"random{self.jobs_arrived - 1}",
            )
        if len(self._mix_names) == 1:
            return self._fixed_templates[self._mix_names[0]]
        choice = int(self._rng_jobs.choice(len(self._mix_names), p=self._mix_probs))
        return self._fixed_templates[self._mix_names[choice]]

    def _template_rank(self, template: DagTemplate) -> np.ndarray:
        key = template.name  # names are unique within an episode; ids are not stable
        if key not in self._rank_cache:
            self._rank_cache[key] = template.upward_rank_us(self.platform)
        return self._rank_cache[key]

    def _template_bias(self, template: DagTemplate) -> np.ndarray:
        """Per-episode systematic factor per (task, PE type): one draw per (kind, PE type)."""
        key = template.name
        if key not in self._bias_cache:
            kinds = len(template.kind_names)
            factors = _lognormal_factors(
                self._rng_profile,
                self.config.profile_bias_std,
                (kinds, self.platform.num_pe_types),
            )
            self._bias_cache[key] = factors[template.kind]
        return self._bias_cache[key]

    def _admit(self, job_id: int, slot: int) -> None:
        template = self.job_template[job_id]
        t = self.tasks_per_job
        base, n = slot * t, template.num_tasks
        nodes = slice(base, base + n)
        self.slot_job_id[slot] = job_id
        self.slot_remaining[slot] = n
        self.slot_arrival_us[slot] = self._job_arrival_us[job_id]
        self.node_exec_us[nodes] = template.exec_us
        self.node_capable_pe[nodes] = ~np.isnan(template.exec_us[:, self.pe_type])
        self.node_rank_us[nodes] = self._template_rank(template)
        self._node_actual_us[nodes] = (
            template.exec_us * self._template_bias(template) * self._job_noise[job_id][:, None]
        )
        self.node_pe[nodes] = -1
        pending = np.array([len(p) for p in template.pred_edges], dtype=np.int64)
        self.node_pending_preds[nodes] = pending
        self.node_state[nodes] = np.where(pending == 0, READY, WAITING)
        for task in np.flatnonzero(pending == 0):
            self.ready_nodes.add(base + int(task))

    def _finish(self, node: int) -> None:
        pe = int(self.node_pe[node])
        self.node_state[node] = DONE
        self.pe_node[pe] = -1
        self.pe_expected_free_us[pe] = self.now_us
        pe_type = int(self.pe_type[pe])
        self.pe_busy_us[pe] += self.node_finish_us[node] - self.node_start_us[node]
        slot = int(self.node_job_slot[node])
        job_id = int(self.slot_job_id[slot])
        template = self.job_template[job_id]
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
        self.slot_remaining[slot] -= 1
        if self.slot_remaining[slot] == 0:
            self._complete_job(job_id, slot)

    def _complete_job(self, job_id: int, slot: int) -> None:
        self._job_finish_us[job_id] = self.now_us
        del self._job_noise[job_id]
        self.jobs_completed += 1
        self.jobs_in_system -= 1
        t = self.tasks_per_job
        self.node_state[slot * t : (slot + 1) * t] = EMPTY
        self.node_capable_pe[slot * t : (slot + 1) * t] = False
        self.node_exec_us[slot * t : (slot + 1) * t] = np.nan
        self.slot_job_id[slot] = -1
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
        memo = shared(self.config, self.platform)
        memo.update(shared_items(self.job_template))
        memo.update(shared_items(self._fixed_templates.values()))
        memo[id(self.task_records)] = self.task_records.copy()
        return memo


def platform_for(config: SoCConfig) -> Platform:
    return topcuoglu_platform() if config.platform == "topcuoglu" else ds3_platform()


def fixed_templates(config: SoCConfig) -> tuple[dict[str, DagTemplate], dict[str, float]]:
    """The workload's fixed DAG templates and their mix (empty for random DAGs)."""
    if config.workload == "topcuoglu":
        return {"topcuoglu": topcuoglu_dag()}, {"topcuoglu": 1.0}
    if config.workload == "ds3":
        apps = ds3_applications()
        return {k: apps[k] for k in config.job_mix}, dict(config.job_mix)
    return {}, {}


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
