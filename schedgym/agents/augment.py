"""Agent-side observation augmentations: extra observation keys an agent computes from the
simulator's public view, the same way in training (a wrapper around the training envs) and at
inference (:class:`~schedgym.agents.policy.GNNPolicy` adds them to the env's observation).

The environment's spaces stay as registered (a new key there would be a new env version); a
checkpoint trained with an augmentation names it in its metadata (``observation_augmentation``)
and its observation shapes include the extra keys, so the layout check and the network see the
augmented space. Torch-free.

- ``prefix-admission`` (PrefixBatch): BatchLLM admits a group's next request while the KV
  blocks the released requests would hold at their last token fit under capacity minus the
  watermark. The env's observation shows the blocks held now, not those at the last token, so
  the clone of BatchLLM admitted too early (preemptions BatchLLM does not have). This adds, per
  group, the slack of that projection (``capacity - watermark - projected``) over capacity
  (``admission_slack``, ``(G,)``; 0 for groups with nothing pending or padding), and
  ``admission_global`` ``(2,)``: the released requests' private blocks at their last token and
  the prefix blocks running requests pin, over capacity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from schedgym.core.errors import ConfigError


def _prefix_admission_spaces(env: Any) -> dict[str, spaces.Space[Any]]:
    groups = int(env.unwrapped.max_groups)
    return {
        "admission_slack": spaces.Box(-np.inf, np.inf, (groups,), np.float32),
        "admission_global": spaces.Box(-np.inf, np.inf, (2,), np.float32),
    }


def _prefix_admission(env: Any) -> dict[str, np.ndarray]:
    unwrapped = env.unwrapped
    sim = unwrapped.simulator
    capacity = float(sim.capacity_blocks)
    slack = np.zeros(unwrapped.max_groups, np.float32)
    if not sim.done:
        g = sim.num_groups
        limit = sim.capacity_blocks - sim.instance.watermark_blocks
        has_next = sim.group_admission_needs()[0]
        projected = sim.group_projected_blocks()
        slack[:g] = np.where(has_next, (limit - projected) / capacity, 0.0)
    global_features = np.array(
        [sim.committed_private_blocks / capacity, sim.pinned_prefix_blocks() / capacity],
        np.float32,
    )
    return {"admission_slack": slack, "admission_global": global_features}


# name -> (family, extra spaces of an env, extra observation entries of an env now)
AUGMENTATIONS: dict[
    str,
    tuple[
        str,
        Callable[[Any], dict[str, spaces.Space[Any]]],
        Callable[[Any], dict[str, np.ndarray]],
    ],
] = {
    "prefix-admission": ("PrefixBatch", _prefix_admission_spaces, _prefix_admission),
}


def _entry(name: str) -> tuple[str, Any, Any]:
    if name not in AUGMENTATIONS:
        raise ConfigError(
            f"observation_augmentation: unknown {name!r}; known: {sorted(AUGMENTATIONS)}"
        )
    return AUGMENTATIONS[name]


def check_augmentation(name: str | None, family: str) -> None:
    """Raise ConfigError unless ``name`` is None or an augmentation for ``family``."""
    if name is None:
        return
    owner = _entry(name)[0]
    if owner != family:
        raise ConfigError(
            f"observation_augmentation: {name!r} is for {owner} environments, not {family}"
        )


def augmented_space(name: str | None, env: Any) -> spaces.Dict:
    """``env``'s observation space plus the keys augmentation ``name`` adds (None: as is)."""
    space = env.observation_space
    if name is None:
        return space
    return spaces.Dict({**space.spaces, **_entry(name)[1](env)})


def augment(name: str | None, observation: dict[str, Any], env: Any) -> dict[str, Any]:
    """``observation`` plus the keys augmentation ``name`` computes from ``env`` now."""
    if name is None:
        return observation
    return {**observation, **_entry(name)[2](env)}


class AugmentObservation(gym.ObservationWrapper):
    """Adds augmentation ``name``'s keys to every observation of ``env`` (training side)."""

    def __init__(self, env: gym.Env, name: str) -> None:
        super().__init__(env)
        self.augmentation = name
        self.observation_space = augmented_space(name, env)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return augment(self.augmentation, observation, self.env)

    def action_masks(self) -> np.ndarray:
        """The wrapped env's valid actions."""
        unwrapped: Any = self.env.unwrapped  # a SchedulingEnv, which gymnasium's Env type omits
        return np.asarray(unwrapped.action_masks(), dtype=bool)
