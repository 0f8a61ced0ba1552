"""SB3 integration: a features extractor wrapping an encoder, and a MaskablePPO policy whose
action logits are the encoder's per-candidate scores.

The extractor outputs ``[logits (A), value embedding (d)]``; the policy's latent split hands the
logits straight to sb3-contrib's masked categorical distribution (the mask is applied there,
before the softmax) and the embedding to a small value head. No ``A x A`` action layer exists:
the score of every action comes from the shared candidate head.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from schedgym.agents.nn import CandidateEncoder


def build_encoder(
    encoder: str, observation_space: spaces.Dict, layout: dict[str, Any], **kwargs: Any
) -> CandidateEncoder:
    """Instantiate ``module:Class`` ``encoder`` for the given space and layout."""
    module, name = encoder.split(":")
    cls = getattr(importlib.import_module(module), name)
    net = cls(observation_space, layout, **kwargs)
    if not isinstance(net, CandidateEncoder):
        raise TypeError(f"encoder: {encoder} is not a CandidateEncoder")
    return net


class ScoringExtractor(BaseFeaturesExtractor):
    """Features = per-candidate logits followed by the value embedding."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        encoder: str,
        layout: dict[str, Any],
        encoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        net = build_encoder(encoder, observation_space, layout, **(encoder_kwargs or {}))
        super().__init__(observation_space, features_dim=net.num_actions + net.value_dim)
        self.encoder = net
        self.num_actions = int(net.num_actions)
        self.value_dim = int(net.value_dim)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, value = self.encoder(observations)
        return torch.cat([logits, value], 1)


class _SplitLatent(nn.Module):
    """Splits the extractor's output into (logits, value embedding)."""

    def __init__(self, num_actions: int, value_dim: int) -> None:
        super().__init__()
        self.latent_dim_pi = num_actions
        self.latent_dim_vf = value_dim

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.latent_dim_pi]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, self.latent_dim_pi :]


class CandidateScoringPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy over a :class:`ScoringExtractor` (set it with
    ``features_extractor_class`` / ``features_extractor_kwargs``; ``net_arch`` is unused)."""

    def _build_mlp_extractor(self) -> None:
        extractor = self.features_extractor
        if not isinstance(extractor, ScoringExtractor):
            raise TypeError("features_extractor_class: must be ScoringExtractor")
        # SB3 declares an MlpExtractor; this split has the same interface (latent dims,
        # forward_actor, forward_critic).
        self.mlp_extractor = _SplitLatent(  # type: ignore[assignment]
            extractor.num_actions, extractor.value_dim
        )

    def _build(self, lr_schedule: Any) -> None:
        self._build_mlp_extractor()
        self.action_net = nn.Identity()
        dim = self.mlp_extractor.latent_dim_vf
        # SB3 declares a Linear value head; a small MLP is called the same way.
        self.value_net = nn.Sequential(  # type: ignore[assignment]
            nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1)
        )
        # Optimizer's own signature has no ``lr``; every concrete optimizer SB3 uses has one.
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def action_logits(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unmasked per-action scores of a batch of (preprocessed) observations."""
        features = self.extract_features(obs)
        if not isinstance(features, torch.Tensor):  # (pi, vf) pair: features not shared
            raise TypeError("features_extractor: CandidateScoringPolicy shares one extractor")
        return self.mlp_extractor.forward_actor(features)
