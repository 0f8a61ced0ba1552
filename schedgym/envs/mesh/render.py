"""Text and Gantt-chart renderings of the MeshAssign simulator."""

from __future__ import annotations

import numpy as np

from schedgym.core.render import gantt_rgb_array
from schedgym.envs.mesh.simulator import MeshSimulator

# Ranks drawn in the Gantt chart and listed in text (a 1024-GPU mesh would be unreadable).
MAX_RANKS_SHOWN = 64


def render_ansi(sim: MeshSimulator) -> str:
    """One line of batch state, then one line per rank (first ranks only on large meshes)."""
    placed = sim.cursor
    head = (
        f"batch {min(sim.batch_index + 1, sim.config.num_batches)}/{sim.config.num_batches}: "
        f"{placed}/{sim.batch_size} sequences placed, latest rank {sim.finish_s.max():.2f}s, "
        f"ideal step {sim.ideal_step_s:.2f}s"
    )
    if not sim.done:
        k_min, k_max = sim.degree_range()
        head += (
            f"; next {sim.current_tokens} tokens, degree {sim.degrees[k_min]}..{sim.degrees[k_max]}"
        )
    lines = [head]
    shown = min(sim.num_ranks, MAX_RANKS_SHOWN)
    for rank in range(shown):
        lines.append(
            f"  rank {rank:4d} node {sim.rank_node[rank]:3d}  finish {sim.finish_s[rank]:8.2f}s  "
            f"tokens {sim.tokens_held[rank]:10.0f}  micro-batches {sim.num_microbatches[rank]:3d}"
            f"  exposed comm {sim.exposed_comm_s[rank]:6.2f}s  waiting {sim.idle_s[rank]:6.2f}s"
        )
    if shown < sim.num_ranks:
        lines.append(f"  ... {sim.num_ranks - shown} more ranks")
    return "\n".join(lines)


def render_rgb_array(sim: MeshSimulator) -> np.ndarray:
    """Gantt chart of the micro-batches per rank (the batch in progress, else the last one);
    bars are coloured by context-parallel degree."""
    if sim.mb_start_s:
        records = list(
            zip(sim.mb_first_rank, sim.mb_degree, sim.mb_start_s, sim.mb_end_s, strict=True)
        )
    else:
        records = [(r0, c, start, end) for r0, c, start, end, _ in sim.last_microbatches]
    shown = min(sim.num_ranks, MAX_RANKS_SHOWN)
    bars = []
    for first, degree, start, end in records:
        colour = degree.bit_length() - 1
        for rank in range(first, min(first + degree, shown)):
            bars.append((rank, start, end, colour))
    rows = [f"r{rank}" for rank in range(shown)]
    title = f"MeshAssign-v0 batch {sim.batch_index} (colour = CP degree)"
    return gantt_rgb_array(rows, bars, title, "time (s)")
