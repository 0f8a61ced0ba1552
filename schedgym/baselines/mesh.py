"""Baselines for MeshAssign: how long-context trainers place variable-length sequences on a mesh.

Every policy reads the simulator's view (``env.unwrapped.simulator``): the current global batch's
lengths (known to a data loader when the step starts), the ranks' timelines so far, and the
deterministic training cost model. Registered as ``static``, ``token-balanced``, ``balanced-cp``,
``bytescale`` and ``random``.

References:
    ByteScale: H. Ge, J. Feng, Q. Huang, F. Fu, X. Nie, L. Zuo, H. Lin, B. Cui, X. Liu,
    "ByteScale: Efficient Scaling of LLM Training with a 2048K Context Length on More Than
    12,000 GPUs", arXiv:2502.21231, 2025.
    Megatron-LM context parallelism: NVIDIA Megatron-Core, ``context_parallel_size`` with
    ring attention (H. Liu, M. Zaharia, P. Abbeel, "Ring Attention with Blockwise Transformers
    for Near-Infinite Context", ICLR 2024).
    Karmarkar-Karp: N. Karmarkar, R. M. Karp, "The differencing method of set partitioning",
    UC Berkeley Tech. Rep. UCB/CSD-83-113, 1982; multiway form as in R. E. Korf, "Multi-way
    number partitioning", IJCAI 2009. Used for sequence balancing by packing-based trainers
    (e.g. verl's ``seqlen_balancing``).
"""

from __future__ import annotations

import heapq
import math
from abc import abstractmethod
from typing import Any

import numpy as np

from schedgym.baselines.common import RandomMaskedPolicy
from schedgym.core.policy import SimulatorPolicy, register_policy
from schedgym.envs.mesh.simulator import MeshSimulator

FAMILY = "MeshAssign"


def _degree_index_for(sim: MeshSimulator, seq_tokens: int, capacity_tokens: float) -> int:
    """Smallest power-of-two degree whose shard fits ``capacity_tokens``, within the mask."""
    need = math.ceil(seq_tokens / capacity_tokens)
    k_min, k_max = sim.degree_range(seq_tokens)
    return min(max((need - 1).bit_length(), k_min), k_max)


def karmarkar_karp(weights: np.ndarray, num_parts: int) -> np.ndarray:
    """Multiway Karmarkar-Karp (largest differencing) partition of ``weights``.

    Every item starts as a partial partition with the item in one part; the two partial
    partitions with the largest spread (max minus min part sum) are merged by pairing the heaviest
    part of one with the lightest of the other, until one partition is left.

    Returns:
        ``(n,)`` int64: the part of each item.
    """
    n = weights.size
    if num_parts <= 1 or n == 0:
        return np.zeros(n, np.int64)
    heap: list[tuple[float, int, list[float], list[list[int]]]] = []
    for i in range(n):
        sums = [float(weights[i])] + [0.0] * (num_parts - 1)
        members: list[list[int]] = [[i]] + [[] for _ in range(num_parts - 1)]
        heap.append((-float(weights[i]), i, sums, members))
    heapq.heapify(heap)
    counter = n
    while len(heap) > 1:
        _, _, sums_a, members_a = heapq.heappop(heap)
        _, _, sums_b, members_b = heapq.heappop(heap)
        # Both are kept sorted heaviest first: pair a's heaviest with b's lightest.
        merged = [
            (sums_a[j] + sums_b[num_parts - 1 - j], members_a[j] + members_b[num_parts - 1 - j])
            for j in range(num_parts)
        ]
        merged.sort(key=lambda part: -part[0])
        sums = [part[0] for part in merged]
        members = [part[1] for part in merged]
        heapq.heappush(heap, (-(sums[0] - sums[-1]), counter, sums, members))
        counter += 1
    assignment = np.zeros(n, np.int64)
    for part, items in enumerate(heap[0][3]):
        assignment[items] = part
    return assignment


class _BatchPlanPolicy(SimulatorPolicy[MeshSimulator]):
    """A policy that plans the whole batch when it starts, then replays the plan."""

    def __init__(self) -> None:
        self._plan: list[int] = []
        self._plan_batch = -1

    def reset(self, env: Any) -> None:
        self._plan = []
        self._plan_batch = -1

    @abstractmethod
    def _make_plan(self, sim: MeshSimulator) -> list[int]:
        """One action per sequence of the current batch, in presentation order."""

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        if self._plan_batch != sim.batch_index or len(self._plan) != sim.batch_size:
            self._plan = self._make_plan(sim)
            self._plan_batch = sim.batch_index
        return self._plan[sim.cursor]


class StaticMeshPolicy(_BatchPlanPolicy):
    """Static DP x CP mesh (Megatron-LM style), the baseline of ByteScale (Sec. 2-3).

    The context-parallel degree is fixed for the whole run, sized for the longest sequence the
    data can hold (the context window): ``cp = 2^ceil(log2(window / C))``, ``dp = D / cp``. Every
    sequence, short or long, is split over its replica's ``cp`` ranks. Packing is greedy: each
    sequence (longest first) goes to the replica holding the fewest tokens so far, and within a
    replica consecutive sequences pack into micro-batches of up to ``C`` tokens per rank. A
    sequence shorter than ``cp`` tokens uses the first ranks of its replica.
    """

    def _make_plan(self, sim: MeshSimulator) -> list[int]:
        window = sim.config.longest_sequence_tokens
        k_static = _degree_index_for(sim, window, sim.capacity_tokens)
        k_static = max(k_static, sim.degree_range(window)[0])
        dp = sim.num_ranks // sim.degrees[k_static]
        # A heap of (tokens, replica) gives the least-loaded replica, lowest index on ties.
        heap = [(0, replica) for replica in range(dp)]
        plan = []
        for s in sim.batch_lengths.tolist():
            load, replica = heapq.heappop(heap)
            heapq.heappush(heap, (load + s, replica))
            plan.append(_replica_action(sim, s, k_static, replica))
        return plan


def _replica_action(sim: MeshSimulator, seq_tokens: int, k: int, replica: int) -> int:
    """Action placing a sequence on DP replica ``replica`` of a degree-``2^k`` mesh."""
    k_use = min(k, sim.degree_range(seq_tokens)[1])
    slot = replica * (sim.degrees[k] // sim.degrees[k_use])
    return sim.encode(k_use, slot)


class TokenBalancedPolicy(_BatchPlanPolicy):
    """Token-balanced packing on the static mesh (what packing-based trainers do).

    Same DP x CP mesh as :class:`StaticMeshPolicy`, but the batch's sequences are partitioned over
    the DP replicas by multiway Karmarkar-Karp on token counts, so every replica gets nearly the
    same number of tokens; within a replica, sequences (longest first) pack into micro-batches of
    up to ``C`` tokens per rank. Balances tokens, not compute: attention is quadratic in length.
    """

    def _make_plan(self, sim: MeshSimulator) -> list[int]:
        window = sim.config.longest_sequence_tokens
        k_static = _degree_index_for(sim, window, sim.capacity_tokens)
        k_static = max(k_static, sim.degree_range(window)[0])
        dp = sim.num_ranks // sim.degrees[k_static]
        parts = karmarkar_karp(sim.batch_lengths.astype(np.float64), dp)
        return [
            _replica_action(sim, int(s), k_static, int(p))
            for s, p in zip(sim.batch_lengths.tolist(), parts.tolist(), strict=True)
        ]


class BalancedCPPolicy(_BatchPlanPolicy):
    """Balanced-CP greedy (Megatron-style dynamic context parallelism).

    Each sequence gets the smallest power-of-two CP degree whose shard fits ``C`` (no offload);
    its workload on each of its ranks is estimated as ``s^2 / c`` (attention dominates long
    sequences). Sequences, longest first, go to the aligned group of that degree whose most
    loaded member is least loaded. Then, while the most and least loaded ranks differ by more than
    5% of the maximum, a sequence is moved off a group holding the most loaded rank onto the
    least-loaded group of the same degree whenever that lowers the maximum; it stops when no move
    helps.
    """

    TOLERANCE = 0.05

    def _make_plan(self, sim: MeshSimulator) -> list[int]:
        lengths = sim.batch_lengths.astype(np.float64)
        n, d = lengths.size, sim.num_ranks
        ks = [_degree_index_for(sim, int(s), sim.capacity_tokens) for s in lengths.astype(np.int64)]
        degrees = np.array([sim.degrees[k] for k in ks])
        work = lengths * lengths / degrees
        load = np.zeros(d)
        slots = np.zeros(n, np.int64)
        for i in range(n):
            c = int(degrees[i])
            slot = int(np.argmin(load.reshape(-1, c).max(axis=1)))
            slots[i] = slot
            load[slot * c : slot * c + c] += work[i]
        for _ in range(4 * n):
            top = int(np.argmax(load))
            if load[top] - load.min() <= self.TOLERANCE * load[top]:
                break
            if not self._improve(load, top, degrees, slots, work):
                break
        return [sim.encode(k, int(slot)) for k, slot in zip(ks, slots.tolist(), strict=True)]

    @staticmethod
    def _improve(
        load: np.ndarray, top: int, degrees: np.ndarray, slots: np.ndarray, work: np.ndarray
    ) -> bool:
        """Move the heaviest sequence on the busiest rank that lowers the maximum; False if none."""
        peak = load[top]
        on_top = np.flatnonzero((slots * degrees <= top) & (top < (slots + 1) * degrees))
        for i in on_top[np.argsort(-work[on_top], kind="stable")].tolist():
            c = int(degrees[i])
            groups = load.reshape(-1, c).max(axis=1)
            groups[slots[i]] = np.inf
            target = int(np.argmin(groups))
            if groups[target] + work[i] < peak:
                load[slots[i] * c : slots[i] * c + c] -= work[i]
                load[target * c : target * c + c] += work[i]
                slots[i] = target
                return True
        return False


class ByteScalePolicy(SimulatorPolicy[MeshSimulator]):
    """ByteScale: data-aware sharding plus the balance scheduler (Ge et al. 2025, Sec. 4-5).

    Data-aware sharding (Hybrid Data Parallelism): each sequence gets the fewest ranks it needs,
    the smallest power of two whose shard fits a rank (counting the extra room of selective
    activation offload when it is allowed), anywhere in the mesh, so short sequences run on one
    rank with no communication and ring-attention traffic stays inside each long sequence's own
    group. Balance scheduler: sequences, longest first, go to the group that will finish them
    earliest, using the profiled cost model (compute with its quadratic attention, exposed
    communication) rather than token counts; ranks holding long sequences therefore receive few
    micro-batches and ranks with short sequences many, so compute, not tokens, is balanced
    across ranks before the optimizer step.
    """

    def reset(self, env: Any) -> None:
        pass

    def act(self, observation: Any, env: Any) -> int:
        return bytescale_action(self.simulator(env))


def bytescale_action(sim: MeshSimulator) -> int:
    """ByteScale's placement of the current sequence: its smallest valid degree, on the group
    of that degree that finishes it earliest."""
    k = sim.degree_range()[0]
    finish = sim.placement_finish_s(k)
    return sim.encode(k, int(np.argmin(finish)))


for _name, _factory, _description in (
    (
        "static",
        StaticMeshPolicy,
        "Static DP x CP mesh sized for the context window, greedy packing",
    ),
    ("token-balanced", TokenBalancedPolicy, "Static mesh, Karmarkar-Karp token balancing over DP"),
    ("balanced-cp", BalancedCPPolicy, "Smallest fitting CP, s^2/c least-loaded, 5% rebalancing"),
    ("bytescale", ByteScalePolicy, "ByteScale: data-aware sharding + balance scheduler (2025)"),
    ("random", RandomMaskedPolicy, "Uniformly random valid (degree, group)"),
):
    register_policy(FAMILY, _name, _factory, _description)
