"""``schedgym leaderboard`` and ``schedgym validate``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from schedgym.core.errors import ConfigError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "leaderboard",
        help="evaluate policies on a frozen suite (paired seeds); write rows and the report",
        description=(
            "Run every registered policy (or those given) on a frozen suite, append one row per "
            "episode to DIR/rows.jsonl, and write DIR/leaderboard.json, DIR/LEADERBOARD.md and "
            "DIR/index.html."
        ),
    )
    p.add_argument("--suite", default="quick", help="suite name: quick, full or smoke")
    p.add_argument("--suite-version", type=int, default=None, help="default: the latest")
    p.add_argument(
        "--env", action="append", default=None, metavar="ID",
        help="only this environment (repeatable; default: every one of the suite)",
    )  # fmt: skip
    p.add_argument(
        "--policy", action="append", default=None, metavar="NAME",
        help="a registered name or package.module:callable (repeatable; default: every "
        "registered policy that can be built here)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
    p.add_argument("--backend", default="local", help="local (default) or ray")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: local)")
    p.add_argument("--out", default="results", metavar="DIR", help="results folder")
    p.add_argument("--resume", action="store_true", help="continue the rows already in DIR")
    p.add_argument(
        "--report-only", action="store_true", help="rebuild the report from DIR's rows; run nothing"
    )
    p.add_argument(
        "--readme", default=None, metavar="PATH",
        help="also rewrite PATH's section between <!-- leaderboard:start/end --> with the summary",
    )  # fmt: skip
    p.set_defaults(func=cmd_leaderboard, pin_kernels=True)  # numbers it publishes

    p = subparsers.add_parser(
        "validate", help="replay every stored action trace of a results folder; exit 1 on mismatch"
    )
    p.add_argument("dir", metavar="DIR", help="a folder written by `schedgym leaderboard`")
    p.set_defaults(func=cmd_validate, pin_kernels=True)  # numbers it publishes


def _exit_on_sigterm() -> Any:
    """Make SIGTERM unwind like Ctrl-C; return the previous handler (None off the main thread).

    A job scheduler's or `kill`'s SIGTERM then stops the worker processes, and the rows written
    so far stay for --resume.
    """

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from schedgym.core.jsonio import require_writable_dir
    from schedgym.leaderboard.evaluate import run_leaderboard
    from schedgym.leaderboard.readme import update_readme
    from schedgym.leaderboard.report import write_report
    from schedgym.leaderboard.rows import read_rows, rows_path
    from schedgym.leaderboard.suites import get_suite
    from schedgym.registration import env_entry

    suite = get_suite(args.suite, args.suite_version)
    suite.check_frozen()
    if args.env:
        suite = suite.restricted_to([env_entry(env_id).env_id for env_id in args.env])
    # Checked before any episode runs: a bad --out is one line and exit 2, not a lost run.
    require_writable_dir(args.out)
    notes: list[str] = []
    if args.report_only:
        if not rows_path(args.out).exists():
            raise ConfigError(f"--out: {rows_path(args.out)} does not exist; nothing to report")
    else:
        previous = _exit_on_sigterm()
        try:
            plan = run_leaderboard(
                suite,
                args.out,
                policies=args.policy,
                workers=args.workers,
                backend=args.backend,
                ray_address=args.ray_address,
                resume=args.resume,
            )
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        notes = plan.notes
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    rows = read_rows(rows_path(args.out))
    files = write_report(suite, args.out, rows, notes)
    print(files.summary_markdown)
    print(f"report: {files.markdown}, {files.json}")
    print(f"open {files.html.resolve()}")
    if args.readme:
        update_readme(args.readme, _readme_section(files.summary_markdown, suite))
        print(f"updated the leaderboard section of {args.readme}")
    return 0


def _readme_section(summary_markdown: str, suite: Any) -> str:
    # One heading level down (the README's section has its own heading) and a provenance line.
    body = summary_markdown.replace("## Summary", "#### Summary", 1)
    return (
        f"{body}\n_Generated by `schedgym leaderboard --suite {suite.name} --readme README.md` "
        f"(suite {suite.name} v{suite.version}, digest `{suite.digest()}`); do not edit by hand._\n"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    from schedgym.leaderboard.validate import validate_dir

    checked, failures = validate_dir(args.dir)
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {checked} rows failed validation", file=sys.stderr)
        return 1
    print(f"all {checked} rows replayed to their stored metrics")
    return 0
