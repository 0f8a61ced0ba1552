"""Leaderboard cost: wall and CPU time of a whole suite run, and CPU time per environment.

Runs ``schedgym leaderboard`` in a child process on a fresh results folder and reports its wall
time, the CPU time of it and its worker processes, and the CPU seconds each environment's
episodes took (from the rows). On a busy machine the wall time is inflated by other work; CPU
time divided by the worker count is what the run costs on an otherwise idle machine.

    .venv/bin/python benchmarks/bench_leaderboard.py --suite quick --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "schedgym.cli", "leaderboard", "--suite", args.suite,
                   "--workers", str(args.workers), "--out", out]  # fmt: skip
        for env_id in args.env:
            command += ["--env", env_id]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall_s = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        per_env: dict[str, float] = defaultdict(float)
        episodes = 0
        for line in (Path(out) / "rows.jsonl").read_text().splitlines():
            row = json.loads(line)
            per_env[row["env_id"]] += row["cpu_time_s"]
            episodes += 1
    print(f"suite {args.suite}, {episodes} episodes, {args.workers} workers, load average "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    print(f"wall {wall_s:.1f} s, CPU {cpu_s:.1f} s (all processes); "
          f"CPU / workers = {cpu_s / args.workers:.1f} s")  # fmt: skip
    for env_id, seconds in per_env.items():
        print(f"  {env_id}: {seconds:.1f} CPU s in episodes")


if __name__ == "__main__":
    main()
