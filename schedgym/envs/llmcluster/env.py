"""Gymnasium facade of the LLMCluster simulator."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym.core.env import SchedulingEnv
from schedgym.core.errors import InvalidActionError
from schedgym.core.generator import recorded_instance
from schedgym.core.rng import spawn_streams
from schedgym.core.spaces import MaskedDiscrete
from schedgym.envs.llmcluster.config import PRESETS, LLMClusterConfig
from schedgym.envs.llmcluster.generator import LLMClusterGenerator
from schedgym.envs.llmcluster.simulator import (
    DISPATCH,
    MIGRATE,
    CandidateTable,
    LLMClusterSimulator,
)
from schedgym.serving.request import Request
from schedgym.workloads.requests import RequestStream

STREAMS = LLMClusterGenerator.streams

NUM_INSTANCE_FEATURES = 9
NUM_CANDIDATE_FEATURES = 5
NUM_REQUEST_FEATURES = 3
NUM_GLOBAL_FEATURES = 6
# Scales that bring observation entries to order one.
SEQS_SCALE = 64.0
TOKENS_SCALE = 4096.0
ITERATION_SCALE_S = 0.1


class LLMClusterEnv(SchedulingEnv[LLMClusterConfig, LLMClusterSimulator]):
    """Request dispatch and live migration across LLM serving instances (Llumnix).

    ## Description
    ``num_instances`` instances of one model (default Llama-2-7B on A100) each run a vLLM-style
    continuous-batching engine: paged KV cache in 16-token blocks sized from GPU memory,
    iteration times from the calibrated inference cost model, preemption by recompute when
    blocks run out. Requests arrive (Poisson, Gamma, or a replayed trace; ShareGPT, power-law or
    fixed lengths; optional high-priority class). The agent dispatches each arriving request to
    an instance and, every migration tick (50 ms), may live-migrate one decoding request to
    another instance: its KV blocks are copied in stages while it keeps decoding, only the last
    stage pauses it, the destination reserves blocks first and an aborted migration loses
    nothing. Time jumps from decision to decision.

    ## Action Space
    ``Discrete(N + 1 + N * C * N)`` (N instances, C = ``candidates_per_instance``):

    - ``i < N``: dispatch the pending request to instance ``i`` (only at a dispatch decision;
      masked to instances that are up);
    - ``N``: no migration (only at a migration tick);
    - ``N + 1 + (s * C + c) * N + d``: migrate candidate ``c`` of source instance ``s`` to
      instance ``d`` (masked to listed candidates and destinations with room).

    ``action_masks()`` gives the valid actions; an invalid one raises
    :class:`~schedgym.core.errors.InvalidActionError`. A migration tick is a decision only
    when some listed candidate can move to some instance that is up: a tick where "no
    migration" would be the only valid action (no decoding request can move, or no
    destination has room) is run through internally, exactly as if "no migration" had been
    chosen, and is not returned.

    ## Observation Space
    A ``Dict`` of fixed-shape arrays:

    - ``instance_features`` ``(N, 9)``: running requests / 64, waiting requests / 64, free KV
      fraction, Llumnix freeness / 100 (free blocks per running request, queued demand counted
      as used), last iteration time / 0.1 s, queued prefill tokens / 4096, decoding requests / 64,
      KV used fraction, whether a migration into or out of it is in flight.
    - ``candidate_features`` ``(N * C, 5)`` and ``candidate_mask`` ``(N * C,)``: per candidate
      (slot ``s * C + c``): KV tokens / 4096, generated tokens / 4096, high priority, KV blocks /
      capacity, its instance's freeness / 100.
    - ``request_features`` ``(3,)``: the pending request's prompt tokens / 4096, high priority,
      waiting flag (zeros at a migration tick).
    - ``global_features`` ``(6,)``: decision kind (0 dispatch, 1 migration), requests in system /
      (64 N), fraction of the episode's requests arrived, fraction completed, time / 3600 s,
      migrations in flight / N.

    ## Rewards
    Minus the time integral of the requests in the system between two decisions, each
    high-priority request weighted by ``high_priority_weight`` (default 4), divided by
    ``reward_scale_s``: with weight 1 the return is minus the total end-to-end latency in
    seconds, so maximising it minimises mean latency, with high priority counting more.

    ## Starting State
    The first request arrives at time 0; the episode starts at its dispatch decision. The
    episode's requests (arrival times, prompt and output lengths, priority classes) are drawn
    at ``reset`` into a frozen :class:`~schedgym.workloads.requests.RequestStream` by
    :class:`~schedgym.envs.llmcluster.generator.LLMClusterGenerator`, so every policy serves the
    same requests for a seed. ``reset(options={"instance": stream})`` serves a given stream
    instead (e.g. ``LLMClusterGenerator.generate(config, seed)``, or a recorded or hand-built
    ``RequestStream``); ``env.unwrapped.simulator.episode`` is the one being served.
    ``fork()`` (for look-ahead policies) copies the env at its present state, random generators
    included, so that the copy evolves identically; it shares (``fork_memo()``) the config, the cost
    model and the finished requests' records.

    ## Episode End
    Steps are decisions; forced migration ticks (see Action Space) are not steps, and the time
    in system they span counts in the reward of the step before them, so an episode's return
    is the same as if they were steps. Terminates when every request has arrived and
    completed; truncates at ``horizon_s`` if set (requests still in the system are counted in
    ``requests_in_flight``). The final ``info``
    holds the summary: ``ttft_p50_s``, ``ttft_p99_s``, ``tbt_p50_s``, ``tbt_p99_s``,
    ``e2e_p50_s``, ``e2e_p99_s`` (and ``_high`` variants for high priority),
    ``requests_arrived``, ``requests_completed``, ``requests_in_flight``, ``preemptions``,
    ``migrations``, ``migrations_aborted``, ``throughput_tok_s``, ``makespan_s``,
    ``mean_requests_in_system``. Memory stays flat over long episodes: finished requests are
    kept as compact records (``simulator.cluster.completed``), and percentiles are exact except
    the pooled TBT pair once an instance has run more than 65,536 decode iterations (then
    within 0.1% relative, from a quantile sketch) and the ``tbt_*_high`` pair past 131,072
    high-priority token gaps (the same bound).

    ## Arguments
    ``config`` (a :class:`LLMClusterConfig`) or ``preset`` (``low-load``, ``high-load``,
    ``bursty``, ``azure-trace``, ``priority-mix``, ``tiny``), plus any config field as a
    keyword override, and ``render_mode`` (``ansi`` or ``rgb_array``).

    ## Version History
    - v0: initial version. Forced migration ticks (only "no migration" valid) stopped being
      returned as decisions; dynamics, metrics, the return and the observations at every
      remaining decision are unchanged (pinned by ``tests/test_perf_regression.py``).
      The deployment fields became the shared
      :class:`~schedgym.costmodels.deployment.DeploymentFields` (same dynamics): renamed
      ``memory_utilization`` -> ``gpu_memory_utilization``, ``kv_blocks_per_instance`` ->
      ``kv_capacity_blocks``, ``arrival`` -> ``arrival_process`` (the old names are deprecated
      aliases for one version), and ``gqa_decode_attention`` added (default ``False``, as
      before).

    Example:
        >>> import gymnasium as gym
        >>> import schedgym
        >>> env = gym.make("schedgym/LLMCluster-v0", preset="tiny")
        >>> obs, info = env.reset(seed=0)
        >>> action = int(env.unwrapped.action_masks().nonzero()[0][0])
        >>> obs, reward, terminated, truncated, info = env.step(action)
    """

    config_class = LLMClusterConfig
    presets = PRESETS
    render_module = "schedgym.envs.llmcluster.render"

    def __init__(
        self,
        config: LLMClusterConfig | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, preset, render_mode, **overrides)
        n = self.config.num_instances
        c = self.config.candidates_per_instance
        self.num_instances = n
        self.num_candidates = n * c
        self.no_migration_action = n
        self.num_actions = n + 1 + self.num_candidates * n
        self.action_space = MaskedDiscrete(self.num_actions, self.action_masks)
        box = spaces.Box
        self.observation_space = spaces.Dict(
            {
                "instance_features": box(-np.inf, np.inf, (n, NUM_INSTANCE_FEATURES), np.float32),
                "candidate_features": box(
                    -np.inf, np.inf, (self.num_candidates, NUM_CANDIDATE_FEATURES), np.float32
                ),
                "candidate_mask": spaces.MultiBinary(self.num_candidates),
                "request_features": box(-np.inf, np.inf, (NUM_REQUEST_FEATURES,), np.float32),
                "global_features": box(-np.inf, np.inf, (NUM_GLOBAL_FEATURES,), np.float32),
            }
        )
        # The listed candidates with their progress, as of the last refresh (None at a
        # dispatch decision).
        self._table: CandidateTable | None = None
        self._candidate_slots_allowed = False  # whether any migration is valid now
        # Migration ticks of this episode run through because no migration was valid.
        self.forced_ticks_skipped = 0
        self._mask: np.ndarray | None = None
        # (simulator, its decision count, time, ServingInstance.load_counters of every
        # instance): the last _load_counters.
        self._counters: tuple[Any, int, float, list[tuple]] | None = None

    # ------------------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # Spawned even for a given instance, so the seed's generator advances the same way.
        streams = spawn_streams(self.np_random, STREAMS)
        instance = recorded_instance(options, RequestStream)
        if instance is None:
            instance = LLMClusterGenerator.from_streams(self.config, streams)
        self.simulator = LLMClusterSimulator(self.config, instance)
        self._last_area = self.simulator.cluster.area_weighted_s
        self.forced_ticks_skipped = 0
        self._feature_scales()
        self._refresh()
        return self._observation(), self._info()

    def _substitute_fallback(self) -> int | None:
        sim = self._sim()
        return self.no_migration_action if sim.decision_kind == MIGRATE else None

    def _apply(self, action: int) -> tuple[float, bool, bool]:
        sim = self._sim()
        if sim.decision_kind == DISPATCH:
            sim.dispatch(action)
        elif action == self.no_migration_action:
            sim.migrate(None)
        else:
            slot, destination = divmod(action - self.no_migration_action - 1, self.num_instances)
            request = self._candidate_in(slot)
            assert request is not None  # the mask only offers filled candidate slots
            sim.migrate(request, destination)
        # Refresh first: it may run through forced migration ticks, whose time in system then
        # counts in this step's reward (the return over an episode is the same as when they
        # were decisions).
        self._refresh()
        area = sim.cluster.area_weighted_s
        reward = -(area - self._last_area) / self.config.reward_scale_s
        self._last_area = area
        return reward, sim.done and not sim.truncated, sim.truncated

    def action_masks(self) -> np.ndarray:
        """``(num_actions,)`` bool: the valid actions now."""
        if self._mask is None:
            return np.zeros(self.num_actions, bool)
        return self._mask.copy()

    # ------------------------------------------------------------------- action helpers
    def dispatch_action(self, instance_id: int) -> int:
        """The action that dispatches the pending request to ``instance_id``."""
        return instance_id

    def migration_action(self, request: Request, destination: int) -> int:
        """The action that migrates ``request`` (a listed candidate) to ``destination``."""
        table = self._table
        if table is not None:
            for slot, candidate in zip(table.slots, table.requests, strict=True):
                if candidate is request:
                    return self.no_migration_action + 1 + slot * self.num_instances + destination
        raise InvalidActionError(f"action: request {request.request_id} is not a listed candidate")

    # -------------------------------------------------------------------------- helpers
    def _refresh(self) -> None:
        """Recompute the candidate list and the action mask for the next decision, running
        through forced migration ticks (where "no migration" is the only valid action)."""
        sim = self._sim()
        self._refresh_mask(sim)
        while not sim.done and sim.decision_kind == MIGRATE and not self._candidate_slots_allowed:
            sim.migrate(None)
            self.forced_ticks_skipped += 1
            self._refresh_mask(sim)

    def _candidate_in(self, slot: int) -> Request | None:
        """The candidate listed in ``slot`` now, if any (the table's slots are increasing)."""
        table = self._table
        if table is None:
            return None
        index = bisect_left(table.slots, slot)
        if index < len(table.slots) and table.slots[index] == slot:
            return table.requests[index]
        return None

    def _load_counters(self, sim: LLMClusterSimulator) -> list[tuple]:
        """Every instance's ``load_counters`` at ``now_s``, read once per decision point for
        the migration mask, the candidate table and the observation (nothing changes in
        between), and only when one of them asks: a dispatch step whose policy ignores
        observations reads none."""
        now = sim.now_s
        cached = self._counters
        if (
            cached is not None
            and cached[0] is sim
            and cached[1] == sim.decisions
            and cached[2] == now
        ):
            return cached[3]
        counters = [instance.load_counters(now) for instance in sim.instances]
        self._counters = (sim, sim.decisions, now, counters)
        return counters

    def _refresh_mask(self, sim: LLMClusterSimulator) -> None:
        """The candidate list and the action mask of the current decision point."""
        self._candidate_slots_allowed = False
        if sim.done or sim.decision_kind == DISPATCH:
            # Materialise every instance at now_s: for the final summary, and before a
            # dispatch queues a request on one (where to cut its running segment depends on
            # which iterations are applied when one ends exactly now). A migration tick needs
            # none: its mask and observation read the running segments
            # (migration_candidate_table, load_counters), and a migration syncs the two
            # instances it touches itself.
            sim.sync()
        n, per = self.num_instances, self.config.candidates_per_instance
        mask = np.zeros(self.num_actions, bool)
        self._table = None
        if not sim.done:
            if sim.decision_kind == DISPATCH:
                mask[:n] = sim.up
            else:
                mask[n] = True
                counters = self._load_counters(sim)
                table = sim.migration_candidate_table(per, [c[7] for c in counters])
                self._table = table
                if table.requests:
                    # cluster.migration_destinations for the listed candidates (each one may
                    # migrate, so only the room test and "not to its own instance" remain):
                    # the destination must be up and reserve its blocks plus one. The free
                    # blocks are cluster.uncommitted_free_blocks().
                    free = np.array([c[8] for c in counters], np.int64)
                    allowed = free > table.held_blocks[:, None]  # free >= held + 1 (integers)
                    allowed[np.arange(len(table.requests)), table.sources] = False
                    allowed &= sim.up
                    # Rows of (candidate slot, destination): slot s owns actions
                    # n + 1 + s * n .. n + 1 + s * n + n - 1.
                    rows = mask[n + 1 :].reshape(self.num_candidates, n)
                    rows[table.slot_index] = allowed
                    self._candidate_slots_allowed = bool(allowed.any())
        self._mask = mask

    def _info(self) -> dict[str, Any]:
        sim = self._sim()
        return {
            "time_s": sim.now_s,
            "decision": "dispatch" if sim.decision_kind == DISPATCH else "migration",
            "requests_arrived": sim.requests_arrived,
            "requests_completed": sim.requests_completed,
            "requests_in_system": sim.requests_in_system,
        }

    def _observation(self) -> dict[str, np.ndarray]:
        # One engine call per instance for its counters at now_s (as if synced; the KV level
        # is used_blocks_at(now), what sim.freeness reads; shared with the mask), then one
        # float64 array divided by the scales and converted to float32 once (the same IEEE
        # operations as computing each entry as a Python float and writing it). The candidate
        # rows reuse the table the mask was computed from.
        sim = self._sim()
        n = self.num_instances
        capacity_blocks = sim.capacity_blocks
        counters = self._load_counters(sim)
        # The rows flattened into one list: numpy converts a flat list faster than a nested one.
        values: list[float] = []
        for (
            running,
            waiting,
            used,
            queued_blocks,
            last_s,
            queued_tokens,
            decoding,
            _,
            _,
        ) in counters:
            # LLMClusterSimulator.freeness (no headroom).
            free = (capacity_blocks - (used + queued_blocks + 0.0)) / max(1, running)
            values.extend(
                (running, waiting, capacity_blocks - used, free, last_s, queued_tokens, decoding,
                 used, 0.0)
            )  # fmt: skip
        numerators = np.array(values, np.float64).reshape(n, NUM_INSTANCE_FEATURES)
        instance_features = (numerators / self._instance_scales).astype(np.float32)
        active = sim.cluster.active_migrations
        for migration in active.values():
            instance_features[migration.source, 8] = 1.0
            instance_features[migration.destination, 8] = 1.0
        candidate_features = np.zeros((self.num_candidates, NUM_CANDIDATE_FEATURES), np.float32)
        candidate_mask = np.zeros(self.num_candidates, np.int8)
        table = self._table
        if table is not None and table.requests:
            columns = np.array(
                (
                    table.kv_tokens,
                    table.generated,
                    table.priority,
                    table.held_blocks,
                    numerators[table.sources, 3],  # the candidate's instance's freeness
                ),
                np.float64,
            )
            candidate_features[table.slot_index] = columns.T / self._candidate_scales
            candidate_mask[table.slot_index] = 1
        request_features = np.zeros(NUM_REQUEST_FEATURES, np.float32)
        pending = sim.pending_request
        if pending is not None and sim.decision_kind == DISPATCH:
            request_features[:] = (pending.prompt_tokens / TOKENS_SCALE, pending.priority, 1.0)
        total = max(1, sim.num_requests)
        global_features = np.array(
            [
                float(sim.decision_kind == MIGRATE),
                sim.requests_in_system / (SEQS_SCALE * n),
                sim.requests_arrived / total,
                sim.requests_completed / total,
                sim.now_s / 3600.0,
                len(active) / n,
            ],
            np.float32,
        )
        return {
            "instance_features": instance_features,
            "candidate_features": candidate_features,
            "candidate_mask": candidate_mask,
            "request_features": request_features,
            "global_features": global_features,
        }

    def _feature_scales(self) -> None:
        """What each instance and candidate feature's numerator is divided by (see the class
        docstring); the KV capacity is the config's, the same in every episode."""
        capacity = float(self._sim().capacity_blocks)
        self._instance_scales = np.array(
            [SEQS_SCALE, SEQS_SCALE, capacity, 100.0, ITERATION_SCALE_S, TOKENS_SCALE, SEQS_SCALE,
             capacity, 1.0]
        )  # fmt: skip
        self._candidate_scales = np.array([TOKENS_SCALE, TOKENS_SCALE, 1.0, capacity, 100.0])
