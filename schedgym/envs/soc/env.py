"""Gymnasium facade of the SoCDAG simulator."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym.core.env import SchedulingEnv
from schedgym.core.errors import InvalidActionError
from schedgym.core.generator import recorded_instance
from schedgym.core.graph import GraphLimits, graph_spaces
from schedgym.core.rng import spawn_streams
from schedgym.core.spaces import MaskedDiscrete
from schedgym.envs.soc.config import PRESETS, SoCConfig
from schedgym.envs.soc.generator import SoCGenerator, SoCInstance
from schedgym.envs.soc.simulator import (
    DONE,
    EMPTY,
    READY,
    RUNNING,
    WAITING,
    SoCSimulator,
    max_edges_per_job,
    max_tasks_per_job,
    platform_for,
)

STREAMS = SoCGenerator.streams
NUM_GLOBAL_FEATURES = 6
# The node states of the one-hot columns of the node features, in column order.
_ONE_HOT_STATES = np.array([WAITING, READY, RUNNING, DONE], np.int8)
# Row ``s`` holds the one-hot columns of a node in state ``s`` (EMPTY: all zero).
_ONE_HOT_BY_STATE = (np.arange(DONE + 1)[:, None] == _ONE_HOT_STATES).astype(np.float32)


class SoCDAGEnv(SchedulingEnv[SoCConfig, SoCSimulator]):
    """Streaming DAG jobs on a heterogeneous system-on-chip (DeepSoCS, DS3).

    ## Description
    Jobs of the six DS3 applications (WiFi TX/RX, range detection, single-carrier TX/RX, temporal
    mitigation) arrive as a Poisson process at the DS3 reference SoC (4 A7, 4 A15, 2 matrix
    multiply, 4 FFT and 2 Viterbi PEs). Each job is a DAG of tasks; a task runs only on PEs that
    list a time for it, and data from a predecessor on another PE arrives after volume/bandwidth.
    The agent decides which ready task runs on which idle PE. Time jumps from decision to decision.

    ## Action Space
    ``Discrete(num_node_slots * num_pes + 1)``: action ``node * num_pes + pe`` starts the task in
    node slot ``node`` on PE ``pe``; the last action (``num_node_slots * num_pes``) waits for the
    next event. ``action_masks()`` gives the valid ones; an invalid action raises
    :class:`~schedgym.core.errors.InvalidActionError`.

    ## Observation Space
    A ``Dict`` of fixed-shape arrays (a padded graph, since SB3 cannot use ``spaces.Graph``):

    - ``node_features`` ``(N, 2K + 7)`` float32 per task slot (K PE types): expected time on each PE
      type / ``time_scale_us`` (0 where it cannot run), a cannot-run flag per PE type, a one-hot
      state (waiting, ready, running, done), upward rank / ``time_scale_us``, job age /
      ``time_scale_us``, expected time left if running / ``time_scale_us``.
    - ``edge_index`` ``(2, E)`` int64, ``node_mask`` ``(N,)``, ``edge_mask`` ``(E,)``: the DAG edges
      of the active jobs (PyG convention, padding masked out).
    - ``pe_features`` ``(P, K + 3)`` float32: PE type one-hot, busy flag, expected time until free /
      ``time_scale_us``, utilisation so far.
    - ``global_features`` ``(6,)`` float32: jobs in system / max_active_jobs, backlog /
      max_active_jobs, fraction of the episode's jobs arrived, ready tasks / N, time / 1e6
      ``time_scale_us``, and whether waiting is allowed now.

    Node slot ``j*T + t`` is task ``t`` of the job in job slot ``j`` (T = largest task count).

    ## Rewards
    Minus the integral of the number of jobs in the system over the time between two decisions,
    divided by ``reward_scale_us`` (default 1000): the return is minus the total job latency in
    milliseconds (Decima's objective), so maximising it minimises mean job latency.

    ## Starting State
    The first job arrives at time 0; the episode starts at the first decision point. Everything
    random about the episode (arrival times, each job's application or random DAG, the profile's
    systematic error, each task's random execution-time factor) is drawn at ``reset`` into a
    frozen :class:`~schedgym.envs.soc.generator.SoCInstance` by
    :class:`~schedgym.envs.soc.generator.SoCGenerator`, so every policy meets the same jobs for a
    seed. ``reset(options={"instance": instance})`` plays a given instance instead (e.g.
    ``SoCGenerator.generate(config, seed)``, a recorded or hand-built one; its ``num_jobs`` must
    match the config's); ``env.unwrapped.simulator.episode`` is the one being played.
    ``fork()`` (for look-ahead policies) copies the env at its present state, random generators
    included, so that the copy evolves identically; it shares (``fork_memo()``) the config, the
    platform and the DAG templates.

    ## Episode End
    Terminates when all ``num_jobs`` jobs have arrived and completed; truncates at ``horizon_us``
    if set (jobs still in the system are reported in ``jobs_in_flight``). The final ``info`` holds
    the episode summary: ``mean_job_latency_us``, ``p95_job_latency_us``, ``jobs_completed``,
    ``jobs_arrived``, ``jobs_in_flight``, ``throughput_jobs_per_ms``, ``pe_utilisation``, and
    ``makespan_us`` for single-job episodes.

    ## Arguments
    ``config`` (a :class:`SoCConfig`) or ``preset`` (``light``, ``medium``, ``heavy``, ``noisy``,
    ``random-dag``, ``topcuoglu``, ``tiny``), plus any config field as a keyword override, and
    ``render_mode`` (``ansi`` or ``rgb_array``; the Gantt chart draws the most recent executed
    tasks: the simulator keeps only the last ``TASK_RECORD_WINDOW`` = 8,192 task records, and
    finished jobs only as their arrival and finish times, so memory stays flat over long
    episodes).

    ## Version History
    - v0: initial version.

    Example:
        >>> import gymnasium as gym
        >>> import schedgym
        >>> env = gym.make("schedgym/SoCDAG-v0", preset="tiny")
        >>> obs, info = env.reset(seed=0)
        >>> mask = env.unwrapped.action_masks()
        >>> obs, reward, terminated, truncated, info = env.step(int(mask.nonzero()[0][0]))
    """

    config_class = SoCConfig
    presets = PRESETS
    render_module = "schedgym.envs.soc.render"

    # start() and wait() check exactly what the mask encodes; the mask costs O(slots x PEs).
    simulator_validates_actions = True

    def __init__(
        self,
        config: SoCConfig | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, preset, render_mode, **overrides)
        platform = platform_for(self.config)
        self.num_pes = platform.num_pes
        self.num_pe_types = platform.num_pe_types
        self.tasks_per_job = max_tasks_per_job(self.config)
        self.edges_per_job = max_edges_per_job(self.config)
        self.num_node_slots = self.config.max_active_jobs * self.tasks_per_job
        self.num_edge_slots = self.config.max_active_jobs * self.edges_per_job
        self.node_feature_dim = 2 * self.num_pe_types + 7
        limits = GraphLimits(self.num_node_slots, self.num_edge_slots, self.node_feature_dim)
        self.wait_action = self.num_node_slots * self.num_pes
        self.action_space = MaskedDiscrete(self.wait_action + 1, self.action_masks)
        self.observation_space = spaces.Dict(
            {
                **graph_spaces(limits),
                "pe_features": spaces.Box(
                    -np.inf, np.inf, (self.num_pes, self.num_pe_types + 3), np.float32
                ),
                "global_features": spaces.Box(-np.inf, np.inf, (NUM_GLOBAL_FEATURES,), np.float32),
            }
        )
        self._pe_type_onehot = np.eye(self.num_pe_types, dtype=np.float32)[platform.pe_type]

    # ------------------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # Spawned even for a given instance, so the seed's generator advances the same way.
        streams = spawn_streams(self.np_random, STREAMS)
        instance = recorded_instance(options, SoCInstance)
        if instance is None:
            instance = SoCGenerator.from_streams(self.config, streams)
        self.simulator = SoCSimulator(self.config, instance)
        self._edge_index = np.zeros((2, self.num_edge_slots), np.int64)
        self._edge_mask = np.zeros(self.num_edge_slots, np.int8)
        # The observation is kept up to date in these buffers from step to step, touching only
        # what changed (each numpy call costs microseconds, the step budget is ~200 us); every
        # observation returned is a copy, so one a caller keeps never changes.
        # The job each slot held at the last observation (-1: empty) and (jobs completed, jobs
        # admitted) then: slots change only when one of the two counts does.
        self._slot_job = np.full(self.config.max_active_jobs, -1, np.int64)
        self._slot_counts = (-1, -1)
        self._node_features = np.zeros((self.num_node_slots, self.node_feature_dim), np.float32)
        self._node_occupied = np.zeros(self.num_node_slots, bool)
        self._node_mask = np.zeros(self.num_node_slots, np.int8)
        # The node states the one-hot columns show, and the nodes whose time-left column is set.
        self._shown_state = np.zeros(self.num_node_slots, np.int8)
        self._state_changed = np.zeros(self.num_node_slots, bool)
        self._shown_running = np.zeros(0, np.int64)
        self._pe_features = np.zeros((self.num_pes, self.num_pe_types + 3), np.float32)
        self._pe_features[:, : self.num_pe_types] = self._pe_type_onehot
        self._last_area_us = self.simulator.jobs_in_system_area_us
        return self._observation(), self._info()

    def _substitute_fallback(self) -> int | None:
        return self.wait_action

    def _apply(self, action: int) -> tuple[float, bool, bool]:
        sim = self._sim()
        if action == self.wait_action:
            sim.wait()
        elif 0 <= action < self.wait_action:
            sim.start(*divmod(action, self.num_pes))
        else:
            raise InvalidActionError(f"action: must be in [0, {self.wait_action}], got {action}")
        area = sim.jobs_in_system_area_us
        reward = -(area - self._last_area_us) / self.config.reward_scale_us
        self._last_area_us = area
        return reward, sim.done and not sim.truncated, sim.truncated

    def action_masks(self) -> np.ndarray:
        """``(num_node_slots * num_pes + 1,)`` bool: the valid actions now."""
        mask = np.empty(self.wait_action + 1, bool)
        if self.simulator is None:  # before reset nothing is valid
            mask[:] = False
            return mask
        sim = self.simulator
        if sim.done:
            mask[:] = False
            return mask
        sim.decision_mask(out=mask[:-1].reshape(self.num_node_slots, self.num_pes))
        mask[-1] = sim.can_wait()
        return mask

    # -------------------------------------------------------------------------- helpers
    def _info(self) -> dict[str, Any]:
        sim = self._sim()
        return {
            "time_us": sim.now_us,
            "jobs_in_system": sim.jobs_in_system,
            "jobs_arrived": sim.jobs_arrived,
            "jobs_completed": sim.jobs_completed,
        }

    def _sync_slots(self, sim: SoCSimulator) -> None:
        """Rewrite the edge block and the static node feature columns of every job slot whose
        job changed since the last observation (a job's nominal times, rank, capability and
        occupancy do not change while it is active)."""
        # A slot changes only when a job completes or is admitted (arrived, not backlogged).
        counts = (sim.jobs_completed, sim.jobs_arrived - len(sim.backlog))
        if counts == self._slot_counts:
            return
        self._slot_counts = counts
        changed = np.flatnonzero(sim.slot_job_id != self._slot_job)
        scale = self.config.time_scale_us
        k = self.num_pe_types
        t = self.tasks_per_job
        for slot in changed.tolist():
            job_id = int(sim.slot_job_id[slot])
            block = slice(slot * self.edges_per_job, (slot + 1) * self.edges_per_job)
            self._edge_index[:, block] = 0
            self._edge_mask[block] = 0
            if job_id >= 0:
                template = sim.job_template[job_id]
                m = template.num_edges
                start = slot * self.edges_per_job
                self._edge_index[:, start : start + m] = (
                    template.edges.T + slot * self.tasks_per_job
                )
                self._edge_mask[start : start + m] = 1
            nodes = slice(slot * t, (slot + 1) * t)
            exec_us = sim.node_exec_us[nodes]
            cannot = np.isnan(exec_us)
            occupied = sim.node_state[nodes] != EMPTY
            features = self._node_features[nodes]
            features[:, :k] = np.where(cannot, 0.0, exec_us) / scale
            features[:, k : 2 * k] = cannot & occupied[:, None]
            features[:, 2 * k + 4] = np.where(occupied, sim.node_rank_us[nodes] / scale, 0.0)
            # Unoccupied nodes keep age 0; occupied ones get theirs at every observation.
            features[:, 2 * k + 5] = 0.0
            self._node_occupied[nodes] = occupied
            self._node_mask[nodes] = occupied
            self._slot_job[slot] = job_id

    def _observation(self) -> dict[str, np.ndarray]:
        # Same values, with the same float64 -> float32 rounding, as computing every column
        # from the simulator each step; see reset() for the buffers.
        sim = self._sim()
        self._sync_slots(sim)
        scale = self.config.time_scale_us
        k = self.num_pe_types
        features = self._node_features
        # One-hot state columns: only the nodes whose state changed since the last observation.
        state = sim.node_state
        changed = np.not_equal(state, self._shown_state, out=self._state_changed).nonzero()[0]
        if changed.size:
            changed_state = state[changed]
            features[changed, 2 * k : 2 * k + 4] = _ONE_HOT_BY_STATE[changed_state]
            self._shown_state[changed] = changed_state
        # Job age: every occupied node of a slot shows its job's age.
        slot_age = (sim.now_us - sim.slot_arrival_us) / scale
        np.copyto(
            features[:, 2 * k + 5].reshape(-1, self.tasks_per_job),
            slot_age[:, None],
            where=self._node_occupied.reshape(-1, self.tasks_per_job),
        )
        # Expected time left: the running nodes are those on busy PEs, and a busy PE's
        # expected free time is its running node's expected finish time.
        busy = sim.pe_node >= 0
        left = np.maximum(sim.pe_expected_free_us - sim.now_us, 0.0) / scale
        features[self._shown_running, 2 * k + 6] = 0.0
        running = sim.pe_node[busy]
        features[running, 2 * k + 6] = left[busy]
        self._shown_running = running
        elapsed = max(sim.now_us, 1e-9)
        pe_features = self._pe_features
        pe_features[:, k] = busy
        # An idle PE's expected free time is when it went idle (or 0), never after now, so
        # its ``left`` is already +0.0: no np.where(busy, left, 0.0) needed.
        pe_features[:, k + 1] = left
        pe_features[:, k + 2] = sim.pe_busy_us / elapsed
        max_active = self.config.max_active_jobs
        global_features = np.array(
            [
                sim.jobs_in_system / max_active,
                len(sim.backlog) / max_active,
                sim.jobs_arrived / self.config.num_jobs,
                len(sim.ready_nodes) / self.num_node_slots,
                sim.now_us / (1e6 * scale),
                float(sim.can_wait()),
            ],
            np.float32,
        )
        return {
            "node_features": features.copy(),
            "edge_index": self._edge_index.copy(),
            "node_mask": self._node_mask.copy(),
            "edge_mask": self._edge_mask.copy(),
            "pe_features": pe_features.copy(),
            "global_features": global_features,
        }
