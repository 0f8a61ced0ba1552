"""Training environments: a mix of scenarios (presets plus overrides) behind one env, with the
agent's observation augmentation (``observation_augmentation`` in the hyperparameters, see
:mod:`schedgym.agents.augment`) applied to every scenario's env.

Lives in an importable module because SubprocVecEnv starts workers with forkserver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.agents.augment import AugmentObservation
from schedgym.agents.layouts import observation_shapes
from schedgym.core.env import SchedulingEnv
from schedgym.core.errors import ConfigError


def scheduling_env(env: gym.Env) -> SchedulingEnv[Any, Any]:
    """The schedgym environment under ``env``'s wrappers."""
    unwrapped = env.unwrapped
    if not isinstance(unwrapped, SchedulingEnv):
        raise ConfigError(f"env: {type(unwrapped).__name__} is not a schedgym environment")
    return unwrapped


def num_actions(env: gym.Env) -> int:
    """Size of ``env``'s discrete action space."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise ConfigError(f"action_space: training needs a Discrete space, got {space}")
    return int(space.n)


def make_scenario_env(
    env_id: str, scenario: dict[str, Any], augmentation: str | None = None
) -> gym.Env:
    """``gym.make(env_id, **scenario)`` without the passive checker (it costs per step), its
    observations augmented by ``augmentation`` when one is named."""
    env = gym.make(env_id, disable_env_checker=True, **scenario)
    return env if augmentation is None else AugmentObservation(env, augmentation)


class ScenarioMixEnv(gym.Env):
    """Draws one of several scenarios of the same environment per episode.

    All scenarios must share observation shapes and action count (same padding), so one network
    serves them. The draw comes from this env's own ``np_random``, so seeding the first reset
    fixes the whole sequence of scenarios and episodes.
    """

    def __init__(
        self, env_id: str, scenarios: list[dict[str, Any]], augmentation: str | None = None
    ) -> None:
        if not scenarios:
            raise ConfigError("scenarios: need at least one")
        self.envs = [make_scenario_env(env_id, s, augmentation) for s in scenarios]
        self.scenarios = scenarios
        first = self.envs[0]
        for scenario, env in zip(scenarios, self.envs, strict=True):
            if observation_shapes(env.observation_space) != observation_shapes(
                first.observation_space
            ) or (num_actions(env) != num_actions(first)):
                raise ConfigError(
                    f"scenarios: {scenario} has other observation shapes or actions than "
                    f"{scenarios[0]}; mixed scenarios must share their padding"
                )
        self.observation_space = first.observation_space
        self.action_space: gym.spaces.Discrete = gym.spaces.Discrete(num_actions(first))
        self.current = first
        self.scenario_index = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.scenario_index = int(self.np_random.integers(len(self.envs)))
        self.current = self.envs[self.scenario_index]
        episode_seed = int(self.np_random.integers(2**31 - 1))
        return self.current.reset(seed=episode_seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.current.step(action)
        return observation, float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """The current scenario's valid actions."""
        return np.asarray(scheduling_env(self.current).action_masks(), dtype=bool)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def mix_env_factory(
    env_id: str, scenarios: list[dict[str, Any]], augmentation: str | None = None
) -> Callable[[], gym.Env]:
    """A picklable factory of a monitored :class:`ScenarioMixEnv` (for SB3's vec envs)."""
    return _Factory(env_id, scenarios, augmentation)


class _Factory:
    def __init__(
        self, env_id: str, scenarios: list[dict[str, Any]], augmentation: str | None = None
    ) -> None:
        self.env_id = env_id
        self.scenarios = scenarios
        self.augmentation = augmentation

    def __call__(self) -> gym.Env:
        from stable_baselines3.common.monitor import Monitor

        import schedgym  # noqa: F401  (registers the ids in a fresh worker)

        return Monitor(ScenarioMixEnv(self.env_id, self.scenarios, self.augmentation))
