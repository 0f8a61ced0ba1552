"""The leaderboard report of a results folder: ``leaderboard.json``, ``LEADERBOARD.md`` and a
self-contained ``index.html`` (tables and PNG plots embedded as base64; no network access).

Everything is computed from the rows file, so a report can be rebuilt at any time
(``schedgym leaderboard --report-only``) and always matches the rows that ``validate`` replays.
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import schedgym
from schedgym.core.jsonio import write_json_atomic, write_text_atomic
from schedgym.leaderboard.formatting import Cell, Table, interval, quantity, score_text, sig3
from schedgym.leaderboard.plots import characteristic, score_bars
from schedgym.leaderboard.policies import is_baseline, policy_kind
from schedgym.leaderboard.scores import EnvScores, suite_scores
from schedgym.leaderboard.suites import Suite, get_suite

# The learned agents' column in the summary: filled once a `gnn` policy is registered and runs.
LEARNED_POLICY = "gnn"


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote, and the summary table as Markdown."""

    json: Path
    markdown: Path
    html: Path
    summary_markdown: str


def _short(env_id: str) -> str:
    return env_id.split("/")[-1]


def baselines_of(rows: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
    """env id -> the policies among ``rows`` that are shipped heuristic baselines."""
    out: dict[str, set[str]] = {}
    for row in rows:
        env_id, policy = row["env_id"], row["policy"]
        names = out.setdefault(env_id, set())
        if policy not in names and _is_baseline_safe(env_id, policy):
            names.add(policy)
    return out


def _is_baseline_safe(env_id: str, policy: str) -> bool:
    try:
        return is_baseline(env_id, policy)
    except Exception:  # a policy registered in an earlier run but not here: not a baseline
        return False


def _kind(env_id: str, policy: str) -> str:
    try:
        return policy_kind(env_id, policy)
    except Exception:  # a policy of an earlier run that is not registered here
        return "entry"


def env_table(scores: EnvScores) -> Table:
    """One environment: policies ranked by score, their win rate, and each scenario's mean."""
    metric = scores.metric
    arrow = "lower is better" if metric.lower_is_better else "higher is better"
    header = [
        "rank",
        "policy",
        f"score vs {metric.reference} [95% CI]",
        "win rate vs best baseline",
    ]
    header += [f"{s}: {metric.key}" for s in scores.scenarios]
    best_in: dict[str, str | None] = {}
    for scenario in scores.scenarios:
        means = {p: st.mean for p, st in scores.stats[scenario].items() if st.mean is not None}
        pick = min if metric.lower_is_better else max
        best_in[scenario] = pick(means, key=means.__getitem__) if means else None
    best_score = scores.policies[0].policy if scores.policies and scores.policies[0].score else None
    table = Table(
        title=f"{_short(scores.env_id)} ({metric.key}, {arrow})",
        header=header,
        caption=(
            f"Scores: {metric.reference} = 1, above 1 is better; geometric mean over "
            f"{len(scores.scenarios)} scenarios x {len(scores.seeds)} seeds, 95% bootstrap "
            f"interval over seeds. Scenario columns: mean over seeds [95% CI]. "
            f"Best baseline: {scores.best_baseline or '—'}."
        ),
    )
    for rank, entry in enumerate(scores.policies, start=1):
        name = entry.policy + ("" if entry.baseline else f" ({_kind(scores.env_id, entry.policy)})")
        win = (
            f"{sig3(100 * entry.win_rate)}% vs {entry.opponent}"
            if entry.win_rate is not None
            else "—"
        )
        cells = [
            Cell(str(rank) if entry.score is not None else "—"),
            Cell(name, entry.policy == best_score),
            Cell(score_text(entry.score, entry.ci_low, entry.ci_high), entry.policy == best_score),
            Cell(win),
        ]
        for scenario in scores.scenarios:
            stat = scores.stats[scenario].get(entry.policy)
            if stat is None or stat.mean is None:
                cells.append(Cell("—"))
                continue
            text = quantity(stat.mean, metric.unit)
            bracket = interval(stat.ci_low, stat.ci_high, metric.unit, stat.mean)
            cells.append(Cell(f"{text} {bracket}".strip(), best_in[scenario] == entry.policy))
        table.rows.append(cells)
    return table


def summary_table(all_scores: Sequence[EnvScores], suite: Suite) -> Table:
    """One line per environment: the best two policies, the best one's win rate, the learned
    agent's score when it ran."""
    table = Table(
        title=f"Summary: suite {suite.name} v{suite.version}",
        header=[
            "environment",
            "primary metric",
            "reference",
            "best policy",
            "score [95% CI]",
            "runner-up",
            "score [95% CI]",
            "best's paired win rate",
            f"{LEARNED_POLICY} score",
        ],
        caption=(
            f"{len(suite.seeds)} test seeds per scenario; scores are normalised to the reference "
            "(1 = reference, above 1 is better)."
        ),
    )
    for scores in all_scores:
        ranked = [p for p in scores.policies if p.score is not None]
        first = ranked[0] if ranked else None
        second = ranked[1] if len(ranked) > 1 else None
        learned = next((p for p in scores.policies if p.policy == LEARNED_POLICY), None)
        metric = scores.metric
        direction = "↓" if metric.lower_is_better else "↑"
        table.rows.append(
            [
                Cell(_short(scores.env_id)),
                Cell(f"{metric.key} {direction}"),
                Cell(metric.reference),
                Cell(first.policy if first else "—", True),
                Cell(score_text(first.score, first.ci_low, first.ci_high) if first else "—", True),
                Cell(second.policy if second else "—"),
                Cell(score_text(second.score, second.ci_low, second.ci_high) if second else "—"),
                Cell(
                    f"{sig3(100 * first.win_rate)}% vs {first.opponent}"
                    if first and first.win_rate is not None
                    else "—"
                ),
                Cell(
                    score_text(learned.score, learned.ci_low, learned.ci_high)
                    if learned
                    else "not run"
                ),
            ]
        )
    return table


def leaderboard_payload(
    suite: Suite, all_scores: Sequence[EnvScores], rows: Sequence[dict[str, Any]], notes: list[str]
) -> dict[str, Any]:
    """What ``leaderboard.json`` holds (missing values are None, written as null)."""
    environments = {}
    for scores in all_scores:
        environments[scores.env_id] = {
            "metric": asdict(scores.metric),
            "scenarios": scores.scenarios,
            "seeds": scores.seeds,
            "best_baseline": scores.best_baseline,
            "policies": [asdict(p) for p in scores.policies],
            "scenario_stats": {
                scenario: {policy: asdict(stat) for policy, stat in stats.items()}
                for scenario, stats in scores.stats.items()
            },
            "notes": scores.notes,
        }
    return {
        "suite": suite.name,
        "suite_version": suite.version,
        "suite_digest": suite.digest(),
        "schedgym_version": schedgym.__version__,
        "episodes": len(rows),
        "episode_walltime_s": sum(float(r.get("walltime_s") or 0.0) for r in rows),
        # The numeric kernel sets the rows were computed with (see schedgym.core.kernels); rows
        # from before kernels were recorded count as "unrecorded".
        "kernels": sorted({str(r.get("kernels", "unrecorded")) for r in rows}),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows_file": "rows.jsonl",
        "environments": environments,
        "notes": notes,
    }


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.note { color: #666; font-size: 0.9em; }
"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<p class="note">{html.escape(alt)}: no data</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(
    suite: Suite,
    out_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    notes: list[str] | None = None,
) -> ReportFiles:
    """Write the three report files (and ``plots/*.png``) for ``suite``'s rows."""
    folder = Path(out_dir)
    notes = list(notes or [])
    # Only rows made under the suite as defined now: a row from before a config change would
    # not be comparable (``validate`` names such rows).
    digest = get_suite(suite.name, suite.version).digest()
    same_suite = [
        r for r in rows if r["suite"] == suite.name and int(r["suite_version"]) == suite.version
    ]
    mine = [r for r in same_suite if r.get("suite_digest") == digest]
    if len(mine) < len(same_suite):
        notes.append(
            f"{len(same_suite) - len(mine)} rows of {suite.name} v{suite.version} were made under "
            "another suite digest (an environment config changed since) and are left out"
        )
    all_scores = suite_scores(suite, mine, baselines_of(mine))
    summary = summary_table(all_scores, suite)
    tables = [env_table(s) for s in all_scores]

    plot_dir = folder / "plots"
    plot_dir.mkdir(exist_ok=True)
    pictures: list[tuple[str, str, bytes | None, str, bytes | None]] = []
    for scores in all_scores:
        bars = score_bars(scores)
        title, picture = characteristic(suite, scores, mine)
        short = _short(scores.env_id)
        for name, png in ((f"{short}_scores.png", bars), (f"{short}_characteristic.png", picture)):
            if png is not None:
                (plot_dir / name).write_bytes(png)
        pictures.append((short, "normalised scores", bars, title, picture))

    payload = leaderboard_payload(suite, all_scores, mine, notes)
    json_path = folder / "leaderboard.json"
    write_json_atomic(json_path, payload)

    header = (
        f"# schedgym leaderboard: suite `{suite.name}` v{suite.version}\n\n"
        f"{suite.description}. {len(mine)} episodes, schedgym {schedgym.__version__}, "
        f"suite digest `{suite.digest()}`. Rows (with action traces): `rows.jsonl`; replay them "
        f"with `schedgym validate {folder}`.\n\n"
    )
    md_parts = [header, summary.markdown(2)]
    for table in tables:
        md_parts.append("\n" + table.markdown(2))
    if notes:
        md_parts.append("\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    md_path = folder / "LEADERBOARD.md"
    write_text_atomic(md_path, "".join(md_parts))

    body = [
        f"<h1>schedgym leaderboard: suite {html.escape(suite.name)} v{suite.version}</h1>",
        f"<p>{html.escape(header.splitlines()[2])}</p>",
        summary.html(2),
    ]
    for table, (short, bars_title, bars, title, picture) in zip(tables, pictures, strict=True):
        body.append(table.html(2))
        body.append(_img(bars, f"{short} {bars_title}"))
        if title:
            body.append(f"<h3>{html.escape(short)}: {html.escape(title)}</h3>")
            body.append(_img(picture, f"{short} {title}"))
    if notes:
        body.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>schedgym leaderboard {html.escape(suite.name)} v{suite.version}</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    html_path = folder / "index.html"
    write_text_atomic(html_path, page)
    return ReportFiles(json_path, md_path, html_path, summary.markdown(2))
