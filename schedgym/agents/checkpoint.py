"""Agent checkpoints: SB3's zip plus a ``schedgym.json`` member, loaded without running code.

Saving uses MaskablePPO's own ``save`` (so SB3 and rl-zoo tooling can read the file) and adds
``schedgym.json``: the env id, encoder, layout, observation shapes, action count, training
metadata. Loading for inference reads only that JSON and ``policy.pth`` through
``torch.load(weights_only=True)``: SB3's ``data`` member (cloudpickle) is never unpickled, so a
checkpoint cannot execute code. A checkpoint for another environment family, observation
layout or action count is refused with a message naming what differs. A checkpoint trained on
an augmented observation (``observation_augmentation``, see :mod:`schedgym.agents.augment`)
records the augmented shapes, and is built and checked against the augmented space.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from schedgym.agents.augment import augmented_space, check_augmentation
from schedgym.agents.layouts import layout_of, observation_shapes, padding_hint
from schedgym.core.errors import ConfigError
from schedgym.core.policy import env_family

METADATA_MEMBER = "schedgym.json"
FORMAT = "schedgym-agent/1"


def add_metadata(path: str | Path, metadata: dict[str, Any]) -> None:
    """Append ``schedgym.json`` to the SB3 zip at ``path`` (just written by ``model.save``)."""
    text = json.dumps(metadata, indent=1, sort_keys=True, allow_nan=False)
    with zipfile.ZipFile(path, "a") as archive:
        if METADATA_MEMBER in archive.namelist():
            raise ConfigError(f"checkpoint: {path} already has {METADATA_MEMBER}")
        archive.writestr(METADATA_MEMBER, text)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``schedgym.json`` of the checkpoint at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint: no such file {str(path)!r}")
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_MEMBER not in archive.namelist():
                raise ConfigError(
                    f"checkpoint: {path} has no {METADATA_MEMBER}; not a schedgym agent checkpoint"
                )
            metadata = json.loads(archive.read(METADATA_MEMBER))
    except zipfile.BadZipFile:
        raise ConfigError(f"checkpoint: {path} is not a zip file") from None
    if metadata.get("format") != FORMAT:
        raise ConfigError(f"checkpoint: {path} has format {metadata.get('format')!r}, not {FORMAT}")
    return metadata


def read_policy_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The policy's state dict, loaded with ``weights_only=True`` (tensors only, no code)."""
    with zipfile.ZipFile(path) as archive:
        raw = archive.read("policy.pth")
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def layout_record(family: str, env: Any, augmentation: str | None = None) -> dict[str, Any]:
    """What a checkpoint must agree with: family, layout, observation shapes (with
    ``augmentation``'s keys), action count."""
    check_augmentation(augmentation, family)
    return {
        "family": family,
        "layout": layout_of(family, env.unwrapped),
        "observation_shapes": observation_shapes(augmented_space(augmentation, env)),
        "num_actions": int(env.action_space.n),
    }


def check_same_layout(metadata: dict[str, Any], record: dict[str, Any], source: str) -> None:
    """Raise ConfigError naming the first field where ``metadata`` and ``record`` differ."""
    if metadata["family"] != record["family"]:
        raise ConfigError(
            f"checkpoint: {source} was trained on {metadata['env_id']}, not on {record['family']}"
        )
    if metadata["observation_shapes"] != record["observation_shapes"]:
        hint = padding_hint(
            record["family"], metadata["observation_shapes"], record["observation_shapes"]
        )
        raise ConfigError(
            f"checkpoint: {source} expects observation shapes {metadata['observation_shapes']}, "
            f"this env has {record['observation_shapes']} (another config's padding; train for "
            f"this layout{hint})"
        )
    if metadata["layout"] != record["layout"]:
        raise ConfigError(
            f"checkpoint: {source} expects layout {metadata['layout']}, "
            f"this env has {record['layout']}"
        )
    if int(metadata["num_actions"]) != record["num_actions"]:
        raise ConfigError(
            f"checkpoint: {source} has {metadata['num_actions']} actions, "
            f"this env has {record['num_actions']}"
        )


def check_compatible(metadata: dict[str, Any], env: Any, source: str) -> None:
    """Raise ConfigError unless the checkpoint fits ``env`` (a schedgym env, maybe wrapped)."""
    spec = env.unwrapped.spec
    if spec is None:
        raise ConfigError("env: made without gymnasium.make, so its family is unknown")
    family = env_family(spec.id)
    if metadata["family"] != family:  # before the augmentation, which is per family
        check_same_layout(metadata, layout_record(family, env), source)
    record = layout_record(family, env, metadata.get("observation_augmentation"))
    check_same_layout(metadata, record, source)


def build_policy(metadata: dict[str, Any], env: Any) -> Any:
    """A fresh :class:`CandidateScoringPolicy` with the checkpoint's architecture for ``env``."""
    from schedgym.agents.sb3 import CandidateScoringPolicy, scoring_policy_kwargs

    return CandidateScoringPolicy(
        augmented_space(metadata.get("observation_augmentation"), env),
        env.action_space,
        lambda _progress: 0.0,
        **scoring_policy_kwargs(
            metadata["encoder"], metadata["layout"], metadata.get("encoder_kwargs")
        ),
    )


def load_policy(path: str | Path, env: Any) -> tuple[Any, dict[str, Any]]:
    """The checkpoint's policy network for ``env`` (eval mode, CPU) and its metadata."""
    metadata = read_metadata(path)
    check_compatible(metadata, env, str(path))
    policy = build_policy(metadata, env)
    state = read_policy_state(path)
    missing, unexpected = policy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"checkpoint: {path} does not match the network (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    policy.set_training_mode(False)
    return policy, metadata
