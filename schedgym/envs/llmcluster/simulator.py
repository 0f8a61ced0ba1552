"""The LLMCluster simulator: request dispatch and live migration across serving instances.

Pure state machine, no Gymnasium. N continuous-batching instances
(:class:`~schedgym.serving.engine.ServingInstance`) share one clock
(:class:`~schedgym.serving.cluster.ServingCluster`). Time jumps from event to event and stops at
two kinds of decision points:

- ``DISPATCH``: a request has arrived (``pending_request``); choose the instance it queues on.
- ``MIGRATE``: a migration tick (every ``migration_tick_s`` while requests are in the system and
  some instance has a decoding request that could move); choose none or one
  (request, destination) live migration. Ticks with nothing to choose are skipped.

Policies read the instances and request views; they never see a request's output length or
future arrivals. Instances are materialised lazily: :meth:`LLMClusterSimulator.freeness` reads
the memory level at ``now_s`` cheaply, and :meth:`LLMClusterSimulator.sync` brings every
instance's counters to ``now_s`` (the env calls it before building an observation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from schedgym.core.errors import InvalidActionError
from schedgym.core.fork import Forkable, shared
from schedgym.costmodels.deployment import ResolvedDeployment
from schedgym.envs.llmcluster.config import LLMClusterConfig
from schedgym.serving.cluster import ServingCluster
from schedgym.serving.engine import ServingInstance
from schedgym.serving.kv_cache import KVCache
from schedgym.serving.metrics import latency_summary
from schedgym.serving.request import DECODE, Request
from schedgym.serving.schedulers import make_scheduler
from schedgym.workloads.requests import RequestStream

DISPATCH, MIGRATE = 0, 1
# Decode iterations per instance whose logs are kept whole (exact TBT percentiles); longer
# episodes (the Azure hour runs ~277k per instance) keep bounded logs (see ServingInstance).
EXACT_LOG_ITERATIONS = 1 << 16
# Values per candidate in a migration_candidate_table cache entry.
_CANDIDATE_VALUES = 6


class CandidateTable(NamedTuple):
    """The migration candidates of every instance at one decision point, flattened: the ``c``-th
    candidate of instance ``i`` (:meth:`LLMClusterSimulator.migration_candidates` order) sits in
    slot ``i * limit + c``. Arrays are ``(len(requests),)`` int64, aligned with ``requests``."""

    slots: list[int]
    requests: list[Request]
    sources: np.ndarray  # instance of each candidate
    kv_tokens: np.ndarray  # ServingInstance.kv_tokens
    generated: np.ndarray  # ServingInstance.generated
    held_blocks: np.ndarray  # ServingInstance.held_blocks
    priority: np.ndarray
    slot_index: np.ndarray  # ``slots`` as an array, to index observation and mask rows with


class _MigrationTimer:
    """``(blocks, source, destination) -> seconds`` of one KV copy between two instances of
    ``deployment`` (``instances_per_node`` to a node), memoised per (blocks, same node): every
    migration asks two or three times, and the deployment's process-wide cache hashes six
    arguments per call."""

    def __init__(self, deployment: ResolvedDeployment, instances_per_node: int) -> None:
        self.deployment = deployment
        self.instances_per_node = instances_per_node
        self._memo: dict[tuple[int, bool], float] = {}

    def __call__(self, blocks: int, source: int, destination: int) -> float:
        same_node = source // self.instances_per_node == destination // self.instances_per_node
        if type(blocks) is not int:  # e.g. a bool would hit the entry of 0 or 1; let it fail
            return self.deployment.kv_migration_time_s(blocks, same_node)
        key = (blocks, same_node)
        seconds = self._memo.get(key)
        if seconds is None:
            seconds = self.deployment.kv_migration_time_s(blocks, same_node)
            self._memo[key] = seconds
        return seconds


def _request_weight(high_priority_weight: float, request: Request) -> float:
    return high_priority_weight if request.priority else 1.0


class LLMClusterSimulator(Forkable):
    """Dispatch and migration across serving instances.

    Args:
        config: the validated configuration.
        instance: the episode's requests (``LLMClusterGenerator.generate(config, seed)`` or a
            recorded stream).
    """

    def __init__(self, config: LLMClusterConfig, instance: RequestStream) -> None:
        self.config = config
        self.stream = instance
        self.num_requests = self.stream.num_requests
        deployment = config.resolved_deployment()
        self.cost_model = deployment.cost_model
        self.capacity_blocks = deployment.kv_capacity_blocks
        self.instances = [
            ServingInstance(
                i,
                self.cost_model,
                KVCache(self.capacity_blocks),
                make_scheduler(config.batch_scheduler),
                max_num_seqs=config.max_num_seqs,
                max_batch_tokens=config.max_batch_tokens,
                priority_first=config.priority_scheduling and config.high_priority_share > 0,
                exact_log_iterations=EXACT_LOG_ITERATIONS,
            )
            for i in range(config.num_instances)
        ]
        self.cluster = ServingCluster(
            self.instances,
            _MigrationTimer(deployment, config.gpus_per_node // config.tp),
            config.final_stage_max_blocks,
            config.max_migration_stages,
            request_weight=partial(_request_weight, config.high_priority_weight),
        )
        # Finished requests live in cluster.completed as compact records, those in flight in
        # cluster.live: memory follows the requests in the system, not the episode's length.
        self.requests_arrived = 0
        self.requests_rejected = 0  # longer than an instance's whole KV cache
        self._max_blocks = self.capacity_blocks - self.instances[0].watermark_blocks
        self.up = np.ones(config.num_instances, bool)  # instances accepting requests
        self.now_s = 0.0
        self.decision_kind = DISPATCH
        self.pending_request: Request | None = None
        self.done = False
        self.truncated = False
        self.decisions = 0
        # Per instance: cached candidate order (_decode_order) and candidate list
        # (migration_candidate_table).
        self._decode_orders: list[
            tuple[int, list[tuple[tuple[int, int, int], int, Request]]] | None
        ] = [None] * config.num_instances
        self._listed: list[tuple | None] = [None] * config.num_instances
        self._next_arrival = 0
        self._next_tick_s = config.migration_tick_s if config.migration else math.inf
        self._advance()

    # ----------------------------------------------------------------- read-only views
    @property
    def episode(self) -> RequestStream:
        """The episode's requests, future ones included: for recording and replay (a policy
        must not read it; it is the future)."""
        return self.stream

    @property
    def requests_completed(self) -> int:
        return len(self.cluster.completed)

    @property
    def requests_in_system(self) -> int:
        return self.cluster.in_system + (self.pending_request is not None)

    def freeness(self, instance: ServingInstance, headroom_blocks: float = 0.0) -> float:
        """Llumnix' freeness of ``instance``: (capacity - virtual usage) / batch size, blocks
        per running request. Virtual usage is the blocks held plus the blocks the queued
        requests' prefills need plus ``headroom_blocks`` (Sun et al., OSDI 2024, Section 4.4)."""
        used = instance.used_blocks_at(self.now_s)
        virtual = used + instance.waiting_blocks + headroom_blocks
        return (self.capacity_blocks - virtual) / max(1, instance.num_running())

    def migration_candidates(
        self, instance: ServingInstance, limit: int | None = None
    ) -> list[Request]:
        """Requests of ``instance`` that may migrate: decoding, not already migrating, with
        tokens still to go. Ordered as Llumnix picks them: normal priority before high, then
        the fewest KV blocks (the cheapest copy) first. ``limit``: only the first ``limit``
        of that order (the same list as slicing the full one; the keys are unique)."""
        instance.sync(self.now_s)
        if limit is not None and limit <= 0:
            return []
        e = instance.decode_index
        out: list[Request] = []
        for _, last_index, request in self._decode_order(instance):
            if e < last_index and request.migration is None:
                out.append(request)
                if len(out) == limit:
                    break
        return out

    def _decode_order(
        self, instance: ServingInstance
    ) -> list[tuple[tuple[int, int, int], int, Request]]:
        """``instance``'s decoding requests without a shared prefix, in migration-candidate
        order, each as (its sort key, the decode index from which it no longer has tokens to
        go, the request).

        Asked at every migration tick for every instance, so it is cached per instance until
        the engine's decode batch changes (``decode_batch_version``): in between, a member's
        generated tokens are ``gen_offset + E`` for the instance's decode index ``E``, so its
        key ``(priority, kv tokens = prompt + generated - 1, id)`` ranks as ``(priority,
        prompt + gen_offset, id)`` whatever ``E``, and "tokens still to go" (``generated <
        output_tokens - 1``) is ``E < output_tokens - 1 - gen_offset``."""
        index = instance.instance_id
        version = instance.decode_batch_version
        cached = self._decode_orders[index]
        if cached is not None and cached[0] == version:
            return cached[1]
        order = [
            (
                (r.priority, r.prompt_tokens + r.gen_offset, r.request_id),
                r.output_tokens - 1 - r.gen_offset,
                r,
            )
            for r in instance.decoding.values()
            if not r.prefix_path
        ]
        order.sort()  # the keys are unique (request ids), so requests never get compared
        self._decode_orders[index] = (version, order)
        return order

    def migration_candidate_table(
        self, limit: int, decode_index_now: Sequence[int] | None = None
    ) -> CandidateTable:
        """``migration_candidates(instance, limit)`` of every instance, with each candidate's
        progress (what an action mask and an observation need), at ``now_s`` (as after
        :meth:`sync`, without materialising the instances).

        Each instance's list is cached: it can only change when its decode batch changes, a
        migration starts or aborts anywhere (a candidate's ``migration`` flag), or its decode
        index reaches the point where a listed candidate has no token left to go.

        ``decode_index_now``: every instance's ``decode_index_at(now_s)``, if the caller has
        read them already (:meth:`ServingInstance.load_counters`)."""
        # A candidate's migration flag changes when a migration from its instance starts or
        # aborts; a completed one changes both instances' decode batches.
        flag_changes = self.cluster.migration_flag_changes
        now = self.now_s
        listed = self._listed
        slots: list[int] = []
        requests: list[Request] = []
        # Per candidate, flattened: (source, gen_offset, kv offset, shared blocks, priority,
        # slot), one list and one conversion for all of them (a list and an array per field
        # cost more than the few candidates an instance lists).
        values: list[int] = []
        # Read off the running segments: the table does not materialise the instances.
        decode_index = (
            [instance.decode_index_at(now) for instance in self.instances]
            if decode_index_now is None
            else decode_index_now
        )
        for instance, e in zip(self.instances, decode_index, strict=True):
            i = instance.instance_id
            entry = listed[i]
            if (
                entry is None
                or entry[0] != instance.decode_batch_version
                or entry[1] != flag_changes[i]
                or entry[2] != limit
                or e >= entry[3]
            ):
                entry = self._list_candidates(instance, e, limit, flag_changes[i])
                listed[i] = entry
            if entry[4]:
                slots.extend(entry[4])
                requests.extend(entry[5])
                values.extend(entry[6])
        columns = np.array(values, np.int64).reshape(-1, _CANDIDATE_VALUES)
        source = columns[:, 0]
        index = np.array(decode_index, np.int64)[source]
        kv_tokens = columns[:, 2] + index
        block_tokens = self.instances[0].block_tokens
        # ServingInstance.held_blocks of a decoding request: ceil(kv / block) - shared blocks,
        # the ceiling as (kv + block - 1) // block (equal for every integer; one call fewer).
        held = (kv_tokens + (block_tokens - 1)) // block_tokens - columns[:, 3]
        return CandidateTable(
            slots,
            requests,
            source,
            kv_tokens,
            columns[:, 1] + index,
            held,
            columns[:, 4],
            columns[:, 5],
        )

    def _list_candidates(
        self, instance: ServingInstance, e: int, limit: int, flag_changes: int
    ) -> tuple:
        """A :meth:`migration_candidate_table` cache entry of ``instance``: (decode batch
        version, its migration flag changes, limit, decode index up to which it holds, slots,
        requests, and per request its source, gen_offset, kv offset, shared blocks, priority
        and slot, flattened), at decode index ``e``."""
        valid_below = math.inf
        chosen: list[Request] = []
        if limit > 0:
            for _, last_index, request in self._decode_order(instance):
                if e < last_index and request.migration is None:
                    chosen.append(request)
                    if last_index < valid_below:
                        valid_below = last_index
                    if len(chosen) == limit:
                        break
        i = instance.instance_id
        block_tokens = instance.block_tokens
        slots: list[int] = []
        values: list[int] = []
        for c, r in enumerate(chosen):
            slot = i * limit + c
            slots.append(slot)
            # kv tokens = prompt + generated - 1 = (prompt - 1 + gen_offset) + E.
            values.extend(
                (
                    i,
                    r.gen_offset,
                    r.prompt_tokens - 1 + r.gen_offset,
                    r.shared_prefix_tokens // block_tokens,
                    r.priority,
                    slot,
                )
            )
        return (
            instance.decode_batch_version,
            flag_changes,
            limit,
            valid_below,
            slots,
            chosen,
            values,
        )

    # ----------------------------------------------------------------- actions
    def dispatch(self, instance_id: int) -> None:
        """Queue the pending request on ``instance_id``."""
        if self.done or self.decision_kind != DISPATCH or self.pending_request is None:
            raise InvalidActionError("action: no request is waiting for dispatch")
        if not (0 <= instance_id < len(self.instances)) or not self.up[instance_id]:
            raise InvalidActionError(f"action: instance {instance_id} is not up")
        request = self.pending_request
        self.pending_request = None
        self.cluster.dispatch(request, instance_id)
        self.decisions += 1
        self._advance()

    def migrate(self, request: Request | None, destination: int = -1) -> bool:
        """At a migration tick: start migrating ``request`` to ``destination``, or nothing
        for ``None``. Returns whether a migration started."""
        if self.done or self.decision_kind != MIGRATE:
            raise InvalidActionError("action: no migration decision is pending")
        started = False
        if request is not None:
            if not self.cluster.can_migrate(request, destination) or not self.up[destination]:
                raise InvalidActionError(
                    f"action: request {request.request_id} cannot migrate to {destination}"
                )
            started = self.cluster.migrate(request, destination, checked=True)
        self.decisions += 1
        self._advance()
        return started

    # ----------------------------------------------------------------- dynamics
    def _has_migration_choice(self) -> bool:
        """Whether some instance decodes a request that is not already migrating (a cheap
        test; the exact candidates are listed on demand)."""
        if len(self.instances) < 2:
            return False
        migrating = len(self.cluster.active_migrations)
        return sum(instance.num_decoding for instance in self.instances) > migrating

    def sync(self) -> None:
        """Materialise every instance at ``now_s`` (for full observations of their state)."""
        self.cluster.sync()

    def _advance(self) -> None:
        """Run to the next decision point (or the end)."""
        stream = self.stream
        cluster = self.cluster
        horizon = self.config.horizon_s if self.config.horizon_s is not None else math.inf
        tick = self.config.migration_tick_s
        while True:
            arrival = (
                float(stream.arrival_s[self._next_arrival])
                if self._next_arrival < self.num_requests
                else math.inf
            )
            if cluster.in_system == 0 and arrival < math.inf:
                # Nothing to migrate until the next arrival: skip the idle ticks (never to
                # before the arrival, which float rounding of ceil(a / tick) * tick could give).
                self._next_tick_s = max(
                    self._next_tick_s, math.ceil(arrival / tick) * tick, arrival
                )
            when = min(arrival, self._next_tick_s)
            if when == math.inf:
                cluster.run_to_completion(horizon)
                if cluster.events:
                    self._truncate(horizon)
                else:
                    self.now_s = max(self.now_s, cluster.now_s)
                    self.done = True
                return
            if when > horizon:
                self._truncate(horizon)
                return
            cluster.advance_to(when)
            self.now_s = when
            if arrival <= self._next_tick_s:
                k = self._next_arrival
                self._next_arrival += 1
                request = Request(
                    k,
                    arrival,
                    int(stream.prompt_tokens[k]),
                    int(stream.output_tokens[k]),
                    int(stream.priority[k]),
                )
                self.requests_arrived += 1
                tokens = request.prompt_tokens + request.output_tokens
                if -(-tokens // self.instances[0].block_tokens) > self._max_blocks:
                    # Longer than an instance's KV cache can ever hold: refused on arrival, as
                    # vLLM refuses prompts beyond its limits, and reported.
                    self.requests_rejected += 1
                    continue
                self.pending_request = request
                self.decision_kind = DISPATCH
                return
            self._next_tick_s = when + tick
            if cluster.in_system == 0 or not cluster.events:
                # Nothing runs (or nothing is left): no tick can change anything until the
                # next arrival.
                self._next_tick_s = (
                    math.ceil(arrival / tick) * tick if arrival < math.inf else math.inf
                )
                continue
            if self._has_migration_choice():
                self.decision_kind = MIGRATE
                return

    def _truncate(self, horizon: float) -> None:
        self.cluster.advance_to(horizon)
        self.now_s = horizon
        self.truncated = True
        self.done = True
        self.pending_request = None

    # ----------------------------------------------------------------- metrics
    def end_reason(self) -> str | None:
        """Why the episode ended without a decision to make, or None (it did not, or it ended
        after decisions). The one case: every request was refused on arrival."""
        if not self.done or self.requests_completed or not self.requests_rejected:
            return None
        if self.requests_rejected < self.requests_arrived:
            return None
        block_tokens = self.instances[0].block_tokens
        return (
            f"all {self.requests_rejected} requests were rejected on arrival: each needs more KV "
            f"cache than an instance holds ({self._max_blocks} blocks of {block_tokens} tokens "
            f"= {self._max_blocks * block_tokens} tokens); shorten prompts/outputs or give "
            "more KV blocks"
        )

    def summary(self) -> dict[str, float | int]:
        """The episode's metrics (see the env's docstring for the keys)."""
        completed = self.cluster.completed
        ttft = completed.first_token_s - completed.arrival_s
        e2e = completed.finish_s - completed.arrival_s
        out: dict[str, float | int] = {}
        out.update(latency_summary(ttft, e2e, self.instances))
        high = completed.priority != 0
        out.update(latency_summary(ttft[high], e2e[high], None, suffix="_high"))
        out["tbt_p50_s_high"] = completed.high_priority_tbt.percentile(50)
        out["tbt_p99_s_high"] = completed.high_priority_tbt.percentile(99)
        elapsed = max(self.now_s, 1e-9)
        tokens = sum(instance.tokens_generated for instance in self.instances)
        in_flight = self.cluster.in_system + (self.pending_request is not None)
        out.update(
            {
                "requests_arrived": self.requests_arrived,
                "requests_completed": self.requests_completed,
                "requests_in_flight": in_flight,
                "requests_rejected": self.requests_rejected,
                "preemptions": sum(instance.preemptions for instance in self.instances),
                "migrations": self.cluster.migrations_completed,
                "migrations_aborted": self.cluster.migrations_aborted,
                "throughput_tok_s": tokens / elapsed,
                "makespan_s": self.now_s,
                "mean_requests_in_system": self.cluster.area_requests_s / elapsed,
            }
        )
        return out

    def live_requests(self) -> list[Request]:
        """Every request that has arrived and not finished (nor been rejected): dispatched
        ones in dispatch order, then the one pending dispatch."""
        out = list(self.cluster.live.values())
        if self.pending_request is not None:
            out.append(self.pending_request)
        return out

    def generated_tokens(self, request_id: int) -> int:
        """Output tokens request ``request_id`` has produced so far, if it has arrived and not
        finished (0 for a request pending dispatch, rejected, or not yet arrived)."""
        request = self.cluster.live.get(request_id)
        if request is None:
            return 0
        instance = self.instances[request.instance]
        instance.sync(self.now_s)
        return instance.generated(request)

    def decoding_requests(self) -> list[Request]:
        """Every request decoding anywhere (for inspection and tests)."""
        return [r for instance in self.instances for r in instance.decoding.values()
                if r.state == DECODE]  # fmt: skip

    # ---------------------------------------------------------------------------- forking
    def fork_memo(self) -> dict[int, Any]:
        """What a :meth:`fork` shares: the config and the cost model; each engine's append-only
        logs and the finished requests' records are copied shallowly (their items never
        change)."""
        memo = shared(self.config, self.cost_model)
        for instance in self.instances:
            memo.update(instance.log_copy_memo())
        memo.update(self.cluster.completed.copy_memo())
        return memo
