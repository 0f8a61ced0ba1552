"""Action spaces that know the environment's current action mask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym.core.errors import InvalidActionError


class MaskedDiscrete(spaces.Discrete):
    """A ``Discrete`` space whose ``sample()`` draws among the currently valid actions.

    Generic code (Gymnasium's and SB3's env checkers, random baselines,
    ``env.action_space.sample()`` in a user's loop) then produces valid actions without knowing
    about masks, while a masked-out action passed to ``step`` still raises
    ``InvalidActionError``. ``mask_fn`` returns the env's ``action_masks()``; an explicit
    ``mask`` argument takes precedence.
    """

    def __init__(
        self,
        n: int,
        mask_fn: Callable[[], np.ndarray] | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(n, seed=seed)
        self.mask_fn = mask_fn

    def sample(self, mask: Any = None, probability: Any = None) -> np.int64:
        """A uniformly drawn valid action.

        Raises:
            InvalidActionError: no action is valid now (before ``reset()`` or after the episode
                ended): any action returned would be rejected by ``step``, so none is returned.
        """
        if mask is None and probability is None and self.mask_fn is not None:
            mask = np.asarray(self.mask_fn(), dtype=np.int8)
            if not mask.any():
                raise InvalidActionError(
                    "action_space.sample(): no action is valid now (call reset(), or the "
                    "episode is over)"
                )
        return super().sample(mask=mask, probability=probability)


INVALID_ACTION_MODES = ("raise", "substitute")


def as_action_index(action: Any) -> int:
    """The index of an integer action: a Python ``int``, a numpy integer scalar, or a numpy
    integer array holding one element (what ``model.predict`` returns).

    Anything else raises InvalidActionError, rather than being truncated or parsed: a float
    (``2.7`` would silently become 2, ``inf`` overflows), a string (``"0"``), a bool.
    """
    if isinstance(action, np.ndarray) and action.size == 1:
        action = action.reshape(()).item() if np.issubdtype(action.dtype, np.integer) else action
    if isinstance(action, np.integer):
        return int(action)
    if isinstance(action, int) and not isinstance(action, bool):
        return action
    raise InvalidActionError(
        f"action: must be an integer (int or numpy integer), got {action!r} "
        f"of type {type(action).__name__}"
    )


def check_action(action: Any, mask: np.ndarray, mode: str, fallback: int | None = None) -> int:
    """Validate ``action`` against ``mask``; return the action to execute.

    Args:
        action: the agent's action (an int-like).
        mask: the current valid-action mask.
        mode: ``raise`` (default everywhere): a masked-out action raises InvalidActionError.
            ``substitute``: it is replaced by ``fallback`` if that is valid, else by the lowest
            valid action; for learners that cannot mask, and for generic checkers (Gymnasium's
            ``check_env`` replays an action sampled in another state after a reset).
        fallback: the preferred substitute (e.g. a wait/no-op action).
    """
    index = as_action_index(action)
    if 0 <= index < mask.shape[0] and mask[index]:
        return index
    if mode == "raise":
        if not 0 <= index < mask.shape[0]:
            raise InvalidActionError(f"action: must be in [0, {mask.shape[0] - 1}], got {index}")
        raise InvalidActionError(f"action: {index} is masked out (see action_masks())")
    if fallback is not None and 0 <= fallback < mask.shape[0] and mask[fallback]:
        return fallback
    valid = np.flatnonzero(mask)
    if valid.size == 0:
        raise InvalidActionError("action: no action is valid now (is the episode over?)")
    return int(valid[0])
