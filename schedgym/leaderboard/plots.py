"""The report's pictures (PNG bytes, matplotlib's Agg backend, no display needed).

Per environment: a bar chart of normalised scores with their 95% intervals, and its
characteristic picture: latency CDFs for the LLM environments, latency against load for SoCDAG,
the step-time breakdown for MeshAssign, validation error against training steps for
OnlineDataGen. All of it from rows (metrics and the per-episode curves stored with them).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from schedgym.core.policy import env_family
from schedgym.leaderboard.formatting import time_scale
from schedgym.leaderboard.scores import EnvScores
from schedgym.leaderboard.suites import Suite


def _figure(width_in: float, height_in: float) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def score_bars(scores: EnvScores) -> bytes | None:
    """Horizontal bars: each policy's normalised score and its interval; 1 = the reference."""
    ranked = [p for p in scores.policies if p.score is not None]
    if not ranked:
        return None
    ranked = ranked[::-1]  # best on top
    figure = _figure(6.4, 0.9 + 0.32 * len(ranked))
    axes = figure.add_subplot()
    values = np.array([p.score for p in ranked], dtype=np.float64)
    low = np.array([p.ci_low if p.ci_low is not None else p.score for p in ranked])
    high = np.array([p.ci_high if p.ci_high is not None else p.score for p in ranked])
    axes.barh(
        range(len(ranked)),
        values,
        xerr=np.vstack([values - low, high - values]),
        color=["#4c72b0" if p.baseline else "#dd8452" for p in ranked],
        capsize=3,
    )
    axes.set_yticks(range(len(ranked)), [p.policy for p in ranked])
    axes.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    axes.set_xlabel(f"score vs {scores.metric.reference} (95% CI; >1 is better)")
    axes.set_title(
        f"{scores.env_id.split('/')[-1]}: {scores.metric.key}"
        " (blue: baselines, orange: learned agents and entries)",
        fontsize=10,
    )
    return _png(figure)


def _plain_ticks(axis: Any) -> None:
    """Decimal tick labels (0.5, 2) on a log axis instead of 5x10^-1."""
    from matplotlib.ticker import ScalarFormatter

    for formatter, setter in ((ScalarFormatter(), axis.set_major_formatter),
                              (ScalarFormatter(), axis.set_minor_formatter)):  # fmt: skip
        formatter.set_scientific(False)
        setter(formatter)


def _policy_order(scores: EnvScores) -> list[str]:
    return [p.policy for p in scores.policies]


def _env_rows(rows: Sequence[dict[str, Any]], env_id: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["env_id"] == env_id]


def latency_cdfs(suite: Suite, scores: EnvScores, rows: Sequence[dict[str, Any]]) -> bytes | None:
    """Per scenario, each policy's latency CDF (quantiles averaged over seeds)."""
    mine = [r for r in _env_rows(rows, scores.env_id) if r.get("curves", {}).get("latency_cdf")]
    if not mine:
        return None
    scenarios = [s for s in scores.scenarios if any(r["scenario"] == s for r in mine)]
    figure = _figure(4.2 * len(scenarios), 3.4)
    kind = mine[0]["curves"]["latency_cdf"]["kind"]
    for index, scenario in enumerate(scenarios):
        axes = figure.add_subplot(1, len(scenarios), index + 1)
        for policy in _policy_order(scores):
            curves = [
                r["curves"]["latency_cdf"]
                for r in mine
                if r["scenario"] == scenario and r["policy"] == policy
            ]
            stacks = [c["values"] for c in curves if c.get("values")]
            if not stacks:
                continue
            values = np.mean(np.asarray(stacks, dtype=np.float64), axis=0)
            levels = np.asarray(curves[0]["levels_pct"], dtype=np.float64) / 100.0
            axes.plot(np.maximum(values, 1e-6), levels, label=policy, linewidth=1.2)
        axes.set_xscale("log")
        axes.set_xlabel(kind.replace("_s", " (s)"))
        axes.set_ylabel("fraction of samples")
        axes.set_title(scenario)
        axes.grid(alpha=0.3)
    figure.axes[-1].legend(fontsize=7, loc="lower right")
    return _png(figure)


def latency_against_load(
    suite: Suite, scores: EnvScores, rows: Sequence[dict[str, Any]]
) -> bytes | None:
    """SoCDAG: mean job latency of each policy against the arrival rate (jobs/ms)."""
    from schedgym.core.config import resolve_config
    from schedgym.envs.soc.env import SoCDAGEnv

    loads: dict[str, float] = {}
    for scenario in suite.scenarios:
        if scenario.env_id != scores.env_id:
            continue
        config = resolve_config(
            SoCDAGEnv.config_class, SoCDAGEnv.presets, None, scenario.preset, scenario.overrides
        )
        # Only the plain DS3 workload: noise or random DAGs are not points on the same curve.
        if config.workload == "ds3" and config.noise_std == 0 and config.profile_bias_std == 0:
            loads[scenario.name] = float(config.job_rate_per_ms)
    if len(loads) < 2:
        return None
    ordered = sorted(loads, key=loads.__getitem__)
    reference_mean = scores.stats[ordered[0]].get(scores.metric.reference)
    unit, factor = time_scale(reference_mean.mean if reference_mean else None, "us")
    figure = _figure(6.4, 4.0)
    axes = figure.add_subplot()
    for policy in _policy_order(scores):
        stats = [scores.stats[s].get(policy) for s in ordered]
        if any(s is None or s.mean is None for s in stats):
            continue
        means = np.array([s.mean for s in stats]) * factor  # type: ignore[union-attr]
        low = np.array([s.ci_low if s.ci_low is not None else s.mean for s in stats]) * factor  # type: ignore[union-attr]
        high = np.array([s.ci_high if s.ci_high is not None else s.mean for s in stats]) * factor  # type: ignore[union-attr]
        axes.errorbar(
            [loads[s] for s in ordered],
            means,
            yerr=np.vstack([means - low, high - means]),
            marker="o",
            capsize=3,
            label=policy,
        )
    axes.set_xlabel("job arrival rate (jobs/ms)")
    axes.set_ylabel(f"mean job latency ({unit})")
    axes.set_yscale("log")
    _plain_ticks(axes.yaxis)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("SoCDAG: latency against load (mean, 95% CI)")
    return _png(figure)


MESH_PARTS = (
    ("compute_frac", "compute"),
    ("exposed_comm_frac", "exposed communication"),
    ("offload_frac", "offload"),
    ("idle_frac", "idle"),
)


def step_time_breakdown(
    suite: Suite, scores: EnvScores, rows: Sequence[dict[str, Any]]
) -> bytes | None:
    """MeshAssign: each policy's mean step time split into compute, communication, offload and
    idle rank-time (fractions of the step, times the step time)."""
    mine = _env_rows(rows, scores.env_id)
    if not mine:
        return None
    policies = _policy_order(scores)
    figure = _figure(4.2 * len(scores.scenarios), 0.9 + 0.3 * len(policies) + 1.0)
    for index, scenario in enumerate(scores.scenarios):
        axes = figure.add_subplot(1, len(scores.scenarios), index + 1)
        left = np.zeros(len(policies))
        for key, label in MESH_PARTS:
            widths = []
            for policy in policies:
                picked = [
                    r["metrics"]
                    for r in mine
                    if r["scenario"] == scenario and r["policy"] == policy
                ]
                parts = [
                    (m.get(key) or 0.0) * (m.get("step_time_s") or 0.0)
                    for m in picked
                    if m.get("step_time_s") is not None
                ]
                widths.append(float(np.mean(parts)) if parts else 0.0)
            axes.barh(range(len(policies)), widths, left=left, label=label)
            left += np.asarray(widths)
        axes.set_yticks(range(len(policies)), policies)
        axes.set_xlabel("mean step time (s)")
        axes.set_title(scenario)
    figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    return _png(figure)


def error_against_steps(
    suite: Suite, scores: EnvScores, rows: Sequence[dict[str, Any]]
) -> bytes | None:
    """OnlineDataGen: validation MSE against training steps (median over seeds)."""
    mine = [r for r in _env_rows(rows, scores.env_id) if r.get("curves", {}).get("learning_curve")]
    if not mine:
        return None
    scenarios = [s for s in scores.scenarios if any(r["scenario"] == s for r in mine)]
    figure = _figure(4.6 * len(scenarios), 3.6)
    for index, scenario in enumerate(scenarios):
        axes = figure.add_subplot(1, len(scenarios), index + 1)
        for policy in _policy_order(scores):
            curves = [
                r["curves"]["learning_curve"]
                for r in mine
                if r["scenario"] == scenario and r["policy"] == policy
            ]
            if not curves:
                continue
            end = max(max(c["training_steps"]) for c in curves)
            grid = np.linspace(0.0, end, 40)
            interpolated = [
                np.interp(grid, c["training_steps"], [_pos(v) for v in c["val_mse"]])
                for c in curves
            ]
            axes.plot(grid, np.median(interpolated, axis=0), label=policy, linewidth=1.2)
        axes.set_yscale("log")
        axes.set_xlabel("training steps")
        axes.set_ylabel("validation MSE (fraction of range²)")
        axes.set_title(scenario)
        axes.grid(alpha=0.3)
    figure.axes[-1].legend(fontsize=7)
    return _png(figure)


def _pos(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) and value > 0 else math.nan


CHARACTERISTIC: dict[str, tuple[str, Callable[..., bytes | None]]] = {
    "SoCDAG": ("latency against load", latency_against_load),
    "LLMCluster": ("TTFT CDF", latency_cdfs),
    "PrefillChunk": ("TBT CDF", latency_cdfs),
    "PrefixBatch": ("request completion-time CDF", latency_cdfs),
    "MeshAssign": ("step-time breakdown", step_time_breakdown),
    "OnlineDataGen": ("validation error against training steps", error_against_steps),
}


def characteristic(
    suite: Suite, scores: EnvScores, rows: Sequence[dict[str, Any]]
) -> tuple[str, bytes | None]:
    """The environment's characteristic picture: (its title, PNG bytes or None)."""
    entry = CHARACTERISTIC.get(env_family(scores.env_id))
    if entry is None:
        return "", None
    title, draw = entry
    return title, draw(suite, scores, rows)
