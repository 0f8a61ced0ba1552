"""Every schedgym environment id, in one table.

Registration is idempotent and runs on ``import schedgym``. Code that never imports schedgym
(a generic training script that takes an env id string) uses Gymnasium's own form,
``gymnasium.make("schedgym:schedgym/SoCDAG-v0")``: Gymnasium imports the module named before the
colon, which registers the ids. Nothing of schedgym runs at interpreter start-up (no ``.pth``
hook): Gymnasium 1.x does not load the ``gymnasium.envs`` entry point (still declared for tools
that read it), and a start-up hook could break every Python program in the environment.
Any change to dynamics, reward, observation or workload is a new version; old ones stay here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from schedgym.core.policy import register_policy_module


@dataclass(frozen=True)
class EnvEntry:
    """One registered environment."""

    env_id: str
    entry_point: str
    policies_module: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    # A small, fast preset used by the registry-wide tests and smoke runs.
    smoke_preset: str | None = None


ENVS: tuple[EnvEntry, ...] = (
    EnvEntry(
        "schedgym/SoCDAG-v0",
        "schedgym.envs.soc.env:SoCDAGEnv",
        "schedgym.baselines.soc",
        smoke_preset="tiny",
    ),
    EnvEntry(
        "schedgym/LLMCluster-v0",
        "schedgym.envs.llmcluster.env:LLMClusterEnv",
        "schedgym.baselines.llm",
        smoke_preset="tiny",
    ),
    EnvEntry(
        "schedgym/MeshAssign-v0",
        "schedgym.envs.mesh.env:MeshAssignEnv",
        "schedgym.baselines.mesh",
        smoke_preset="tiny",
    ),
    EnvEntry(
        "schedgym/PrefillChunk-v0",
        "schedgym.envs.prefillchunk.env:PrefillChunkEnv",
        "schedgym.baselines.prefill",
        smoke_preset="tiny",
    ),
    EnvEntry(
        "schedgym/PrefixBatch-v0",
        "schedgym.envs.prefixbatch.env:PrefixBatchEnv",
        "schedgym.baselines.prefix",
        smoke_preset="tiny",
    ),
    EnvEntry(
        "schedgym/OnlineDataGen-v0",
        "schedgym.envs.datagen.env:OnlineDataGenEnv",
        "schedgym.baselines.datagen",
        smoke_preset="tiny",
    ),
)


# Families with groupwise-regret policies -> the module that registers them.
REGRET_POLICY_MODULES: dict[str, str] = {
    "SoCDAG": "schedgym.baselines.regret_soc",
    "MeshAssign": "schedgym.baselines.regret_mesh",
    "PrefillChunk": "schedgym.baselines.regret_prefill",
    "PrefixBatch": "schedgym.baselines.regret_prefix",
    "OnlineDataGen": "schedgym.baselines.regret_datagen",
    "LLMCluster": "schedgym.baselines.regret_llm",
}


def env_ids() -> list[str]:
    """Every registered id, e.g. ``schedgym/SoCDAG-v0``."""
    return [entry.env_id for entry in ENVS]


def env_entry(env_id: str) -> EnvEntry:
    """The table row of ``env_id`` (with or without the ``schedgym/`` namespace)."""
    from schedgym.core.errors import ConfigError

    full = env_id if env_id.startswith("schedgym/") else f"schedgym/{env_id}"
    for entry in ENVS:
        if entry.env_id == full:
            return entry
    raise ConfigError(f"env: unknown environment {env_id!r}; known: {env_ids()}")


def register_envs() -> None:
    """Register every id with Gymnasium and declare where each family's policies live."""
    from schedgym.core.policy import env_family

    for entry in ENVS:
        if entry.env_id not in gym.registry:
            gym.register(
                id=entry.env_id,
                entry_point=entry.entry_point,
                kwargs=dict(entry.kwargs),
                max_episode_steps=entry.max_episode_steps,
            )
        register_policy_module(env_family(entry.env_id), entry.policies_module)
    # Groupwise-regret policies (regret-heft, regret-portfolio) live in their own modules.
    for family, module in REGRET_POLICY_MODULES.items():
        register_policy_module(family, module)
