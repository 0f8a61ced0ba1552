"""Small building blocks shared by every encoder."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch import nn


class CandidateEncoder(nn.Module):
    """Base of the encoders: ``forward(obs)`` returns ``(per-action scores (batch,
    num_actions), value embedding (batch, value_dim))``."""

    num_actions: int
    value_dim: int


def box_shape(observation_space: spaces.Dict, key: str) -> tuple[int, ...]:
    """Shape of the Box ``observation_space[key]``."""
    shape: Any = observation_space[key].shape
    if shape is None:
        raise ValueError(f"observation_space: {key} has no shape")
    return tuple(shape)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log(1 + |x|)``: features of any scale (times up to tens of time units, ranks,
    ages that grow with load) become order one while keeping sign and order. Used as the
    normalisation inside every encoder, so it needs no statistics and is the same at train and
    test time."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """``layers`` linear layers with ReLU between them (and after the last, so outputs can be
    summed into candidate scores); a LayerNorm on the input keeps feature scales comparable."""
    modules: list[nn.Module] = [nn.LayerNorm(in_dim)]
    dim = in_dim
    for i in range(layers):
        modules.append(nn.Linear(dim, out_dim if i == layers - 1 else hidden))
        modules.append(nn.ReLU())
        dim = hidden
    return nn.Sequential(*modules)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` counting only entries where ``mask`` (broadcastable, 0/1)."""
    weight = mask.to(x.dtype)
    total = (x * weight).sum(dim)
    count = weight.sum(dim).clamp(min=1.0)
    return total / count


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Max of ``x`` over ``dim`` among masked-in entries (0 where none is)."""
    filled = x.masked_fill(~mask.bool(), float("-inf"))
    out = filled.amax(dim)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


class CandidateHead(nn.Module):
    """Scores candidates from a sum of projected parts: ``w . relu(sum_i W_i part_i) + b``.

    Each part is broadcast over the candidate axes, so one small set of weights scores every
    candidate whatever their number; the output layer starts near zero so the untrained policy
    is close to uniform over the valid actions.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.out = nn.Linear(hidden, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, summed: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(summed)).squeeze(-1)
