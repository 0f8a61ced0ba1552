"""Baselines for LLMCluster: request dispatch (and live migration) across serving instances.

- ``round-robin``: instances in turn.
- ``random``: a uniformly random instance that is up.
- ``lor``: least outstanding requests (queued plus running), the load balancing of INFaaS
  (Romero et al., USENIX ATC 2021) as Llumnix' INFaaS++ baseline uses it.
- ``llumnix``: Llumnix (Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model
  Serving", OSDI 2024): dispatch to the instance with the highest *freeness* (free KV blocks per
  request once the queued requests' demand and a headroom for high-priority requests count as
  virtual usage), and at each migration tick migrate a request from a low-freeness instance (or
  one with preempted requests waiting) to a high-freeness one, the thresholds and metric
  variants as in the paper's code (see :class:`LlumnixPolicy`).
- ``llumnix-no-migration``: Llumnix' dispatch alone.

Every policy reads the simulator's instances at the decision time (queue lengths, blocks, batch
sizes); none reads output lengths or future arrivals. Besides ``act`` (Gymnasium actions), each
has ``choose_dispatch(sim)`` and ``choose_migration(sim)`` working on the simulator directly,
which the benchmark uses.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from schedgym.core.policy import SimulatorPolicy, register_policy
from schedgym.envs.llmcluster.simulator import DISPATCH, LLMClusterSimulator
from schedgym.serving.engine import ServingInstance
from schedgym.serving.request import Request

FAMILY = "LLMCluster"


class _ClusterPolicy(SimulatorPolicy[LLMClusterSimulator]):
    """Shared plumbing: turn simulator-level choices into the env's actions. These policies
    read the simulator, so rollouts skip building observations for them."""

    def reset(self, env: Any) -> None:
        """Nothing to reset by default."""

    @abstractmethod
    def choose_dispatch(self, sim: LLMClusterSimulator) -> int:
        """The instance the pending request goes to."""

    def choose_migration(self, sim: LLMClusterSimulator) -> tuple[Request, int] | None:
        """No migration unless a subclass migrates."""
        return None

    def act(self, observation: Any, env: Any) -> int:
        unwrapped = env.unwrapped
        sim = self.simulator(env)
        if sim.decision_kind == DISPATCH:
            return int(unwrapped.dispatch_action(self.choose_dispatch(sim)))
        choice = self.choose_migration(sim)
        if choice is None:
            return int(unwrapped.no_migration_action)
        return int(unwrapped.migration_action(*choice))


class RoundRobinPolicy(_ClusterPolicy):
    """Instances in turn (skipping any that is down)."""

    def __init__(self) -> None:
        self._next = 0

    def reset(self, env: Any) -> None:
        self._next = 0

    def choose_dispatch(self, sim: LLMClusterSimulator) -> int:
        n = len(sim.instances)
        for offset in range(n):
            candidate = (self._next + offset) % n
            if sim.up[candidate]:
                self._next = candidate + 1
                return candidate
        raise AssertionError("no instance is up")  # pragma: no cover


class RandomPolicy(_ClusterPolicy):
    """A uniformly random instance that is up; never migrates."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def reset(self, env: Any) -> None:
        self._rng = np.random.default_rng(self.seed)

    def choose_dispatch(self, sim: LLMClusterSimulator) -> int:
        up = np.flatnonzero(sim.up)
        return int(up[self._rng.integers(up.size)])


class LeastOutstandingPolicy(_ClusterPolicy):
    """INFaaS-style load balancing: the instance with the fewest queued plus running requests
    (ties to the lowest index)."""

    def choose_dispatch(self, sim: LLMClusterSimulator) -> int:
        best, best_load = -1, 0
        for instance in sim.instances:
            if not sim.up[instance.instance_id]:
                continue
            load = instance.num_outstanding()
            if best < 0 or load < best_load:
                best, best_load = instance.instance_id, load
        return best


class LlumnixPolicy(_ClusterPolicy):
    """Llumnix (OSDI 2024): freeness-based dispatch and load-balancing migration.

    Freeness is Llumnix' load metric: an instance's KV capacity minus its requests' *virtual
    usage*, divided by the number of requests sharing it (free blocks per request, roughly the
    decode steps the batch can still take). Virtual usage is the blocks held, plus the demand
    of queued requests, plus a headroom for high-priority requests (Sun et al., Section 4.4.1).
    The two uses differ as in the paper's code (AlibabaPAI/llumnix, metric ``remaining_steps``):

    - dispatch: every queued request's demand counts, and the divisor counts running plus
      queued requests; the request goes to the freest instance.
    - migration (de-fragmentation): only the head-of-line queued request's demand counts (it
      is the one blocked by memory) and the divisor adds one when the queue is non-empty. At
      each tick, instances below ``migrate_out_freeness``, or with a preempted request waiting
      to be recomputed, are sources; instances above ``migrate_in_freeness`` with no preempted
      request waiting are destinations; the lowest-freeness source pairs with the
      highest-freeness destination, and so on. Llumnix' code uses one threshold for both
      (``--migrate-out-threshold``, default 3 blocks per request), so that is the default.
    - the migrated request: normal priority before high, then the fewest KV blocks (the
      cheapest, shortest copy; Llumnix' SJF choice).

    Args:
        migrate: whether to migrate at ticks (``False``: ``llumnix-no-migration``).
        migrate_out_freeness: an instance below this migration freeness is a source.
        migrate_in_freeness: an instance above this migration freeness is a destination.
        headroom_fraction: virtual usage each high-priority request on an instance adds
            (queued, running or arriving by migration), as a fraction of the KV capacity:
            Llumnix' priority headroom, part of a high-priority request's virtual usage
            (Section 4.4.1), so that normal requests are dispatched elsewhere and migrated away
            and its instance stays lightly loaded. Per request, as the paper defines it: an
            instance-wide headroom applied to every instance holding any high-priority
            request, as this baseline had it, is uniform once each instance holds one and
            separates nothing. 0.2 (a fifth of an instance's cache per request) separates high-
            from normal-priority TBT on ``priority-mix``; 0.5 makes the instances holding two
            such requests migration sources that evict their own high-priority requests.
    """

    def __init__(
        self,
        migrate: bool = True,
        migrate_out_freeness: float = 3.0,
        migrate_in_freeness: float = 3.0,
        headroom_fraction: float = 0.2,
    ) -> None:
        self.migrate = migrate
        self.migrate_out_freeness = migrate_out_freeness
        self.migrate_in_freeness = migrate_in_freeness
        self.headroom_fraction = headroom_fraction

    def _headroom(self, sim: LLMClusterSimulator, instance: ServingInstance) -> float:
        if self.headroom_fraction <= 0 or sim.config.high_priority_share <= 0:
            return 0.0
        high = sum(1 for r in instance.decoding.values() if r.priority)
        for pool in (instance.prefilling, instance.waiting, instance.incoming):
            high += sum(1 for r in pool if r.priority)
        return self.headroom_fraction * sim.capacity_blocks * high

    def _freeness(
        self, sim: LLMClusterSimulator, instance: ServingInstance, dispatch: bool
    ) -> float:
        if not sim.up[instance.instance_id]:
            return -np.inf
        used = instance.used_blocks_at(sim.now_s)
        waiting = instance.waiting
        if dispatch:
            queued_blocks = instance.waiting_blocks
            requests = instance.num_running() + len(waiting)
        else:
            queued_blocks = instance.admission_blocks(waiting[0]) if waiting else 0
            requests = instance.num_running() + (1 if waiting else 0)
        free = sim.capacity_blocks - used - queued_blocks - self._headroom(sim, instance)
        if requests == 0:
            return np.inf if free >= 0 else free
        return free / requests

    def freeness_of(self, sim: LLMClusterSimulator) -> list[float]:
        """Each instance's dispatch freeness as this policy sees it (with priority headroom)."""
        return [self._freeness(sim, instance, True) for instance in sim.instances]

    def migration_freeness_of(self, sim: LLMClusterSimulator) -> list[float]:
        """Each instance's migration freeness (head-of-line demand only)."""
        return [self._freeness(sim, instance, False) for instance in sim.instances]

    def choose_dispatch(self, sim: LLMClusterSimulator) -> int:
        freeness = self.freeness_of(sim)
        return int(np.argmax(freeness))

    def choose_migration(self, sim: LLMClusterSimulator) -> tuple[Request, int] | None:
        if not self.migrate:
            return None
        freeness = self.migration_freeness_of(sim)
        preempted = [_has_preempted_waiting(instance) for instance in sim.instances]
        order = sorted(range(len(freeness)), key=lambda i: freeness[i])
        sources = [
            i
            for i in order
            if sim.up[i] and (freeness[i] < self.migrate_out_freeness or preempted[i])
        ]
        destinations = [
            i
            for i in reversed(order)
            if sim.up[i] and freeness[i] > self.migrate_in_freeness and not preempted[i]
        ]
        # Pair the lowest-freeness source with the highest-freeness destination, and so on.
        for source, destination in zip(sources, destinations, strict=False):
            if source == destination or freeness[source] >= freeness[destination]:
                # Migration moves load from a lower- to a higher-freeness instance only.
                continue
            instance = sim.instances[source]
            for request in sim.migration_candidates(instance):
                if sim.cluster.can_migrate(request, destination):
                    return request, destination
        return None


def _has_preempted_waiting(instance: ServingInstance) -> bool:
    """Whether a preempted request waits to be recomputed on ``instance`` (Llumnix' "killed"
    requests: such an instance is always a migration source, never a destination)."""
    for request in instance.waiting:
        if request.num_preemptions:
            return True
        if not request.priority:
            # Preempted requests re-queue at the front of their class: the rest are new.
            return False
    return False


for _name, _factory, _description in (
    ("round-robin", RoundRobinPolicy, "Instances in turn"),
    ("random", RandomPolicy, "A uniformly random instance"),
    ("lor", LeastOutstandingPolicy, "Least outstanding requests (INFaaS++-style balancing)"),
    ("llumnix", LlumnixPolicy, "Llumnix: freeness dispatch plus live migration (OSDI 2024)"),
    (
        "llumnix-no-migration",
        lambda: LlumnixPolicy(migrate=False),
        "Llumnix' freeness-based dispatch without migration",
    ),
):
    register_policy(FAMILY, _name, _factory, _description)


def run_on_simulator(sim: LLMClusterSimulator, policy: _ClusterPolicy) -> None:
    """Drive ``sim`` to its end with ``policy``'s simulator-level choices (no observations)."""
    while not sim.done:
        if sim.decision_kind == DISPATCH:
            sim.dispatch(policy.choose_dispatch(sim))
        else:
            choice = policy.choose_migration(sim)
            if choice is None:
                sim.migrate(None)
            else:
                sim.migrate(*choice)
