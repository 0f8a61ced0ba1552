"""Registers ``gnn`` (the shipped checkpoint) for every family that has one, and ``.zip`` paths
as policies everywhere. Torch-free: the network loads when the policy is built."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from schedgym.agents.layouts import ENCODERS
from schedgym.core.policy import register_path_policy, register_policy

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


def shipped_checkpoint(family: str) -> Path:
    """Where the shipped checkpoint of ``family`` lives (``<Family>-v0.zip``)."""
    return CHECKPOINT_DIR / f"{family}-v0.zip"


def _gnn(checkpoint: Path, **kwargs: Any) -> Any:
    from schedgym.agents.policy import GNNPolicy

    return GNNPolicy(checkpoint, **kwargs)


def _from_path(path: str, **kwargs: Any) -> Any:
    return _gnn(Path(path), **kwargs)


def register_agents(family: str) -> None:
    """Register ``gnn`` for ``family`` when its checkpoint ships."""
    path = shipped_checkpoint(family)
    if family in ENCODERS and path.is_file():
        register_policy(
            family,
            "gnn",
            partial(_gnn, path),
            f"GNN agent trained with MaskablePPO (checkpoint {path.name})",
        )


for _family in ENCODERS:
    register_agents(_family)
register_path_policy(".zip", _from_path)
