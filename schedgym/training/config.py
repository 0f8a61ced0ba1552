"""Hyperparameters: ``hyperparams/maskable_ppo.yml`` (``default`` merged with the env's entry),
optionally overridden by a user YAML file of the same shape (top-level keys, or keyed by env id).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from schedgym.core.errors import ConfigError

HYPERPARAMS_FILE = Path(__file__).parent / "hyperparams" / "maskable_ppo.yml"

# MaskablePPO constructor arguments the file may set.
PPO_KEYS = (
    "n_steps",
    "batch_size",
    "n_epochs",
    "learning_rate",
    "gamma",
    "gae_lambda",
    "clip_range",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "normalize_advantage",
    "target_kl",
)
OWN_KEYS = (
    "policy_kwargs",
    "scenarios",
    "bc_policy",
    "bc_episodes",
    "bc_steps_per_episode",
    "bc_epochs",
    "bc_learning_rate",
    "bc_batch_size",
    "bc_dagger_rounds",
    "observation_augmentation",
    "eval_episodes",
    "eval_scenarios",
    "eval_freq",
    "vec_env",
    "n_envs",
)
# How --n-envs > 1 environments run: worker processes, or in turn in the learner's process
# (where an env's step costs less than shipping its observation between processes).
VEC_ENVS = ("subproc", "dummy")


def _yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ModuleNotFoundError:
        raise ConfigError("config: reading YAML needs PyYAML (pip install pyyaml)") from None
    if not path.is_file():
        raise ConfigError(f"--config: no such file {str(path)!r}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], update: dict[str, Any], source: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if key not in PPO_KEYS and key not in OWN_KEYS:
            raise ConfigError(
                f"{source}: unknown hyperparameter {key!r}; known: {sorted(PPO_KEYS + OWN_KEYS)}"
            )
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_plain(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_plain(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_plain(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_hyperparams(env_id: str, config_file: str | Path | None = None) -> dict[str, Any]:
    """The hyperparameters of ``env_id``: shipped default, env entry, then ``config_file``."""
    shipped = _yaml(HYPERPARAMS_FILE)
    params = _merge({}, shipped.get("default", {}), f"{HYPERPARAMS_FILE.name}:default")
    params = _merge(params, shipped.get(env_id, {}) or {}, f"{HYPERPARAMS_FILE.name}:{env_id}")
    if config_file is not None:
        user = _yaml(Path(config_file))
        if env_id in user or "default" in user:
            for key in ("default", env_id):
                params = _merge(params, user.get(key, {}) or {}, f"--config {config_file}:{key}")
        else:
            params = _merge(params, user, f"--config {config_file}")
    scenarios = params.get("scenarios")
    if not isinstance(scenarios, list) or not scenarios:
        raise ConfigError("scenarios: must be a non-empty list of {preset: ..., field: value}")
    for key, low in (("n_steps", 2), ("batch_size", 2), ("eval_episodes", 1), ("eval_freq", 1)):
        if not isinstance(params.get(key), int) or params[key] < low:
            raise ConfigError(f"{key}: must be an integer >= {low}, got {params.get(key)!r}")
    return params


def eval_scenarios(params: dict[str, Any], scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation scenarios: ``eval_scenarios`` (indices into the training scenarios) or all."""
    chosen = params.get("eval_scenarios")
    if chosen is None:
        return scenarios
    if not isinstance(chosen, list) or not all(
        isinstance(i, int) and 0 <= i < len(scenarios) for i in chosen
    ):
        raise ConfigError(
            f"eval_scenarios: must be a list of indices in [0, {len(scenarios) - 1}], "
            f"got {chosen!r}"
        )
    return [scenarios[i] for i in chosen]


def scenarios_with_presets(
    params: dict[str, Any], presets: list[str] | None
) -> list[dict[str, Any]]:
    """``--preset`` given: one scenario per preset (no overrides); else the file's scenarios."""
    if presets:
        return [{"preset": p} for p in presets]
    return [dict(s) for s in params["scenarios"]]
