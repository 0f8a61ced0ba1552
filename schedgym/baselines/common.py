"""Policies that every environment family registers."""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.core.policy import SimulatorPolicy


class RandomMaskedPolicy(SimulatorPolicy):
    """A uniformly random valid action.

    Args:
        seed: seed of the policy's own generator (reset at every episode, so a rollout is
            reproducible).
        noop_action: an action (e.g. "wait") taken only when nothing else is valid, so the random
            policy makes progress instead of idling half the time; ``None`` treats all alike. A
            callable receives the env and returns that action.
    """

    def __init__(self, seed: int = 0, noop_action: Any = None) -> None:
        self.seed = seed
        self.noop_action = noop_action
        self._rng = np.random.default_rng(seed)

    def reset(self, env: Any) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, observation: Any, env: Any) -> int:
        mask = env.unwrapped.action_masks()
        noop = self.noop_action(env) if callable(self.noop_action) else self.noop_action
        if noop is not None and mask.sum() > 1 and mask[noop]:
            mask = mask.copy()
            mask[noop] = False
        valid = np.flatnonzero(mask)
        return int(valid[self._rng.integers(valid.size)])
