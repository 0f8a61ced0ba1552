"""The trained agent as a registered :class:`~schedgym.core.policy.Policy`.

``GNNPolicy(checkpoint)`` loads the checkpoint on the first ``reset`` (it needs the env to check
the layout), then acts greedily: the highest-scoring valid action. A checkpoint trained on an
augmented observation gets its extra keys added here (:mod:`schedgym.agents.augment`). Torch is
imported only here, when a ``gnn`` policy is built, so ``import schedgym`` never imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError


def require_agents_extra() -> None:
    """Raise a clear error when torch / sb3-contrib / torch-geometric are missing."""
    import importlib.util

    missing = [
        name
        for name in ("torch", "torch_geometric", "stable_baselines3", "sb3_contrib")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ConfigError(
            f"policy: the trained agents need the 'agents' extra (missing {missing}); "
            "pip install 'schedgym[agents]'"
        )


class GNNPolicy:
    """Greedy policy of a trained agent checkpoint (``.zip``)."""

    uses_observation = True

    def __init__(self, checkpoint: str | Path) -> None:
        require_agents_extra()
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise ConfigError(f"policy: no checkpoint at {str(self.checkpoint)!r}")
        self._network: Any = None
        self._env_key: Any = None
        self.metadata: dict[str, Any] = {}

    def incompatibility(self, env: Any) -> str | None:
        """Why the checkpoint cannot act in ``env`` (another env or observation layout), or
        None when it can. Reads the checkpoint's metadata only."""
        from schedgym.agents.checkpoint import check_compatible, read_metadata

        try:
            check_compatible(read_metadata(self.checkpoint), env, str(self.checkpoint))
        except ConfigError as error:
            return str(error)
        return None

    def reset(self, env: Any) -> None:
        from schedgym.agents.checkpoint import check_compatible, load_policy

        key = (id(env.unwrapped), env.unwrapped.spec.id if env.unwrapped.spec else None)
        if self._network is None:
            import torch

            # One decision's forward pass is a few small matrix products: intra-op threads
            # only add synchronisation, and on a loaded machine (leaderboard workers, other
            # jobs) a thread descheduled mid-product stalls the rest: a 100-request PrefillChunk
            # episode took 45 s with torch's two threads and 7 s with one.
            torch.set_num_threads(1)
            self._network, self.metadata = load_policy(self.checkpoint, env)
            self._env_key = key
        elif key != self._env_key:
            check_compatible(self.metadata, env, str(self.checkpoint))
            self._env_key = key

    def act(self, observation: Any, env: Any) -> int:
        from schedgym.agents.augment import augment

        if self._network is None:
            self.reset(env)
        observation = augment(self.metadata.get("observation_augmentation"), observation, env)
        return greedy_action(self._network, observation, env.unwrapped.action_masks())


def greedy_action(network: Any, observation: dict[str, Any], mask: Any) -> int:
    """The highest-scoring valid action of ``network`` (a CandidateScoringPolicy)."""
    import torch

    valid = np.asarray(mask, dtype=bool)
    if not valid.any():
        raise ConfigError("action_masks: no valid action to choose from")
    batch = {
        key: torch.as_tensor(np.asarray(value)[None], dtype=torch.float32)
        for key, value in observation.items()
    }
    with torch.no_grad():
        logits = network.action_logits(batch)[0].cpu().numpy()
    return int(np.argmax(np.where(valid, logits, -np.inf)))


class NetworkPolicy:
    """Greedy :class:`~schedgym.core.policy.Policy` over an in-memory network (validation): the
    observation goes to the network as it comes (training wraps its envs in the augmentation)."""

    uses_observation = True

    def __init__(self, network: Any) -> None:
        self.network = network

    def reset(self, env: Any) -> None:
        """Stateless."""

    def act(self, observation: Any, env: Any) -> int:
        return greedy_action(self.network, observation, env.unwrapped.action_masks())
