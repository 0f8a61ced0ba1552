"""Which encoder serves each environment family, and the layout facts it needs beyond the
observation space (torch-free, so checkpoints can be checked without building a network).

A layout is a small JSON-able dict stored in every checkpoint: loading a checkpoint into an env
whose layout or observation shapes differ is refused (see :mod:`schedgym.agents.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schedgym.core.errors import ConfigError


def _soc(env: Any) -> dict[str, Any]:
    return {"num_pe_types": int(env.num_pe_types), "tasks_per_job": int(env.tasks_per_job)}


def _prefill(env: Any) -> dict[str, Any]:
    return {
        "token_budgets": [int(b) for b in env.budgets],
        "num_modes": int(env.action_space.n) // len(env.budgets),
    }


def _datagen(env: Any) -> dict[str, Any]:
    return {
        "solver_fractions": [float(f) for f in env.config.solver_fractions],
        "num_buffers": int(env.num_buffers),
    }


def _none(env: Any) -> dict[str, Any]:
    return {}


# family -> (encoder "module:Class", layout function)
ENCODERS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "SoCDAG": ("schedgym.agents.soc:SoCDAGEncoder", _soc),
    "LLMCluster": ("schedgym.agents.sets:LLMClusterEncoder", _none),
    "PrefixBatch": ("schedgym.agents.sets:PrefixBatchEncoder", _none),
    "MeshAssign": ("schedgym.agents.sets:MeshAssignEncoder", _none),
    "OnlineDataGen": ("schedgym.agents.sets:OnlineDataGenEncoder", _datagen),
    "PrefillChunk": ("schedgym.agents.sets:PrefillChunkEncoder", _prefill),
}


# family -> (observation key, its padded axis, the config field that pads it): where one field
# only pads (changes no dynamics), a smaller env can be padded to a checkpoint's layout.
PADDING_FIELDS: dict[str, tuple[str, int, str]] = {
    "MeshAssign": ("rank_mask", 0, "max_ranks"),
}


def padding_hint(
    family: str, checkpoint_shapes: dict[str, list[int]], env_shapes: dict[str, list[int]]
) -> str:
    """How to pad an env of ``family`` (observation ``env_shapes``) to a checkpoint's
    ``checkpoint_shapes``; "" where no config field only pads or the env is the larger."""
    if family not in PADDING_FIELDS:
        return ""
    key, axis, field = PADDING_FIELDS[family]
    try:
        wanted, have = int(checkpoint_shapes[key][axis]), int(env_shapes[key][axis])
    except (KeyError, IndexError):
        return ""
    if have >= wanted:
        return ""
    return f"; or pad this env to it with {field}={wanted} (--set {field}={wanted})"


def encoder_for(family: str) -> str:
    """The ``module:Class`` of ``family``'s encoder."""
    if family not in ENCODERS:
        raise ConfigError(f"env: no agent encoder for {family!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[family][0]


def layout_of(family: str, env: Any) -> dict[str, Any]:
    """The layout facts of ``env`` (an unwrapped env of ``family``)."""
    encoder_for(family)
    return ENCODERS[family][1](env.unwrapped)


def observation_shapes(observation_space: Any) -> dict[str, list[int]]:
    """``{key: shape}`` of a Dict observation space: the observation layout a checkpoint fits."""
    return {key: [int(d) for d in space.shape] for key, space in observation_space.spaces.items()}
