"""Memory: peak RSS against episode length, for SoCDAG and LLMCluster.

Each measurement runs one whole episode of a baseline (through ``run_episode``, as the CLI and
the leaderboard do) in a fresh subprocess and reports that process's peak resident set size
(``ru_maxrss``) and the growth over an empty reference (the same process after building the env
and resetting it on a one-job/one-request episode). Long episodes must not need more memory
than short ones beyond what the state in flight needs: the target is a peak within 20% from
2,000 to 20,000 jobs.

Measured 2026-12-02 on the 2-core machine (load ~4): SoCDAG heavy 48.0 -> 48.4 MiB (+1%);
LLMCluster Azure 360 s -> 3,600 s 61.2 -> 61.1 MiB (was 59.6 -> 156.2 MiB before finished
requests became compact records and long runs' decode logs became bounded, see
``schedgym/serving/records.py`` and ``ServingInstance(exact_log_iterations=...)``).

    python benchmarks/bench_memory.py                 # every case
    python benchmarks/bench_memory.py --case soc      # SoCDAG heavy, 2,000 vs 20,000 jobs
    python benchmarks/bench_memory.py --case llm      # LLMCluster, Azure trace 6 min vs 1 hour
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# (label, env id, policy, gym.make kwargs), in order of episode length within a case.
CASES: dict[str, list[tuple[str, str, str, dict[str, object]]]] = {
    "soc": [
        ("SoCDAG heavy, 2,000 jobs", "SoCDAG-v0", "fcfs", {"preset": "heavy", "num_jobs": 2000}),
        ("SoCDAG heavy, 20,000 jobs", "SoCDAG-v0", "fcfs", {"preset": "heavy", "num_jobs": 20000}),
    ],
    "llm": [
        (
            "LLMCluster Azure trace, 360 s",
            "LLMCluster-v0",
            "round-robin",
            {"preset": "azure-trace", "duration_s": 360.0},
        ),
        (
            "LLMCluster Azure trace, 3,600 s",
            "LLMCluster-v0",
            "round-robin",
            {"preset": "azure-trace", "duration_s": 3600.0},
        ),
    ],
}

_CHILD = r"""
import json, resource, sys, time
import gymnasium as gym
import schedgym
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode

env_id, policy, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
env = gym.make("schedgym/" + env_id, disable_env_checker=True, **kwargs)
env.reset(seed=0)
base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
result = run_episode(env, make_policy(env_id, policy), seed=0)
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
metrics = result.metrics
size = metrics.get("jobs_completed", metrics.get("requests_completed"))
print(json.dumps({"base_kib": base_kib, "peak_kib": peak_kib, "finished": size,
                  "steps": result.steps, "seconds": time.perf_counter() - started}))
"""


def measure(env_id: str, policy: str, kwargs: dict[str, object]) -> dict[str, float]:
    """Run one episode in a fresh interpreter; its peak RSS and the episode's size."""
    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, env_id, policy, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append", default=None)
    args = parser.parse_args()
    for case in args.case or sorted(CASES, reverse=True):
        peaks = []
        for label, env_id, policy, kwargs in CASES[case]:
            row = measure(env_id, policy, kwargs)
            peaks.append(row["peak_kib"])
            print(
                f"{label:<34} finished {row['finished']:>7,}  peak RSS "
                f"{row['peak_kib'] / 1024:7.1f} MiB  (after reset {row['base_kib'] / 1024:6.1f}"
                f" MiB, {row['seconds']:6.1f} s)"
            )
        growth = peaks[-1] / peaks[0] - 1.0
        verdict = "flat (within 20%)" if growth <= 0.2 else "GROWS"
        print(f"  {case}: peak grows {100 * growth:+.1f}% from short to long episode: {verdict}")


if __name__ == "__main__":
    main()
