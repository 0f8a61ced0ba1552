"""Text and Gantt-chart renderings of the SoCDAG simulator."""

from __future__ import annotations

import numpy as np

from schedgym.core.render import gantt_rgb_array
from schedgym.envs.soc.simulator import READY, SoCSimulator

# How many of the most recent executed tasks the Gantt chart shows.
GANTT_WINDOW_TASKS = 400


def render_ansi(sim: SoCSimulator) -> str:
    """One line of global state, then one line per PE (what it runs and until when)."""
    names = sim.platform.pe_names or tuple(str(p) for p in range(sim.num_pes))
    lines = [
        f"t={sim.now_us:.1f}us jobs: arrived {sim.jobs_arrived} completed {sim.jobs_completed} "
        f"in system {sim.jobs_in_system} backlog {len(sim.backlog)} "
        f"ready tasks {int((sim.node_state == READY).sum())}"
    ]
    for pe in range(sim.num_pes):
        node = int(sim.pe_node[pe])
        util = sim.pe_busy_us[pe] / sim.now_us if sim.now_us > 0 else 0.0
        if node < 0:
            doing = "idle"
        else:
            template = sim.template_of(node)
            task = node % sim.tasks_per_job
            doing = (
                f"job {sim.job_id_of(node)} {template.name}/{template.task_names[task]} "
                f"until ~{sim.node_expected_finish_us[node]:.1f}us"
            )
        lines.append(f"  {names[pe]:>8} util {util:5.1%}  {doing}")
    return "\n".join(lines)


def render_rgb_array(sim: SoCSimulator) -> np.ndarray:
    """A Gantt chart per PE of the most recent executed tasks, coloured by job."""
    names = list(sim.platform.pe_names or tuple(str(p) for p in range(sim.num_pes)))
    records = sim.task_records.recent(GANTT_WINDOW_TASKS)
    bars = [(r.pe, r.start_us, r.finish_us, r.job_id) for r in records]
    title = f"SoCDAG-v0 at t={sim.now_us:.0f} us ({sim.jobs_completed} jobs completed)"
    return gantt_rgb_array(names, bars, title, "time (us)")
