"""Teachers for the behaviour-cloning warm start that are not leaderboard baselines.

A teacher is a :class:`~schedgym.core.policy.Policy` read from the simulator's public view, like
the baselines; it lives here because it is a training device, not a published policy the
leaderboard should rank. ``bc_policy`` in the hyperparameter file names either a registered
policy or one of these (``TEACHERS``); checkpoint metadata records which.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.baselines.mesh import bytescale_action
from schedgym.baselines.soc import etf_dispatch
from schedgym.core.policy import Policy, SimulatorPolicy, env_family, make_policy
from schedgym.envs.mesh.simulator import MeshSimulator
from schedgym.envs.soc.simulator import DONE, RUNNING, SoCSimulator


class ShortestRemainingWorkETF(SimulatorPolicy[SoCSimulator]):
    """ETF (DS3's earliest-finish pair rule) with jobs ranked by the work they have left.

    Every (ready task, capable PE) pair is keyed by its expected finish time plus
    ``work_weight`` x its job's remaining work (the expected time of the job's unfinished tasks
    on their fastest PE type, the expected time left of its running ones); the smallest key is
    scheduled first, with ETF's rules for busy PEs. With weight 0 this is ETF. Under load, mean
    job latency is dominated by queueing, and finishing the jobs closest to completion first
    (SRPT, Schrage 1968) frees their slots soonest: on SoCDAG `heavy` validation seeds the rule
    is ~21% below HEFT where plain ETF is ~4% below. ``work_weight`` 1.5 was chosen on
    validation seeds (10,000,000 to 10,000,003) among 0.25, 0.5, 1, 1.5, 2 and 3.
    """

    def __init__(self, work_weight: float = 1.5) -> None:
        self.work_weight = work_weight

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        fastest = np.where(np.isnan(sim.node_exec_us), np.inf, sim.node_exec_us).min(axis=1)
        left = np.maximum(sim.node_expected_finish_us - sim.now_us, 0.0)
        per_node = np.where(sim.node_state == RUNNING, left, fastest)
        live = (sim.slot_job_id[sim.node_job_slot] >= 0) & (sim.node_state != DONE)
        live &= np.isfinite(per_node)
        work = np.zeros(sim.config.max_active_jobs)
        np.add.at(work, sim.node_job_slot[live], per_node[live])
        penalty = self.work_weight * work[sim.node_job_slot]
        return etf_dispatch(sim, penalty)


class ByteScaleRollout(SimulatorPolicy[MeshSimulator]):
    """ByteScale improved by one step of rollout (the pilot method, Duin & Voss 1999; policy
    iteration's improvement step, Bertsekas' rollout algorithms).

    For the current sequence, the candidates are ByteScale's own degree (the smallest that
    fits) on its ``slots_at_smallest_degree`` earliest-finishing groups, and every larger valid
    degree on its earliest-finishing group. Each candidate is placed on a fork of the simulator
    and the rest of the batch is placed by ByteScale; the candidate with the shortest step time
    is taken, ByteScale's own choice unless another is strictly shorter. The batch's sequences
    are known when it is placed (the observation summarises them), so this reads the present
    state, not the future. Since ByteScale's choice is always a candidate, every batch's step
    time is at most ByteScale's. What it finds: a long sequence that would set the step time
    gets more ranks than it needs (a larger context-parallel degree), which ByteScale, giving
    every sequence the fewest ranks, never does: on `long-tail-heavy` validation seeds
    10,000,000 and 10,000,001 the step time falls 27% and 13%, on `uniform-short` 0.2%.
    """

    def __init__(self, slots_at_smallest_degree: int = 2) -> None:
        self.slots_at_smallest_degree = slots_at_smallest_degree

    def candidates(self, sim: MeshSimulator) -> list[int]:
        """The actions tried, ByteScale's first."""
        k_min, k_max = sim.degree_range()
        out: list[int] = []
        for k in range(k_min, k_max + 1):
            finish = sim.placement_finish_s(k)
            count = self.slots_at_smallest_degree if k == k_min else 1
            out += [sim.encode(k, int(slot)) for slot in np.argsort(finish, kind="stable")[:count]]
        return out

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        candidates = self.candidates(sim)
        best, best_s = candidates[0], batch_step_time_s(sim, candidates[0])
        for action in candidates[1:]:
            step_s = batch_step_time_s(sim, action)
            if step_s < best_s:
                best, best_s = action, step_s
        return best


def batch_step_time_s(sim: MeshSimulator, action: int) -> float:
    """The current batch's step time if ``action`` places the current sequence and ByteScale
    the rest (on a fork: ``sim`` is unchanged)."""
    fork = sim.fork()
    result = fork.place(action)
    while result is None:
        result = fork.place(bytescale_action(fork))
    return result.step_time_s


TEACHERS: dict[str, dict[str, type[Policy]]] = {
    "SoCDAG": {"etf-shortest-remaining": ShortestRemainingWorkETF},
    "MeshAssign": {"bytescale-rollout": ByteScaleRollout},
}


# Registered baselines whose action is a function of the current state alone (they keep no plan
# or learner built from their own past actions), checked by reading their act().
STATE_ONLY_BASELINES = {
    "SoCDAG": ("etf", "eft", "met", "fcfs"),
    "MeshAssign": ("bytescale",),
    "PrefillChunk": ("sarathi-512", "sarathi-2048", "vllm", "orca"),
    # BatchLLM's cursor only skips groups with nothing pending, which never come back.
    "PrefixBatch": ("batchllm",),
}


def labels_any_state(env_id: str, name: str) -> bool:
    """Whether teacher ``name`` is a function of the current state alone, so that it can label
    states another policy led to (DAgger): the teachers here and ``STATE_ONLY_BASELINES``.
    Other baselines may plan ahead from their own past actions (HEFT's per-PE plans)."""
    family = env_family(env_id)
    return name in TEACHERS.get(family, {}) or name in STATE_ONLY_BASELINES.get(family, ())


def make_teacher(env_id: str, name: str) -> Policy:
    """The teacher ``name``: one of ``TEACHERS`` for the env's family, else a registered policy."""
    teachers = TEACHERS.get(env_family(env_id), {})
    if name in teachers:
        return teachers[name]()
    return make_policy(env_id, name)


def state_only_teachers(env_id: str) -> list[str]:
    """The teachers ``labels_any_state`` accepts for ``env_id``."""
    family = env_family(env_id)
    return [*TEACHERS.get(family, {}), *STATE_ONLY_BASELINES.get(family, ())]
