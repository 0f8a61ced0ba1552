"""Run many ``schedgym`` command lines, each in its own child process, paying the import once.

``python tests/cli_forkserver.py SPEC.json`` imports ``schedgym.cli`` and then forks one child per
command line (a few at a time). Each child sets its working folder, points its stdout and stderr
(file descriptors 1 and 2) at files, runs the CLI as ``python -m schedgym.cli`` does
(``sys.exit(main())``; an uncaught exception prints its traceback and exits 1, as the interpreter
would) and exits with the command's status. The parent writes ``{name: exit code}`` to
``SPEC["result"]``. A fresh interpreter costs ~0.5 s of CPU for the imports; forking from a warm
one costs milliseconds, which keeps a table of fifty bad inputs fast on a loaded machine.

SPEC: ``{"cases": [{"name", "argv", "cwd"}], "out_dir", "result", "jobs"}``, optionally
``"timings"``: a file for ``{name: wall seconds}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any


def _child(case: dict[str, Any], out_dir: str) -> None:
    code = 1
    try:
        for fd, suffix in ((1, "stdout"), (2, "stderr")):
            target = os.open(
                os.path.join(out_dir, f"{case['name']}.{suffix}"),
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                0o644,
            )
            os.dup2(target, fd)
            os.close(target)
        os.chdir(case["cwd"])
        from schedgym.cli import main

        sys.argv = ["schedgym", *case["argv"]]
        code = main(case["argv"])
    except SystemExit as stop:  # argparse's own exits
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run(spec: dict[str, Any]) -> dict[str, int]:
    import schedgym.cli  # noqa: F401  (imported once, before forking)

    pending = list(spec["cases"])
    running: dict[int, tuple[str, float]] = {}
    codes: dict[str, int] = {}
    walls: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < spec["jobs"]:
            case = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(case, spec["out_dir"])
            running[pid] = (case["name"], time.perf_counter())
        pid, status = os.wait()
        name, started = running.pop(pid)
        codes[name] = os.waitstatus_to_exitcode(status)
        walls[name] = round(time.perf_counter() - started, 3)
    if spec.get("timings"):
        with open(spec["timings"], "w") as handle:
            json.dump(walls, handle, indent=1)
    return codes


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        loaded = json.load(handle)
    result = run(loaded)
    with open(loaded["result"], "w") as handle:
        json.dump(result, handle)
