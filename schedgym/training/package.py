"""Ship a trained checkpoint: copy it to ``schedgym/agents/checkpoints/<Family>-v0.zip`` and
write ``<Family>-v0.json`` beside it (the checkpoint's metadata plus a short reproducibility
check: the greedy policy's metric on a shortened validation scenario and seed, which the tests
re-run and compare).

The check runs in a subprocess with numpy, OpenBLAS and torch held to their AVX2 kernels
(:func:`~schedgym.core.kernels.pinned_kernel_environment`): OnlineDataGen's check moved 0.8%
between two AVX-512 CPUs whose OpenBLAS picked different kernels (SkylakeX, Haswell); with the
kernels held, every x86-64 CPU with AVX2 computes the same episode.

Usage: ``python -m schedgym.training.package RUN/best.zip [--dest DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

from schedgym.agents.checkpoint import read_metadata
from schedgym.agents.policy import GNNPolicy
from schedgym.agents.registry import CHECKPOINT_DIR
from schedgym.core.errors import SchedGymError
from schedgym.core.jsonio import write_json_atomic
from schedgym.core.kernels import pinned_kernel_environment
from schedgym.core.rollout import run_episode
from schedgym.training.evaluation import ranking_metric
from schedgym.training.seeds import validation_seeds

# Overrides that shorten a validation scenario to a few seconds for the reproducibility check
# (same padding, so the checkpoint still fits).
SHORT_EPISODE: dict[str, dict[str, Any]] = {
    "SoCDAG": {"num_jobs": 20, "warmup_jobs": 2},
    "LLMCluster": {"num_requests": 60},
    "PrefillChunk": {"num_requests": 20},
    "PrefixBatch": {},  # its padding (max_groups) follows num_requests
    "MeshAssign": {"num_batches": 1},
    "OnlineDataGen": {},
}
MAX_CHECKPOINT_BYTES = 5 * 1024 * 1024


def check_value(checkpoint: Path, env_id: str, scenario: dict[str, Any], seed: int) -> float:
    """The greedy policy's ranking metric on one episode, run here (kernels as they are)."""
    env = gym.make(env_id, disable_env_checker=True, **scenario)
    metric, _ = ranking_metric(env_id)
    value = float(run_episode(env, GNNPolicy(checkpoint), seed).metrics[metric])
    env.close()
    return value


def pinned_check_value(checkpoint: Path, env_id: str, scenario: dict[str, Any], seed: int) -> float:
    """:func:`check_value` in a subprocess under :func:`pinned_kernel_environment`."""
    request = json.dumps(
        {"checkpoint": str(checkpoint), "env_id": env_id, "scenario": scenario, "seed": seed}
    )
    completed = subprocess.run(
        [sys.executable, "-m", "schedgym.training.package", "--check-value", request],
        env={**os.environ, **pinned_kernel_environment()},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SchedGymError(f"checkpoint: the check of {checkpoint} failed:\n{completed.stderr}")
    return float(json.loads(completed.stdout.strip().splitlines()[-1])["value"])


def reproducibility_check(checkpoint: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """The greedy policy's ranking metric on the shortened first validation scenario, with the
    kernels pinned."""
    scenario = {**metadata["validation_scenarios"][0], **SHORT_EPISODE[metadata["family"]]}
    seed = validation_seeds(1)[0]
    metric, _ = ranking_metric(metadata["env_id"])
    value = pinned_check_value(checkpoint, metadata["env_id"], scenario, seed)
    return {"scenario": scenario, "seed": seed, "metric": metric, "value": value}


def package(source: str | Path, dest: str | Path = CHECKPOINT_DIR) -> Path:
    """Copy ``source`` into ``dest`` under its family's name and write the metadata JSON."""
    source = Path(source)
    metadata = read_metadata(source)
    if source.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise SchedGymError(f"checkpoint: {source} is over 5 MB ({source.stat().st_size} bytes)")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{metadata['family']}-v0.zip"
    check = reproducibility_check(source, metadata)
    shutil.copyfile(source, target)
    write_json_atomic(target.with_suffix(".json"), {**metadata, "reproducibility_check": check})
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--dest", default=str(CHECKPOINT_DIR))
    parser.add_argument("--check-value", help=argparse.SUPPRESS)  # pinned_check_value's worker
    args = parser.parse_args(argv)
    if args.check_value is not None:
        request = json.loads(args.check_value)
        value = check_value(
            Path(request["checkpoint"]), request["env_id"], request["scenario"], request["seed"]
        )
        print(json.dumps({"value": value}))
        return 0
    if args.checkpoint is None:
        parser.error("the checkpoint to ship is required")
    try:
        print(package(args.checkpoint, args.dest))
    except SchedGymError as exc:
        print(f"package: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
