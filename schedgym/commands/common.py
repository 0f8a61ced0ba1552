"""What several subcommands share: turning ``--preset``/``--set`` into ``gymnasium.make`` keyword
arguments, checked before anything runs.

``--set FIELD=VALUE`` names either a config field of the environment or one of the arguments
``gymnasium.make`` itself takes (``render_mode``, ``max_episode_steps``,
``disable_env_checker``); each is checked here so that a bad value is one clear line, never an
error from deep inside Gymnasium.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from schedgym.core.config import canonical_overrides, parse_override, renamed_fields
from schedgym.core.errors import ConfigError

# Upper bound of --set max_episode_steps: far above any episode here, and it keeps the value an
# ordinary machine integer.
MAX_EPISODE_STEPS = 10**9
MAKE_ARGUMENTS = ("render_mode", "max_episode_steps", "disable_env_checker")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--preset`` and the repeatable ``--set FIELD=VALUE`` (read by :func:`make_kwargs`)."""
    parser.add_argument("--preset", default=None, help="a named config preset of the environment")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field (JSON value, else string); repeatable",
    )


def env_class(env_id: str) -> Any:
    """The environment class registered under ``env_id`` (a full ``schedgym/...`` id)."""
    from gymnasium.envs.registration import load_env_creator

    entry_point = gym.spec(env_id).entry_point
    return load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point


def make_kwargs(
    env_id: str,
    preset: str | None,
    set_texts: Sequence[str],
    reserved: Sequence[str] = (),
) -> dict[str, Any]:
    """The keyword arguments of ``gymnasium.make(env_id, ...)`` for ``--preset`` and ``--set``.

    Args:
        env_id: a full id (``schedgym/SoCDAG-v0``).
        preset: the ``--preset`` value, or None.
        set_texts: the ``--set FIELD=VALUE`` strings.
        reserved: fields the command sets itself (e.g. ``request_rate_per_s`` for
            ``capacity``).

    A deprecated field name is replaced by its new name, with a ``FutureWarning`` (see
    :func:`schedgym.core.config.canonical_overrides`).

    Raises:
        ConfigError: naming the field: one that is neither a config field nor a ``gymnasium.make``
            argument, a bad ``gymnasium.make`` argument, a reserved field (under its name or a
            deprecated one), a field given under both its name and a deprecated one, or
            ``preset`` given both as ``--preset`` and as ``--set preset=``.
    """
    cls = env_class(env_id)
    config_fields = {f.name for f in dataclasses.fields(cls.config_class)}
    renamed = renamed_fields(cls.config_class)
    kwargs: dict[str, Any] = {}
    for text in set_texts:
        field, value = parse_override(text)
        if field in reserved or renamed.get(field) in reserved:
            raise ConfigError(f"{field}: set by this command; do not override it")
        if field in kwargs:
            raise ConfigError(f"{field}: given twice with --set")
        if field == "preset":
            if preset is not None:
                raise ConfigError(
                    f"preset: given both as --preset {preset!r} and as --set preset={value!r}; "
                    "give it once"
                )
        elif field not in config_fields and field not in renamed and field not in MAKE_ARGUMENTS:
            raise ConfigError(
                f"{field}: unknown config field; known fields: {sorted(config_fields)}, "
                f"and the gymnasium.make arguments {list(MAKE_ARGUMENTS)}"
            )
        kwargs[field] = value
    kwargs = canonical_overrides(cls.config_class, kwargs)
    if preset is not None:
        kwargs["preset"] = preset
    if "preset" in kwargs and not isinstance(kwargs["preset"], str):
        raise ConfigError(f"preset: must be a preset name, got {kwargs['preset']!r}")
    _check_make_arguments(kwargs, cls)
    kwargs.setdefault("disable_env_checker", True)
    return kwargs


def _check_make_arguments(kwargs: dict[str, Any], cls: Any) -> None:
    render_modes = list(getattr(cls, "metadata", {}).get("render_modes", []))
    if "render_mode" in kwargs:
        mode = kwargs["render_mode"]
        if mode is not None and mode not in render_modes:
            raise ConfigError(f"render_mode: must be one of {render_modes} or null, got {mode!r}")
    if "max_episode_steps" in kwargs:
        steps = kwargs["max_episode_steps"]
        if steps is not None and (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 1 <= steps <= MAX_EPISODE_STEPS
        ):
            raise ConfigError(
                f"max_episode_steps: must be an integer in [1, {MAX_EPISODE_STEPS}] or null, "
                f"got {steps!r}"
            )
    if "disable_env_checker" in kwargs and not isinstance(kwargs["disable_env_checker"], bool):
        raise ConfigError(
            f"disable_env_checker: must be true or false, got {kwargs['disable_env_checker']!r}"
        )


# Seeds: Gymnasium takes any integer >= 0; the bound keeps seed + episodes a machine integer.
MAX_SEED = 2**63 - 1


def check_seeds(first_seed: int, episodes: int, field: str = "--seed") -> None:
    """Raise ConfigError unless seeds ``first_seed .. first_seed + episodes - 1`` are valid."""
    if not 0 <= first_seed <= MAX_SEED:
        raise ConfigError(f"{field}: must be in [0, {MAX_SEED}], got {first_seed}")
    if first_seed + episodes - 1 > MAX_SEED:
        raise ConfigError(
            f"{field}: the last seed {first_seed} + {episodes} - 1 exceeds {MAX_SEED}"
        )
