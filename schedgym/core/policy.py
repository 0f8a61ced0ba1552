"""The Policy protocol and the per-environment policy registry.

One interface serves baselines, learned agents and leaderboard entries::

    policy.reset(env)
    action = policy.act(observation, env)

``env`` is the Gymnasium env (possibly wrapped); policies that read simulator state use
``env.unwrapped.simulator``'s read-only view, never its future (sampled noise, pending arrivals).

Policies are registered per environment family, the env id without its version (``SoCDAG`` for
``schedgym/SoCDAG-v0``), so every version of an environment shares its baselines.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from schedgym.core.errors import ConfigError

SimT = TypeVar("SimT")


@runtime_checkable
class Policy(Protocol):
    """What every policy implements."""

    def reset(self, env: Any) -> None:
        """Prepare for a new episode on ``env`` (called after ``env.reset``)."""

    def act(self, observation: Any, env: Any) -> Any:
        """Return the action for ``observation`` (must satisfy ``env.action_masks()``)."""


class SimulatorReader(Generic[SimT]):
    """Typed access to the simulator behind an env, for code that reads its view (policies,
    portfolio adapters): ``SimulatorReader[SoCSimulator]`` makes :meth:`simulator` return a
    ``SoCSimulator``."""

    @staticmethod
    def simulator(env: Any) -> SimT:
        """The simulator behind ``env`` (through any Gymnasium wrappers)."""
        return env.unwrapped.simulator


class SimulatorPolicy(SimulatorReader[SimT], ABC):
    """Base of heuristics that read the simulator's view instead of the observation.

    Generic in the simulator type it reads (``SimulatorPolicy[SoCSimulator]``), so that
    :meth:`simulator` is typed. ``uses_observation = False`` lets
    :func:`schedgym.core.rollout.run_episode` skip building observations (``env.advance``);
    such a policy receives ``None`` as observation there.
    """

    uses_observation = False

    def reset(self, env: Any) -> None:
        """Nothing to reset by default."""

    @abstractmethod
    def act(self, observation: Any, env: Any) -> Any:
        """The action for the current decision (``observation`` may be None)."""


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy: its factory and a one-line description."""

    family: str
    name: str
    factory: Callable[..., Policy]
    description: str


_POLICIES: dict[str, dict[str, PolicySpec]] = {}
# Which module registers each family's policies; filled by schedgym.registration.
_POLICY_MODULES: dict[str, list[str]] = {}
# Policies named by a file path, by suffix (``.zip`` -> a trained agent checkpoint).
_PATH_POLICIES: dict[str, Callable[..., Policy]] = {}


def env_family(env_id: str) -> str:
    """``schedgym/SoCDAG-v0`` or ``SoCDAG-v0`` or ``SoCDAG`` -> ``SoCDAG``."""
    name = env_id.split("/")[-1]
    return re.sub(r"-v\d+$", "", name)


def register_policy_module(family: str, module: str) -> None:
    """Declare that importing ``module`` registers policies of ``family`` (imported lazily)."""
    modules = _POLICY_MODULES.setdefault(family, [])
    if module not in modules:
        modules.append(module)


def register_policy(
    family: str, name: str, factory: Callable[..., Policy], description: str = ""
) -> None:
    """Register ``factory`` under ``name`` for ``family`` (the same name again replaces it)."""
    _POLICIES.setdefault(family, {})[name] = PolicySpec(family, name, factory, description)


def register_path_policy(suffix: str, factory: Callable[..., Policy]) -> None:
    """Policies named by a path ending in ``suffix`` are built by ``factory(path, **kwargs)``."""
    _PATH_POLICIES[suffix] = factory


def unregister_policy(family: str, name: str) -> None:
    """Remove policy ``name`` of ``family`` (a no-op when absent); for tests and plugins."""
    _POLICIES.get(family, {}).pop(name, None)


def _load(family: str) -> dict[str, PolicySpec]:
    for module in _POLICY_MODULES.get(family, []):
        importlib.import_module(module)
    return _POLICIES.get(family, {})


def policy_names(env_id: str) -> list[str]:
    """Names of the policies registered for ``env_id``'s family, in registration order."""
    return list(_load(env_family(env_id)))


def policy_spec(env_id: str, name: str) -> PolicySpec:
    """The spec of policy ``name`` for ``env_id``."""
    registered = _load(env_family(env_id))
    for suffix, factory in _PATH_POLICIES.items():
        if name.endswith(suffix) and name not in registered:
            return PolicySpec(
                env_family(env_id), name, partial(factory, name), f"policy loaded from {name}"
            )
    if name not in registered:
        raise ConfigError(
            f"policy: unknown policy {name!r} for {env_id}; known: {sorted(registered)}"
        )
    return registered[name]


def make_policy(env_id: str, name: str, **kwargs: Any) -> Policy:
    """Instantiate the registered policy ``name`` for ``env_id``."""
    return policy_spec(env_id, name).factory(**kwargs)
