"""Which policies a leaderboard run evaluates, and how each is built in a worker.

A policy is either a name registered for the environment's family (the baselines, learned agents
such as ``gnn`` once their package registers them) or a third-party entry written
``package.module:callable``: a Policy class or factory, called as ``callable(env_id)`` when it
takes an argument and ``callable()`` otherwise, whose result implements ``reset``/``act``.

Registered policies whose optional dependency is missing (a learned agent without torch) are
skipped with a note when the run includes every registered policy, and are an error when asked
for by name.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from schedgym.core.errors import ConfigError
from schedgym.core.policy import Policy, make_policy, policy_names, policy_spec

BASELINE_MODULE_PREFIX = "schedgym.baselines"
AGENTS_MODULE_PREFIX = "schedgym.agents"


def is_external(name: str) -> bool:
    """True for a third-party ``package.module:callable`` entry."""
    return ":" in name


def build_policy(env_id: str, name: str) -> Policy:
    """A fresh instance of policy ``name`` for ``env_id`` (registered or ``module:callable``)."""
    if not is_external(name):
        return make_policy(env_id, name)
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--policy: {name!r} must be package.module:callable")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"--policy: cannot import {module_name!r} ({error})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"--policy: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"--policy: {name!r} is not callable")
    policy = target(env_id) if _takes_argument(target) else target()
    if not (callable(getattr(policy, "reset", None)) and callable(getattr(policy, "act", None))):
        raise ConfigError(f"--policy: {name!r} returned an object without reset() and act()")
    return policy


def _takes_argument(factory: Any) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        for p in parameters
    )


def policy_kind(env_id: str, name: str) -> str:
    """``baseline`` (shipped heuristics), ``learned`` (shipped agents) or ``entry`` (the rest)."""
    if is_external(name):
        return "entry"
    factory = policy_spec(env_id, name).factory
    while isinstance(factory, functools.partial):  # registered with bound arguments
        factory = factory.func
    module = getattr(factory, "__module__", "") or ""
    if module.startswith(BASELINE_MODULE_PREFIX):
        return "baseline"
    return "learned" if module.startswith(AGENTS_MODULE_PREFIX) else "entry"


def is_baseline(env_id: str, name: str) -> bool:
    """True for the heuristic baselines shipped in ``schedgym.baselines``."""
    return policy_kind(env_id, name) == "baseline"


@dataclass(frozen=True)
class PolicySelection:
    """The policies of one environment a run evaluates, and notes on those it skipped."""

    env_id: str
    names: tuple[str, ...]
    notes: tuple[str, ...]


def select_policies(env_id: str, requested: list[str] | None) -> PolicySelection:
    """The policies to evaluate on ``env_id``.

    Args:
        env_id: the environment.
        requested: names from ``--policy`` (None: every registered policy). A registered name
            that does not exist for this environment is skipped with a note when other
            environments have it (``--policy heft`` with several environments), else an error.
    """
    registered = policy_names(env_id)
    if requested is None:
        candidates, explicit = registered, False
    else:
        candidates, explicit = list(dict.fromkeys(requested)), True
    names: list[str] = []
    notes: list[str] = []
    for name in candidates:
        if not is_external(name) and not _known(env_id, name):
            notes.append(f"{env_id}: no policy {name!r} (known: {', '.join(registered)})")
            continue
        problem = _construction_problem(env_id, name)
        if problem is None:
            names.append(name)
        elif explicit:
            raise ConfigError(f"--policy: {name} on {env_id}: {problem}")
        else:
            notes.append(f"{env_id}: skipped {name!r}: {problem}")
    return PolicySelection(env_id, tuple(names), tuple(notes))


def _known(env_id: str, name: str) -> bool:
    try:
        policy_spec(env_id, name)
    except ConfigError:
        return False
    return True


def _construction_problem(env_id: str, name: str) -> str | None:
    """None when the policy can be built here, else why not (one line)."""
    try:
        build_policy(env_id, name)
    except ImportError as error:
        missing = getattr(error, "name", None) or str(error)
        return (
            f"needs the optional dependency {missing!r} "
            "(pip install 'schedgym[agents]' for learned agents)"
        )
    except ConfigError as error:
        if is_external(name):
            raise
        return str(error)
    except (FileNotFoundError, RuntimeError) as error:
        return f"cannot be built ({error})"
    return None
