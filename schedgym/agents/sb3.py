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

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
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


# sb3-contrib's logit for a masked action (``MaskableCategorical``): its probability is exactly
# zero in float32, and p log p is 0 rather than NaN.
MASKED_LOGIT = -1.0e8


class ValidActionsCategorical:
    """The masked categorical distribution of sb3-contrib's ``MaskableCategorical``, computed
    over each row's valid actions only.

    sb3-contrib fills every masked logit with ``MASKED_LOGIT`` and normalises, exponentiates and
    sums over all ``A`` actions (three log-sum-exps of the whole row). Here each row's valid
    logits are packed into a ``(batch, most valid actions in a row)`` block, the padding of
    shorter rows set to ``MASKED_LOGIT``: the same probabilities (a masked action's is exactly
    zero there too), log-probabilities, entropy and gradients, at the cost of the few valid
    actions (a few hundred of SoCDAG's 6529). ``exp`` of the underflowing fill is also several
    times slower than of an ordinary number on CPU, and here it runs over the padding alone.
    Samples are drawn over the packed block, so the same seed draws other actions than
    sb3-contrib's ``torch.multinomial`` over the full row would (same distribution).
    """

    def __init__(self, logits: torch.Tensor, masks: torch.Tensor | None) -> None:
        self.logits = logits
        batch = logits.shape[0]
        if masks is None:
            masks = torch.ones_like(logits, dtype=torch.bool)
        rows, columns = masks.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=batch)
        width = max(int(counts.max()), 1) if batch else 1
        rank = (
            torch.arange(rows.shape[0], device=logits.device)
            - (torch.cumsum(counts, 0) - counts)[rows]
        )
        # Padding points at action 0 and is masked below.
        self.index = torch.zeros(batch, width, dtype=torch.long, device=logits.device)
        self.index[rows, rank] = columns
        self.valid = torch.zeros(batch, width, dtype=torch.bool, device=logits.device)
        self.valid[rows, rank] = True
        packed = logits.gather(1, self.index).masked_fill(~self.valid, MASKED_LOGIT)
        self.log_norm = packed.logsumexp(1)
        self.log_probs = packed - self.log_norm.unsqueeze(1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        chosen = self.logits.gather(1, actions.long().reshape(-1, 1)).squeeze(1)
        return chosen - self.log_norm

    def entropy(self) -> torch.Tensor:
        p_log_p = self.log_probs.exp() * self.log_probs
        return -p_log_p.masked_fill(~self.valid, 0.0).sum(1)

    def sample(self) -> torch.Tensor:
        packed = torch.multinomial(self.log_probs.exp(), 1)
        return self.index.gather(1, packed).squeeze(1)

    def mode(self) -> torch.Tensor:
        return self.index.gather(1, self.log_probs.argmax(1, keepdim=True)).squeeze(1)


class ValidActionsDistribution(MaskableCategoricalDistribution):
    """sb3-contrib's masked categorical distribution as :class:`ValidActionsCategorical`
    computes it (same interface: ``proba_distribution(logits)``, then ``apply_masking``, then
    sampling or log-probabilities; the packing waits for the mask)."""

    def __init__(self, action_dim: int) -> None:
        super().__init__(action_dim)
        self.logits: torch.Tensor | None = None
        self.masks: torch.Tensor | None = None
        self._packed: ValidActionsCategorical | None = None

    @property
    def distribution(self) -> ValidActionsCategorical:  # type: ignore[override]
        if self._packed is None:
            if self.logits is None:
                raise RuntimeError("distribution: call proba_distribution first")
            self._packed = ValidActionsCategorical(self.logits, self.masks)
        return self._packed

    def proba_distribution(self, action_logits: torch.Tensor) -> ValidActionsDistribution:
        self.logits = action_logits.view(-1, self.action_dim)
        self.masks = None
        self._packed = None
        return self

    def apply_masking(self, masks: torch.Tensor | np.ndarray | None) -> None:
        if self.logits is None:
            raise RuntimeError("apply_masking: call proba_distribution first")
        self.masks = (
            None
            if masks is None
            else torch.as_tensor(masks, dtype=torch.bool, device=self.logits.device).reshape(
                self.logits.shape
            )
        )
        self._packed = None

    def mode(self) -> torch.Tensor:
        return self.distribution.mode()


def scoring_policy_kwargs(
    encoder: str, layout: dict[str, Any], encoder_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``policy_kwargs`` that make :class:`CandidateScoringPolicy` score with ``encoder``
    (a name of :mod:`schedgym.agents.layouts`) over an observation ``layout``."""
    return {
        "features_extractor_class": ScoringExtractor,
        "features_extractor_kwargs": {
            "encoder": encoder,
            "layout": layout,
            "encoder_kwargs": dict(encoder_kwargs or {}),
        },
    }


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
        # Set by MaskableActorCriticPolicy's __init__ just before _build: the same
        # distribution, computed over the valid actions only (see ValidActionsCategorical).
        num_actions = self.action_dist.action_dim  # type: ignore[attr-defined]
        self.action_dist = ValidActionsDistribution(num_actions)
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
