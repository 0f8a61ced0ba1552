"""The ``schedgym`` command: thin argument parsing that dispatches to the layers below.

Every expected failure (unknown env, policy, preset, bad value) is a ``SchedGymError``: it is
printed as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from schedgym.core.errors import SchedGymError
from schedgym.core.kernels import reexec_pinned

# Each module exposes register(subparsers).
COMMAND_MODULES = (
    "schedgym.commands.envs",
    "schedgym.commands.costmodel",
    "schedgym.commands.capacity",
    "schedgym.commands.train",
    "schedgym.commands.leaderboard",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own usage errors: one line, exit 2, as for every other bad input.
        self.exit(2, f"schedgym: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="schedgym", description="A Gymnasium suite of scheduling problems.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # a command group not built yet
        loaded.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import schedgym  # noqa: F401  (registers the environments)

    args = build_parser().parse_args(argv)
    if argv is None and getattr(args, "pin_kernels", False):
        # The commands that publish numbers run with the numeric kernels every x86-64 CPU has
        # (schedgym.core.kernels); only from the shell (argv None), never inside a caller's
        # process, which this would replace.
        reexec_pinned("schedgym.cli", sys.argv[1:])
    try:
        return int(args.func(args))
    except SchedGymError as exc:
        print(f"schedgym: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`schedgym ... | head`): not an error of ours; keep Python from
        # reporting it again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
