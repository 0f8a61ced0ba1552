"""Text and timeline renderings of the OnlineDataGen simulator."""

from __future__ import annotations

import numpy as np

from schedgym.core.render import gantt_rgb_array
from schedgym.envs.datagen.simulator import DataGenSimulator


def render_ansi(sim: DataGenSimulator) -> str:
    """Clock and budget, errors, buffer, then one line per region."""
    config = sim.config
    buffer = sim.buffer
    buffer_text = (
        f"{sim.buffer_kind} {buffer.size}/{buffer.capacity} (watermark {buffer.watermark})"
        if buffer is not None
        else "not chosen"
    )
    lines = [
        f"t={sim.now_s:.4f}s compute {sim.compute_used_core_s:.3f}/"
        f"{config.compute_budget_core_s:.3f} core-s, split {sim.active_workers} solver / "
        f"{sim.trainer_cores} trainer cores, acquisition {sim.acquisition}",
        f"  val mse {sim.scores.mse:.3e} p99 err {sim.scores.p99_err:.3e} "
        f"(hard: mse {sim.scores.mse_hard:.3e} p99 {sim.scores.p99_err_hard:.3e})",
        f"  simulations {sim.unique_simulations} (cancelled {sim.simulations_cancelled}), "
        f"training steps {sim.training_steps}, samples trained {sim.samples_trained}",
        f"  buffer {buffer_text}",
    ]
    counts = buffer.region_counts() if buffer is not None else np.zeros(sim.num_regions, int)
    for region in range(sim.num_regions):
        loss = f"{sim.region_loss[region]:.3e}" if sim.region_has_loss[region] else "-"
        lines.append(
            f"  region {region}: simulations {sim.region_simulations[region]:>6} "
            f"in buffer {counts[region]:>6} train loss {loss:>9} "
            f"val mse {sim.scores.region_mse[region]:.3e}"
        )
    return "\n".join(lines)


def render_rgb_array(sim: DataGenSimulator) -> np.ndarray:
    """A timeline of the recent simulations per worker (coloured by region) and of the
    trainer's busy spans."""
    cores = sim.config.total_cores
    rows = [f"worker {w}" for w in range(cores)] + ["trainer"]
    bars = [(row, start, end, colour) for row, start, end, colour in sim.timeline]
    title = (
        f"OnlineDataGen-v0 at t={sim.now_s:.3f} s: val mse {sim.scores.mse:.2e}, "
        f"{sim.unique_simulations} simulations"
    )
    return gantt_rgb_array(rows, bars, title, "simulated time (s)")
