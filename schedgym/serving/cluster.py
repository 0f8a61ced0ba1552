"""Several serving instances on one clock, and live migration of requests between them.

:class:`ServingCluster` keeps one event queue for the instances' iteration boundaries and the
migrations' stages; a driver (an environment) moves the clock with :meth:`ServingCluster.advance_to`
and acts in between: :meth:`~ServingCluster.dispatch` a request, :meth:`~ServingCluster.migrate`
one. Time jumps from event to event.

Live migration follows Llumnix (Sun et al., OSDI 2024, Section 4.2):

1. The destination reserves blocks for the request's current KV first; if it cannot, nothing
   starts. Stage 1 copies those blocks while the request keeps decoding on the source.
2. Each later stage copies the blocks the request grew meanwhile (reserved on the destination
   first). When a stage's increment is at most ``final_stage_max_blocks`` blocks (or after
   ``max_stages``), the last stage begins: the source takes the request out of its batch at the
   end of the iteration in flight, the remaining blocks are copied while it is paused (the only
   stall), and it resumes decoding on the destination with every token it had.
3. A migration aborts when the request finishes or is preempted on the source, or the
   destination cannot reserve a stage's blocks: the destination's reservation is returned and
   the request carries on at the source, so nothing is lost.

Copy times come from :func:`schedgym.costmodels.inference.kv_migration_time_s` (NVLink within a
node, the network across nodes); concurrent migrations do not contend for links.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from schedgym.core.events import EventQueue
from schedgym.serving.engine import ServingInstance
from schedgym.serving.records import CompletedRequests
from schedgym.serving.request import DECODE, DETACHED, Request

# Event kinds.
_INSTANCE, _STAGE, _DONE = 0, 1, 2
INF = float("inf")


class Migration:
    """One live migration in progress."""

    __slots__ = (
        "copied_blocks",
        "destination",
        "final",
        "request",
        "reserved_blocks",
        "source",
        "stage",
        "started_s",
    )

    def __init__(self, request: Request, source: int, destination: int, started_s: float) -> None:
        self.request = request
        self.source = source
        self.destination = destination
        self.started_s = started_s
        self.stage = 1
        self.copied_blocks = 0
        self.reserved_blocks = 0
        self.final = False


class ServingCluster:
    """Instances plus migration mechanics on one event clock.

    Args:
        instances: the engines, indexed by ``instance_id``.
        migration_time_s: ``(num_blocks, source, destination) -> seconds`` of one KV copy.
        final_stage_max_blocks: the last (stalling) stage starts once a stage's increment is at
            most this many blocks.
        max_stages: stages after which the last stage starts regardless.
        request_weight: weight of a request in the time integral of requests in the system
            (e.g. larger for high priority); default 1.
    """

    def __init__(
        self,
        instances: list[ServingInstance],
        migration_time_s: Callable[[int, int, int], float],
        final_stage_max_blocks: int = 1,
        max_stages: int = 8,
        request_weight: Callable[[Request], float] | None = None,
    ) -> None:
        self.instances = instances
        self.migration_time_s = migration_time_s
        self.final_stage_max_blocks = final_stage_max_blocks
        self.max_stages = max_stages
        self._weight = request_weight
        self.events = EventQueue()
        self.now_s = 0.0
        self._pushed_s = [float("inf")] * len(instances)
        self._version = [0] * len(instances)
        self.completed = CompletedRequests(instances)
        self.live: dict[int, Request] = {}  # dispatched and not finished, by request id
        self.in_system = 0  # dispatched and not finished
        self.in_system_weight = 0.0
        self.area_requests_s = 0.0  # integral of in_system over time
        self.area_weighted_s = 0.0  # integral of in_system_weight over time
        self.migrations_started = 0
        self.migrations_completed = 0
        self.migrations_aborted = 0
        self.migration_stall_s: list[float] = []  # per completed migration: pause of the request
        self.migrated_blocks = 0
        self.active_migrations: dict[int, Migration] = {}  # request id -> migration in flight
        # Per source instance: migrations started or aborted from it, i.e. how often one of its
        # decoding requests' ``migration`` changed (a completed one leaves its decode batch
        # first), for callers that cache what depends on it.
        self.migration_flag_changes = [0] * len(instances)

    # ----------------------------------------------------------------- clock
    def next_event_s(self) -> float:
        """Time of the next internal event (``inf`` when nothing is pending)."""
        return self.events.peek_time()

    def advance_to(self, time_s: float) -> None:
        """Process every internal event up to ``time_s`` and bring every instance there."""
        pop_due = self.events.pop_due
        while (event := pop_due(time_s)) is not None:
            at, kind, payload = event
            self._integrate(at)
            if kind == _INSTANCE:
                index, version = payload
                if version == self._version[index]:
                    self._pushed_s[index] = INF
                    instance = self.instances[index]
                    instance.on_event(at)
                    self._after_instance(instance, at)
            elif kind == _STAGE:
                self._stage_end(payload, at)
            else:
                self._migration_done(payload, at)
        self._integrate(time_s)

    def run_to_completion(self, limit_s: float = float("inf")) -> None:
        """Process events until none is left (or the next is after ``limit_s``)."""
        while self.events and self.events.peek_time() <= limit_s:
            self.advance_to(self.events.peek_time())

    def sync(self) -> None:
        """Materialise every instance at the current time (for observation)."""
        now = self.now_s
        for instance in self.instances:
            instance.sync(now)

    def _integrate(self, time_s: float) -> None:
        if time_s > self.now_s:
            dt = time_s - self.now_s
            self.area_requests_s += self.in_system * dt
            self.area_weighted_s += self.in_system_weight * dt
            self.now_s = time_s

    def schedule_next_event(self, instance: ServingInstance) -> None:
        """(Re-)queue ``instance``'s next event; call it after changing the instance's state from
        outside the cluster (e.g. a look-ahead policy rebuilding a redacted copy)."""
        index = instance.instance_id
        when = instance.next_event_s
        if when != self._pushed_s[index]:
            self._version[index] += 1
            self._pushed_s[index] = when
            if when != INF:
                self.events.push(when, _INSTANCE, (index, self._version[index]))

    def _after_instance(self, instance: ServingInstance, at: float) -> None:
        if instance.finished:
            for request in instance.finished:
                weight = self._weight(request) if self._weight is not None else 1.0
                self.in_system -= 1
                self.in_system_weight -= weight
                self.completed.add(request)
                del self.live[request.request_id]
                if request.migration is not None:
                    self._abort(request.migration, at)  # type: ignore[arg-type]
            instance.finished.clear()
        if instance.detached:
            for request in instance.detached:
                migration = request.migration
                assert isinstance(migration, Migration)
                remaining = instance.held_blocks(request) - migration.copied_blocks
                migration.copied_blocks += remaining
                self.migrated_blocks += remaining
                duration = self.migration_time_s(remaining, migration.source, migration.destination)
                self.events.push(at + duration, _DONE, migration)
            instance.detached.clear()
        self.schedule_next_event(instance)
        if instance.token_log_needs_trim():
            self.trim_token_logs()

    def trim_token_logs(self) -> None:
        """Drop, on every instance with bounded logs, the decode-end times that no request in
        flight took part in (finished requests' times are in ``completed`` already)."""
        keep_from = [instance.decode_index for instance in self.instances]
        for request in self.live.values():
            for instance_id, first, _ in request.spans:
                if first < keep_from[instance_id]:
                    keep_from[instance_id] = first
            if request.state == DECODE and request.join_decode_index < keep_from[request.instance]:
                keep_from[request.instance] = request.join_decode_index
        for instance, index in zip(self.instances, keep_from, strict=True):
            if not instance.tbt_exact:
                instance.trim_token_log(index)

    # ----------------------------------------------------------------- driver actions
    def dispatch(self, request: Request, instance_id: int) -> None:
        """Queue ``request`` (arrived now) on instance ``instance_id``."""
        weight = self._weight(request) if self._weight is not None else 1.0
        self.in_system += 1
        self.in_system_weight += weight
        self.live[request.request_id] = request
        instance = self.instances[instance_id]
        instance.add_request(request, self.now_s)
        self._after_instance(instance, self.now_s)

    def can_migrate(self, request: Request, destination: int) -> bool:
        """Whether a migration of ``request`` to ``destination`` can start now."""
        if request.state != DECODE or request.migration is not None or request.prefix_path:
            return False
        if destination == request.instance or not 0 <= destination < len(self.instances):
            return False
        source = self.instances[request.instance]
        source.sync(self.now_s)
        if source.generated(request) >= request.output_tokens - 1:
            return False  # it finishes before a copy could help
        target = self.instances[destination]
        target.sync(self.now_s)
        return target.uncommitted_free_blocks() >= source.held_blocks(request) + 1

    def migration_destinations(
        self, requests: Sequence[Request], held_blocks: Sequence[int] | None = None
    ) -> np.ndarray:
        """``(len(requests), N)`` bool: ``can_migrate(request, d)`` for every pair at once.

        The same test as :meth:`can_migrate`; each destination's uncommitted free blocks are
        read once instead of once per (request, destination) pair, which is what an action
        mask over every candidate and destination needs. ``held_blocks``: each request's
        ``held_blocks`` on its instance now, if the caller has them already."""
        n = len(self.instances)
        out = np.zeros((len(requests), n), bool)
        if not requests:
            return out
        self.sync()  # the sources' progress below
        free_blocks = self.uncommitted_free_blocks()
        # The rows that may migrate, each one's blocks and source, then one comparison for
        # all of them (a numpy call per row cost more than the test itself).
        rows: list[int] = []
        needed: list[int] = []
        sources: list[int] = []
        for row, request in enumerate(requests):
            if request.state != DECODE or request.migration is not None or request.prefix_path:
                continue
            source = self.instances[request.instance]
            if source.generated(request) >= request.output_tokens - 1:
                continue  # it finishes before a copy could help
            held = source.held_blocks(request) if held_blocks is None else held_blocks[row]
            rows.append(row)
            needed.append(held + 1)
            sources.append(request.instance)
        if rows:
            out[rows] = free_blocks >= np.array(needed, np.int64)[:, None]
            out[rows, sources] = False
        return out

    def uncommitted_free_blocks(self) -> np.ndarray:
        """``(N,)`` int64: each instance's :meth:`~ServingInstance.uncommitted_free_blocks` now,
        the room a migration into it can reserve (a migration needs its blocks plus one). It
        does not depend on how far the instances are materialised, so none is synced."""
        return np.array([target.uncommitted_free_blocks() for target in self.instances], np.int64)

    def migrate(self, request: Request, destination: int, checked: bool = False) -> bool:
        """Start a live migration of decoding ``request`` to ``destination``; False if the
        destination cannot reserve its blocks (nothing changes then). ``checked``: the caller
        has just had :meth:`can_migrate` answer True for this pair with nothing changed since
        (the test is then not repeated; it syncs both instances, reads both block counts)."""
        if not checked and not self.can_migrate(request, destination):
            return False
        source = self.instances[request.instance]
        blocks = source.held_blocks(request)
        target = self.instances[destination]
        if not target.reserve_blocks(blocks, self.now_s):
            return False
        migration = Migration(request, source.instance_id, destination, self.now_s)
        migration.copied_blocks = blocks
        migration.reserved_blocks = blocks
        request.migration = migration
        self.active_migrations[request.request_id] = migration
        self.migration_flag_changes[migration.source] += 1
        self.migrations_started += 1
        self.migrated_blocks += blocks
        duration = self.migration_time_s(blocks, source.instance_id, destination)
        self.events.push(self.now_s + duration, _STAGE, migration)
        return True

    # ----------------------------------------------------------------- migration stages
    def _abort(self, migration: Migration, at: float) -> None:
        request = migration.request
        request.migration = None
        del self.active_migrations[request.request_id]
        self.migration_flag_changes[migration.source] += 1
        destination = self.instances[migration.destination]
        destination.release_reserved(migration.reserved_blocks, at)
        migration.reserved_blocks = 0
        self.migrations_aborted += 1
        self.schedule_next_event(destination)

    def _stage_end(self, migration: Migration, at: float) -> None:
        request = migration.request
        if request.migration is not migration:
            return  # already aborted
        source = self.instances[migration.source]
        if request.state != DECODE or request.instance != migration.source:
            self._abort(migration, at)
            return
        source.sync(at)
        delta = source.held_blocks(request) - migration.copied_blocks
        destination = self.instances[migration.destination]
        if delta <= self.final_stage_max_blocks or migration.stage >= self.max_stages:
            # Last stage: reserve the increment plus the block the iteration in flight may add.
            extra = delta + 1
            if not destination.reserve_blocks(extra, at):
                self._abort(migration, at)
                return
            migration.reserved_blocks += extra
            migration.final = True
            source.request_detach(request, at)
            self.schedule_next_event(source)
            self.schedule_next_event(destination)
            return
        if not destination.reserve_blocks(delta, at):
            self._abort(migration, at)
            return
        migration.reserved_blocks += delta
        migration.copied_blocks += delta
        self.migrated_blocks += delta
        migration.stage += 1
        self.schedule_next_event(destination)
        duration = self.migration_time_s(delta, migration.source, migration.destination)
        self.events.push(at + duration, _STAGE, migration)

    def _migration_done(self, migration: Migration, at: float) -> None:
        request = migration.request
        assert request.state == DETACHED
        source = self.instances[migration.source]
        destination = self.instances[migration.destination]
        held = source.held_blocks(request)
        source.release_detached(request, at)
        destination.release_reserved(migration.reserved_blocks - held, at)
        request.migration = None
        del self.active_migrations[request.request_id]
        request.num_migrations += 1
        self.migrations_completed += 1
        self.migration_stall_s.append(at - request.last_token_s)
        destination.attach(request, at)
        self._after_instance(source, at)
        self._after_instance(destination, at)
