"""Where episodes run: this process, a pool of local processes, or a Ray cluster.

Every backend maps :func:`schedgym.leaderboard.episode.run_task` over tasks and yields rows as
episodes finish (in completion order; rows carry their own keys). An episode is deterministic
given its task, so the backend changes wall times only, never a row's content.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from typing import Any

from schedgym.core.errors import ConfigError
from schedgym.leaderboard.episode import Task, run_task

BACKENDS = ("local", "ray")


def _limit_worker_threads() -> None:
    # Set before workers import numpy: with several single-episode processes per core, BLAS
    # threads only contend (and thread counts change the last bits of BLAS results).
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def run_local(tasks: Sequence[Task], workers: int) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` here (``workers == 1``) or on ``workers`` local processes."""
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield run_task(task)
        return
    _limit_worker_threads()
    # spawn: workers start clean (no forked matplotlib or thread state) on every platform.
    pool = multiprocessing.get_context("spawn").Pool(processes=workers)
    try:
        yield from pool.imap_unordered(run_task, tasks, chunksize=1)
        pool.close()
    finally:
        # Interrupted (Ctrl-C, SIGTERM, an error): stop the workers now, not after their episode.
        pool.terminate()
        pool.join()


def run_ray(tasks: Sequence[Task], address: str | None) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` on Ray: the cluster at ``address``, or a local Ray started for the run."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend: ray is not installed (pip install 'schedgym[ray]')") from None
    started_here = not ray.is_initialized()
    if started_here:
        _limit_worker_threads()
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    remote_task = ray.remote(run_task)
    try:
        pending = [remote_task.remote(task) for task in tasks]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                yield ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def run_tasks(
    tasks: Sequence[Task], backend: str, workers: int, ray_address: str | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of ``tasks`` from the chosen backend, as they finish."""
    if backend == "local":
        return run_local(tasks, workers)
    if backend == "ray":
        return run_ray(tasks, ray_address)
    raise ConfigError(f"--backend: must be one of {list(BACKENDS)}, got {backend!r}")
