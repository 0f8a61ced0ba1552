"""Text and timeline renderings of the PrefixBatch simulator."""

from __future__ import annotations

import numpy as np

from schedgym.core.render import gantt_rgb_array
from schedgym.envs.prefixbatch.simulator import PrefixBatchSimulator

# How many groups the timeline shows (those with the most recent activity).
TIMELINE_GROUPS = 16


def render_ansi(sim: PrefixBatchSimulator) -> str:
    """One line of engine and cache state, then the groups with running or pending requests."""
    inst = sim.instance
    prefix = inst.kv.prefix
    resident = prefix.resident_blocks if prefix is not None else 0
    lines = [
        f"t={sim.now_s:.2f}s released {sim.released}/{len(sim.requests)} finished "
        f"{sim.requests_completed} running {inst.num_running()} queued {len(inst.waiting)} "
        f"blocks used {inst.kv.used_blocks}/{inst.kv.capacity_blocks} (prefix cache {resident})"
    ]
    active = [g for g in range(sim.num_groups) if sim.group_running[g] or sim.group_pending[g]]
    for group in active[:12]:
        lines.append(
            f"  group {group:4d} prefix {int(sim.batch.group_prefix_tokens[group]):5d} tok "
            f"pending {int(sim.group_pending[group]):4d} running {int(sim.group_running[group]):3d}"
        )
    return "\n".join(lines)


def render_rgb_array(sim: PrefixBatchSimulator) -> np.ndarray:
    """Per group, a bar from its first admission to its last finish so far (coloured by group)."""
    spans: dict[int, list[float]] = {}
    for request in sim.requests:
        admitted = request.admitted_s
        if admitted != admitted:  # nan: not admitted yet
            continue
        group = sim.request_group[request.request_id]
        end = request.finish_s if request.finish_s == request.finish_s else sim.now_s
        span = spans.setdefault(group, [admitted, end])
        span[0] = min(span[0], admitted)
        span[1] = max(span[1], end)
    shown = sorted(spans, key=lambda g: spans[g][1])[-TIMELINE_GROUPS:]
    rows = [f"group {g}" for g in shown] or ["-"]
    bars = [
        (row, spans[g][0], max(spans[g][1], spans[g][0] + 1e-6), g) for row, g in enumerate(shown)
    ]
    title = f"PrefixBatch-v0 at t={sim.now_s:.2f} s ({sim.requests_completed} requests finished)"
    return gantt_rgb_array(rows, bars, title, "time (s)")
