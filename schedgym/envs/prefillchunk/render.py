"""Text and timeline renderings of the PrefillChunk simulator."""

from __future__ import annotations

import numpy as np

from schedgym.core.render import gantt_rgb_array
from schedgym.envs.prefillchunk.simulator import PrefillChunkSimulator
from schedgym.serving.request import STATE_NAMES

# How many of the most recently arrived requests the timeline shows.
TIMELINE_REQUESTS = 24
# Colour keys: queued (arrival to first token) and generating (first token to last).
QUEUED, GENERATING = 3, 0


def render_ansi(sim: PrefillChunkSimulator) -> str:
    """One line of replica state, then one line per request with prefill work (oldest first)."""
    inst = sim.instance
    lines = [
        f"t={sim.now_s:.3f}s arrived {sim.requests_arrived} completed {sim.requests_completed} "
        f"decoding {inst.num_decoding} prefilling {len(inst.prefilling)} queued "
        f"{len(inst.waiting)} free blocks {inst.free_blocks}/{inst.kv.capacity_blocks} "
        f"last iteration {sim.last_iteration_s * 1e3:.1f} ms, {sim.last_violations} late tokens"
    ]
    for request in sim.queue_view(8):
        lines.append(
            f"  req {request.request_id:5d} {STATE_NAMES[request.state]:>8} prompt "
            f"{request.prompt_tokens:5d} left {request.remaining_prefill:5d} waited "
            f"{sim.now_s - request.arrival_s:.3f}s"
        )
    return "\n".join(lines)


def render_rgb_array(sim: PrefillChunkSimulator) -> np.ndarray:
    """A timeline of the most recent requests: queued (arrival to first token), generating."""
    first = max(0, sim.requests_arrived - TIMELINE_REQUESTS)
    shown = sim.requests[first : sim.requests_arrived]
    rows = [f"req {r.request_id}" for r in shown]
    bars = []
    now = sim.now_s
    for row, request in enumerate(shown):
        first_token = request.first_token_s
        if first_token != first_token:  # nan: still waiting for its first token
            bars.append((row, request.arrival_s, now, QUEUED))
            continue
        bars.append((row, request.arrival_s, first_token, QUEUED))
        end = request.finish_s if request.finish_s == request.finish_s else now
        bars.append((row, first_token, max(end, first_token), GENERATING))
    title = (
        f"PrefillChunk-v0 at t={now:.2f} s ({sim.requests_completed} done; blue: generating, "
        "red: queued)"
    )
    return gantt_rgb_array(rows or ["-"], bars, title, "time (s)")
