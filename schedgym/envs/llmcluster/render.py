"""Text and timeline renderings of the LLMCluster simulator."""

from __future__ import annotations

import numpy as np

from schedgym.core.render import gantt_rgb_array
from schedgym.envs.llmcluster.simulator import DISPATCH, LLMClusterSimulator

# How many of the most recently completed requests the timeline shows.
TIMELINE_WINDOW_REQUESTS = 300


def render_ansi(sim: LLMClusterSimulator) -> str:
    """One line of global state, then one line per instance."""
    sim.sync()  # the instances' counters at now_s
    decision = "dispatch" if sim.decision_kind == DISPATCH else "migration"
    lines = [
        f"t={sim.now_s:.3f}s next decision: {decision} | requests arrived {sim.requests_arrived} "
        f"completed {sim.requests_completed} in system {sim.requests_in_system} | migrations "
        f"{sim.cluster.migrations_completed} (in flight {len(sim.cluster.active_migrations)})"
    ]
    for instance in sim.instances:
        used = instance.kv.used_blocks / instance.kv.capacity_blocks
        lines.append(
            f"  instance {instance.instance_id:>2}: running {instance.num_running():>3} "
            f"waiting {len(instance.waiting):>3}  KV {used:6.1%}  freeness "
            f"{sim.freeness(instance):8.1f}  last iteration "
            f"{instance.last_iteration_s * 1e3:6.1f} ms"
        )
    return "\n".join(lines)


def render_rgb_array(sim: LLMClusterSimulator) -> np.ndarray:
    """A timeline per instance of recently completed requests (queueing then service), coloured
    by priority class; the instance is where each request finished."""
    rows = [f"instance {i}" for i in range(len(sim.instances))]
    bars = []
    recent = sim.cluster.completed.recent
    for request in list(recent)[-TIMELINE_WINDOW_REQUESTS:]:
        bars.append((request.instance, request.arrival_s, request.first_token_s, 7))
        bars.append(
            (request.instance, request.first_token_s, request.finish_s, request.priority * 3)
        )
    title = (
        f"LLMCluster-v0 at t={sim.now_s:.2f} s ({sim.requests_completed} requests completed; "
        "grey: waiting for the first token)"
    )
    return gantt_rgb_array(rows, bars, title, "time (s)")
