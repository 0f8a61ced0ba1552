"""A leaderboard run: select policies, run the missing episodes, append rows, write the report.

Paired evaluation: every selected policy runs every scenario of the suite on the same test
seeds, hence the same arrivals, sizes and noise. Tasks are ordered scenario by scenario, seed by
seed, so an interrupted run has compared whole pairs first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import require_writable_dir
from schedgym.leaderboard.backends import BACKENDS, run_tasks
from schedgym.leaderboard.episode import Task, make_env, row_key, suite_digest
from schedgym.leaderboard.policies import build_policy, is_external, select_policies
from schedgym.leaderboard.progress import ProgressBar
from schedgym.leaderboard.rows import RowWriter, drop_torn_tail, read_rows, rows_path
from schedgym.leaderboard.suites import Suite


@dataclass
class RunPlan:
    """What a run will do."""

    suite: Suite
    policies: dict[str, tuple[str, ...]]  # env id -> policy names
    tasks: list[Task]
    notes: list[str] = field(default_factory=list)


def plan_run(suite: Suite, requested: Sequence[str] | None) -> RunPlan:
    """Every (scenario, seed, policy) episode of ``suite`` for the selected policies."""
    wanted = list(requested) if requested else None
    policies: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    for env_id in suite.env_ids:
        selection = select_policies(env_id, wanted)
        policies[env_id] = selection.names
        notes.extend(selection.notes)
    if wanted:
        used = {name for names in policies.values() for name in names}
        unknown = [n for n in wanted if n not in used and not is_external(n)]
        if unknown:
            raise ConfigError(
                f"--policy: {unknown} is not registered for any environment of the run "
                f"({', '.join(suite.env_ids)}); `schedgym list` shows the names"
            )
    unfit = _unfit_checkpoints(suite, policies, notes)
    tasks = [
        Task(suite.name, suite.version, scenario.env_id, scenario.name, seed, policy)
        for scenario in suite.scenarios
        for seed in suite.seeds
        for policy in policies[scenario.env_id]
        if (scenario.env_id, scenario.name, policy) not in unfit
    ]
    return RunPlan(suite, policies, tasks, notes)


def _unfit_checkpoints(
    suite: Suite, policies: dict[str, tuple[str, ...]], notes: list[str]
) -> set[tuple[str, str, str]]:
    """(env id, scenario, policy) of the trained agents whose checkpoint does not fit a
    scenario's observation layout (a PrefixBatch agent trained on 400 requests, a SoCDAG agent
    on 12 job slots); they are skipped there with a note instead of failing the run."""
    unfit: set[tuple[str, str, str]] = set()
    for scenario in suite.scenarios:
        checkpoints = []
        for name in policies[scenario.env_id]:
            # Only trained agents (GNNPolicy) say which layouts they fit.
            incompatibility = getattr(build_policy(scenario.env_id, name), "incompatibility", None)
            if callable(incompatibility):
                checkpoints.append((name, incompatibility))
        if not checkpoints:
            continue
        env = make_env(scenario)
        for name, incompatibility in checkpoints:
            problem = incompatibility(env)
            if problem is not None:
                unfit.add((scenario.env_id, scenario.name, name))
                notes.append(f"{scenario.env_id}/{scenario.name}: skipped {name!r}: {problem}")
        env.close()
    return unfit


def run_leaderboard(
    suite: Suite,
    out_dir: str | Path,
    policies: Sequence[str] | None = None,
    workers: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    resume: bool = False,
    progress_stream: TextIO | None = None,
) -> RunPlan:
    """Run every missing episode of ``suite`` and append its row to ``out_dir``'s rows file.

    Raises:
        ConfigError: for a folder that cannot be written, existing rows without ``resume``, bad
            ``workers``/``backend``, or unknown policies. All checked before any episode runs.
    """
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: must be one of {list(BACKENDS)}, got {backend!r}")
    folder = require_writable_dir(out_dir)
    path = rows_path(folder)
    if path.exists() and path.stat().st_size > 0 and not resume:
        raise ConfigError(
            f"--out: {path} already holds rows; pass --resume to continue that run "
            "(finished episodes are kept) or choose another --out"
        )
    plan = plan_run(suite, policies)
    if resume:
        dropped = drop_torn_tail(path)
        if dropped:
            plan.notes.append(f"dropped an unfinished row ({dropped} bytes) at the end of {path}")
    existing = read_rows(path)
    digest = suite_digest(suite.name, suite.version)
    stale = [
        r
        for r in existing
        if (r.get("suite"), r.get("suite_version")) == (suite.name, suite.version)
        and r.get("suite_digest") != digest
    ]
    if stale:
        raise ConfigError(
            f"--resume: {len(stale)} rows in {path} were made under another digest of suite "
            f"{suite.name} v{suite.version} (an environment config changed since); they cannot "
            "be mixed with new ones: choose another --out"
        )
    done = {row_key(row) for row in existing}
    pending = [task for task in plan.tasks if task.key() not in done]
    progress = ProgressBar(len(pending), progress_stream)
    progress.start(
        f"schedgym leaderboard: suite {suite.name} v{suite.version}, "
        f"{len(plan.tasks)} episodes ({len(plan.tasks) - len(pending)} already done), "
        f"backend {backend}" + (f" x{workers}" if backend == "local" else "")
    )
    with RowWriter(path, existing) as writer:
        for row in run_tasks(pending, backend, workers, ray_address):
            writer.append(row)
            progress.advance(Task(*row_key(row)).label())
    return plan
