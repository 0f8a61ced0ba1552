"""The plumbing every schedgym Gymnasium facade shares.

An environment subclasses :class:`SchedulingEnv`, names its config class, presets and render
module, and implements the problem-specific parts: ``reset`` (build the simulator),
``action_masks``, ``_apply`` (execute one valid action, return the reward), ``_observation`` and
``_info``. Config resolution, render-mode checks, action validation (``invalid_action`` raise or
substitute), ``step`` = ``advance`` + observation, the episode summary in the final ``info``,
rendering, and :meth:`SchedulingEnv.fork` live here once.

Forking (:mod:`schedgym.core.fork`): ``env.fork()`` is an independent copy of the environment at
the same state, random generators included (``np_random`` and the simulator's streams), that
evolves identically under the same actions; stepping it never changes ``env``. It shares what
never changes: the config and the simulator's immutable tables, as ``env.fork_memo()`` (the
simulator's :meth:`fork_memo` plus the env's own) says, the ``copy.deepcopy`` memo that a copy
of a larger object holding the env (a policy's look-ahead snapshot) can use as well.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import gymnasium as gym
import numpy as np

from schedgym.core.config import resolve_config
from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.fork import Forkable
from schedgym.core.spaces import as_action_index, check_action


class EnvConfig(Protocol):
    """What the base reads of an environment's config."""

    @property
    def invalid_action(self) -> str:
        """``raise`` or a substitution mode (see :func:`schedgym.core.spaces.check_action`)."""
        ...


class EpisodeSimulator(Protocol):
    """What the base reads of an environment's simulator."""

    @property
    def done(self) -> bool:
        """True once the episode is over."""
        ...

    def summary(self) -> Mapping[str, Any]:
        """The episode's summary metrics."""
        ...

    def fork_memo(self) -> dict[int, Any]:
        """``copy.deepcopy`` memo entries of what a copy may share (see
        :class:`~schedgym.core.fork.Forkable`)."""
        ...


ConfigT = TypeVar("ConfigT", bound=EnvConfig)
SimT = TypeVar("SimT", bound=EpisodeSimulator)


class SchedulingEnv(gym.Env, Forkable, ABC, Generic[ConfigT, SimT]):
    """Base of the schedgym environments (see the module docstring).

    Generic in the config and simulator types (``SchedulingEnv[SoCConfig, SoCSimulator]``):
    ``config`` is a ``ConfigT``, ``simulator`` a ``SimT`` (None before the first reset).
    ``fork()`` gives an independent copy at the same state that evolves identically (same
    random-generator states), sharing the config and the simulator's immutable tables.

    Class attributes to set:
        config_class: the frozen config dataclass (with an ``invalid_action`` field).
        presets: preset name -> config field overrides.
        render_module: module with ``render_ansi(simulator)`` and ``render_rgb_array(simulator)``.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}  # noqa: RUF012
    config_class: ClassVar[type]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]
    render_module: ClassVar[str]
    # True when the simulator itself rejects every action the mask forbids (with
    # InvalidActionError): then ``raise`` mode validates without building the mask.
    simulator_validates_actions: ClassVar[bool] = False

    def __init__(
        self,
        config: Any = None,
        preset: str | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        self.config: ConfigT = resolve_config(
            self.config_class, self.presets, config, preset, overrides
        )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"render_mode: must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.simulator: SimT | None = None

    # ------------------------------------------------------------------- to implement
    @abstractmethod
    def action_masks(self) -> np.ndarray:
        """Boolean mask of the valid actions now (all False before reset and after the end)."""

    @abstractmethod
    def _apply(self, action: int) -> tuple[float, bool, bool]:
        """Execute a valid action; return ``(reward, terminated, truncated)``."""

    @abstractmethod
    def _observation(self) -> dict[str, np.ndarray]:
        """The observation of the current state."""

    @abstractmethod
    def _info(self) -> dict[str, Any]:
        """Per-step ``info`` (the summary is added at the end by ``advance``)."""

    def _substitute_fallback(self) -> int | None:
        """The preferred substitute for an invalid action (a no-op), if the env has one."""
        return None

    def _validated_action(self, action: Any) -> int:
        """The action to execute; raises InvalidActionError or substitutes per the config."""
        if self.simulator_validates_actions and self.config.invalid_action == "raise":
            return as_action_index(action)
        return check_action(
            action, self.action_masks(), self.config.invalid_action, self._substitute_fallback()
        )

    # -------------------------------------------------------------------------- shared
    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        reward, terminated, truncated, info = self.advance(action)
        return self._observation(), reward, terminated, truncated, info

    def advance(self, action: Any) -> tuple[float, bool, bool, dict[str, Any]]:
        """``step`` without building the observation, for policies that read the simulator.

        Returns ``(reward, terminated, truncated, info)``; the final ``info`` carries the
        episode summary. :func:`schedgym.core.rollout.run_episode` uses it for policies whose
        ``uses_observation`` is False (the baselines).
        """
        sim = self._sim()
        if sim.done:
            reason = self.end_reason()
            if reason is not None:
                raise InvalidActionError(f"action: the episode ended at reset(): {reason}")
            raise InvalidActionError("action: the episode is over; call reset()")
        index = as_action_index(action)
        executed = self._validated_action(index)
        reward, terminated, truncated = self._apply(executed)
        info = self._info()
        info["action_substituted"] = executed != index
        if terminated or truncated:
            info.update(sim.summary())
        return float(reward), terminated, truncated, info

    def summary(self) -> dict[str, float | int]:
        """The episode summary so far (the same keys as the final ``info``)."""
        return dict(self._sim().summary())

    @property
    def episode_over(self) -> bool:
        """True once the episode has ended, which can happen at ``reset()`` already (e.g.
        every request of an LLMCluster episode rejected): then there is no action to take and
        :meth:`end_reason` says why."""
        return self.simulator is not None and bool(self.simulator.done)

    def end_reason(self) -> str | None:
        """Why the episode ended with no decision to make, or None (the simulator's
        ``end_reason()`` where it has one)."""
        reason = getattr(self.simulator, "end_reason", None)
        return reason() if callable(reason) else None

    def fork_memo(self) -> dict[int, Any]:
        """The simulator's :meth:`fork_memo` plus the env's own immutable part (its frozen
        config). The spaces are copied, not shared: each holds a random generator."""
        memo = self.simulator.fork_memo() if self.simulator is not None else {}
        memo[id(self.config)] = self.config
        return memo

    def render(self) -> Any:
        if self.render_mode is None:
            return None
        module = importlib.import_module(self.render_module)
        return getattr(module, f"render_{self.render_mode}")(self._sim())

    def _sim(self) -> SimT:
        """The simulator; raises InvalidActionError before the first reset."""
        if self.simulator is None:
            raise InvalidActionError("action: call reset() before step()")
        return self.simulator
