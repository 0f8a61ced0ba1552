"""Shared rendering helpers: a Gantt chart drawn with matplotlib's Agg backend into an RGB array."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gantt_rgb_array(
    rows: Sequence[str],
    bars: Sequence[tuple[int, float, float, int]],
    title: str,
    time_label: str,
    width_px: int = 960,
    height_px: int = 480,
) -> np.ndarray:
    """Draw bars ``(row, start, end, colour_key)`` on named rows; return ``(H, W, 3)`` uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 96
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    palette = [
        "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3",
        "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD",
    ]  # fmt: skip
    for row, start, end, key in bars:
        ax.barh(row, end - start, left=start, height=0.8, color=palette[key % len(palette)])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.invert_yaxis()
    ax.set_xlabel(time_label)
    ax.set_title(title)
    fig.tight_layout()
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
    return image
