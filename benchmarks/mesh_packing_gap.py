"""Why the MeshAssign agent trails token-balanced packing at `uniform-short`: the numbers.

At the quick suite's `uniform-short` scenario (64 ranks of C = 65,536 tokens, a 4,194,304-token
batch of 1,024-8,192-token sequences, all fitting one rank) the batch fills the mesh to within a
few thousand tokens, so the step is fastest when every rank runs exactly one micro-batch: the
batch must be partitioned into 64 parts of at most C tokens each. Token-balanced packing plans
the whole batch with Karmarkar-Karp (KK) before placing anything and gets parts within a few
tokens of each other; a policy that places one sequence at a time (longest first) from the
current state behaves like LPT (each sequence on the least-loaded rank), whose parts differ by
about the smallest sequence (~1,000 tokens), so a few dozen ranks overflow into a second,
small micro-batch. Re-solving KK at every decision over the sequences still to place, with the
ranks' current loads as one pre-filled partition, is a state-only rule too, and it does no better
than LPT: the loads' spread is the largest difference, so KK pairs the current sequence with the
least-loaded rank every time. Best fit (each sequence on the fullest rank it still fits under C,
the least-loaded if none) overflows fewer ranks than LPT but still several: with under 100
tokens of slack per rank, only a whole-batch plan avoids every second micro-batch.

For each validation seed this prints the slack (``D x C`` minus the batch's tokens), the token
spread (max minus min per rank) and the ranks over C of KK, LPT, best fit and the re-solved KK,
then the mean step time and micro-batch count of token-balanced, ByteScale, the escalation teacher
and the shipped agent (``gnn``) on the same batches. Validation seeds only (never the test suites').

    .venv/bin/python benchmarks/mesh_packing_gap.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import heapq

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401
from schedgym.baselines.mesh import karmarkar_karp
from schedgym.core.rollout import run_episode
from schedgym.training.seeds import VALIDATION_SEED_BASE
from schedgym.training.teachers import make_teacher

ENV_ID = "schedgym/MeshAssign-v0"
SCENARIO = {"preset": "uniform-short", "global_batch_tokens": 4_194_304}
# The validation seeds MeshAssign's teacher and DAgger rounds were chosen on.
FIRST_SEED = VALIDATION_SEED_BASE + 100


def kk_part_with_loads(loads: np.ndarray, weights: np.ndarray) -> int:
    """The rank KK gives ``weights[0]`` when the ranks already hold ``loads``: the loads are one
    partial partition (one part per rank), every weight a singleton, differenced as usual."""
    parts = loads.size
    order = np.argsort(-loads, kind="stable")
    sums = [float(loads[r]) for r in order]
    members: list[list[int]] = [[-1 - int(r)] for r in order]
    heap = [(-(sums[0] - sums[-1]), -1, sums, members)]
    for i, w in enumerate(weights.tolist()):
        heap.append((-w, i, [w] + [0.0] * (parts - 1), [[i]] + [[] for _ in range(parts - 1)]))
    heapq.heapify(heap)
    counter = weights.size
    while len(heap) > 1:
        _, _, sums_a, members_a = heapq.heappop(heap)
        _, _, sums_b, members_b = heapq.heappop(heap)
        merged = sorted(
            (
                (sums_a[j] + sums_b[parts - 1 - j], members_a[j] + members_b[parts - 1 - j])
                for j in range(parts)
            ),
            key=lambda part: -part[0],
        )
        sums = [part[0] for part in merged]
        heapq.heappush(heap, (-(sums[0] - sums[-1]), counter, sums, [p[1] for p in merged]))
        counter += 1
    for part in heap[0][3]:
        if 0 in part:
            return next(-1 - tag for tag in part if tag < 0)
    raise AssertionError("item 0 is in no part")


def spreads(lengths: np.ndarray, ranks: int, capacity: float) -> dict[str, tuple[float, int]]:
    """(token spread, ranks over capacity) of KK, LPT, best fit and KK re-solved at every
    decision."""
    out = {}
    kk = np.bincount(karmarkar_karp(lengths, ranks), lengths, ranks)
    lpt = np.zeros(ranks)
    for s in lengths:
        lpt[np.argmin(lpt)] += s
    best_fit = np.zeros(ranks)
    for s in lengths:
        fits = np.flatnonzero(best_fit + s <= capacity)
        best_fit[fits[np.argmax(best_fit[fits])] if fits.size else np.argmin(best_fit)] += s
    resolved = np.zeros(ranks)
    for i in range(lengths.size):
        resolved[kk_part_with_loads(resolved, lengths[i:])] += lengths[i]
    rules = {"kk": kk, "lpt": lpt, "best-fit": best_fit, "kk-resolved": resolved}
    for name, loads in rules.items():
        out[name] = (float(loads.max() - loads.min()), int(np.count_nonzero(loads > capacity)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    policies = ["token-balanced", "bytescale", "bytescale-escalate", "gnn"]
    totals = {name: [0.0, 0] for name in policies}
    for seed in range(FIRST_SEED, FIRST_SEED + args.seeds):
        env = gym.make(ENV_ID, **SCENARIO)
        env.reset(seed=seed)
        sim = env.unwrapped.simulator
        lengths = sim.batch_lengths.astype(np.float64)
        slack = sim.num_ranks * sim.capacity_tokens - lengths.sum()
        parts = spreads(lengths, sim.num_ranks, sim.capacity_tokens)
        described = ", ".join(f"{k} {s:,.0f} ({n} over C)" for k, (s, n) in parts.items())
        print(f"seed {seed}: slack {slack:,.0f} tokens; spread {described}")
        for name in policies:
            metrics = run_episode(env, make_teacher(ENV_ID, name), seed).metrics
            totals[name][0] += metrics["step_time_s"]
            totals[name][1] += int(metrics["microbatches"])
        env.close()
    print(f"mean over {args.seeds} seeds: step time (s), micro-batches")
    for name, (step_s, microbatches) in totals.items():
        print(f"  {name:20s} {step_s / args.seeds:.4f}  {microbatches / args.seeds:.1f}")


if __name__ == "__main__":
    main()
