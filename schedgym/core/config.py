"""Validation and override helpers for the frozen config dataclasses of every environment.

Each environment's config is a frozen dataclass that validates itself in ``__post_init__`` with the
``require_*`` helpers below, so a bad value fails at construction with a :class:`ConfigError` whose
message starts with the field name and states the allowed range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from schedgym.core.errors import ConfigError

ConfigT = TypeVar("ConfigT")


def require_number(
    field: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """Raise ConfigError unless ``value`` is a finite number inside the given range."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{field}: must be {kind}, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{field}: must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{field}: must be finite, got {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{field}: must be in {left}{lo}, {hi}{right}, got {value!r}")


def require_choice(field: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    allowed = list(choices)
    if value not in allowed:
        raise ConfigError(f"{field}: must be one of {allowed}, got {value!r}")


def require_probabilities(field: str, mapping: Any, keys: Iterable[str]) -> dict[str, float]:
    """Validate a mapping of names to non-negative weights and return it normalised to sum 1."""
    allowed = list(keys)
    if not isinstance(mapping, Mapping) or not mapping:
        raise ConfigError(f"{field}: must be a non-empty mapping from {allowed} to weights")
    out: dict[str, float] = {}
    for key, weight in mapping.items():
        if key not in allowed:
            raise ConfigError(f"{field}: unknown key {key!r}, allowed {allowed}")
        require_number(f"{field}[{key}]", weight, 0.0)
        out[key] = float(weight)
    largest = max(out.values())
    if largest <= 0.0:
        raise ConfigError(f"{field}: weights must sum to a positive number, got 0")
    # Scaled by the largest weight first, so that huge weights (1e308 each) cannot overflow the
    # sum: only the ratios matter.
    scaled = {key: weight / largest for key, weight in out.items()}
    total = sum(scaled.values())
    return {key: scaled[key] / total for key in allowed if key in scaled}


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``FIELD=VALUE`` (VALUE as JSON where it parses, else the plain string)."""
    if "=" not in text:
        raise ConfigError(f"--set: expected FIELD=VALUE, got {text!r}")
    field, raw = text.split("=", 1)
    field = field.strip()
    if not field.isidentifier():
        raise ConfigError(f"--set: {field!r} is not a field name (in {text[:80]!r})")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return field, value


def renamed_fields(config_cls: type) -> Mapping[str, str]:
    """A config class's deprecated field names and their new names (its ``renamed_fields``)."""
    renamed: Mapping[str, str] = getattr(config_cls, "renamed_fields", {})
    return renamed


def canonical_overrides(config_cls: type, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with each deprecated field name of ``config_cls`` replaced by its new name.

    A config class lists the names it renamed in a ``renamed_fields`` class attribute (old name
    -> new name). An old name still works for one version: it is replaced, with a
    ``FutureWarning`` (shown by default, since ``--set`` lines are written by users, not only by
    developers) that names the new field. Other names pass through unchanged.

    Raises:
        ConfigError: naming the new field, when both it and its old name are given.
    """
    renamed = renamed_fields(config_cls)
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        new_name = renamed.get(name)
        if new_name is None:
            out[name] = value
            continue
        if new_name in overrides or new_name in out:
            raise _both_given(new_name, renamed)
        warnings.warn(
            f"{name}: renamed to {new_name}; the old name is deprecated and will stop working "
            f"in the next version of schedgym (set {new_name} instead)",
            FutureWarning,
            stacklevel=3,
        )
        out[new_name] = value
    return out


def _both_given(new_name: str, renamed: Mapping[str, str]) -> ConfigError:
    old = sorted(old for old, new in renamed.items() if new == new_name)
    return ConfigError(
        f"{new_name}: given both under its name and under its deprecated name "
        f"{' / '.join(old)}; give it once, as {new_name}"
    )


def with_overrides(config: ConfigT, overrides: Mapping[str, Any]) -> ConfigT:
    """Return a copy of a config dataclass with fields replaced (and re-validated).

    Raises:
        ConfigError: for a field the config does not have, or a value its validation rejects.
    """
    if not overrides:
        return config
    overrides = canonical_overrides(type(config), overrides)
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    for field in overrides:
        if field not in names:
            raise ConfigError(f"{field}: unknown config field; known fields: {sorted(names)}")
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def resolve_config(
    config_cls: type[ConfigT],
    presets: Mapping[str, Mapping[str, Any]],
    config: ConfigT | None,
    preset: str | None,
    overrides: Mapping[str, Any],
) -> ConfigT:
    """The config an env is built with: an explicit config, or a preset (default: the defaults),
    then field overrides on top (deprecated field names mapped, see
    :func:`canonical_overrides`)."""
    if config is not None and preset is not None:
        raise ConfigError("preset: give either config or preset, not both")
    overrides = canonical_overrides(config_cls, overrides)
    if config is None:
        if preset is not None and preset not in presets:
            raise ConfigError(f"preset: unknown preset {preset!r}, known: {sorted(presets)}")
        base = dict(presets[preset]) if preset is not None else {}
        base.update(overrides)
        names = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
        for field in base:
            if field not in names:
                raise ConfigError(f"{field}: unknown config field; known fields: {sorted(names)}")
        return _construct(lambda: config_cls(**base), overrides)
    if not isinstance(config, config_cls):
        raise ConfigError(f"config: must be a {config_cls.__name__}, got {type(config).__name__}")
    return _construct(lambda: with_overrides(config, overrides), overrides)


def _construct(build: Any, overrides: Mapping[str, Any]) -> Any:
    """``build()``, with any error a field's validation did not name (a value of a type no check
    expected) reported as a ConfigError naming the overridden fields."""
    try:
        return build()
    except ConfigError:
        raise
    except (TypeError, ValueError, ArithmeticError, KeyError) as error:
        fields = ", ".join(sorted(overrides)) or "config"
        raise ConfigError(f"{fields}: invalid value ({type(error).__name__}: {error})") from None
