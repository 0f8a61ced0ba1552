"""Prompt and output lengths of LLM requests, in tokens.

- :class:`ShareGPTLengths`: the empirical joint distribution of 30,731 ShareGPT conversations
  (shipped in ``data/sharegpt_lengths.csv``, see ``data/NOTICE``); each request draws one
  conversation's (prompt, output) pair, so their correlation is kept.
- :class:`PowerLawLengths`: a discrete power law on ``[min_tokens, max_tokens]`` whose exponent
  is solved for a target mean, as Llumnix (Sun et al., OSDI 2024, Section 6.1) generates its
  short, medium and long distributions (means 128, 256, 512 tokens).
- :class:`FixedLengths`: every request the same.

All samplers implement ``sample(rng, n) -> (prompt_tokens, output_tokens)``, two ``(n,)`` int64
arrays of values >= 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Protocol

import numpy as np

from schedgym.core.config import require_number
from schedgym.core.errors import ConfigError

# Llumnix' short / medium / long power-law means, tokens (OSDI 2024, Table 2).
POWER_LAW_MEANS = {"short": 128.0, "medium": 256.0, "long": 512.0}


class LengthSampler(Protocol):
    """Draws ``(prompt_tokens, output_tokens)`` for ``n`` requests."""

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]: ...


@lru_cache(maxsize=1)
def sharegpt_pairs() -> np.ndarray:
    """``(30731, 2)`` int64: (prompt, output) tokens of each shipped ShareGPT conversation."""
    path = resources.files("schedgym.workloads").joinpath("data/sharegpt_lengths.csv")
    with resources.as_file(path) as file:
        table = np.loadtxt(file, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    table.setflags(write=False)
    return table


@dataclass(frozen=True)
class ShareGPTLengths:
    """Empirical ShareGPT (prompt, output) pairs, drawn uniformly with replacement.

    Attributes:
        max_total_tokens: drop conversations whose prompt + output exceed this (a model's context
            window, e.g. 4096 for Llama-2); ``None`` keeps all.
    """

    max_total_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_total_tokens is not None:
            require_number("max_total_tokens", self.max_total_tokens, 16, integer=True)
            if self.pairs().shape[0] == 0:
                raise ConfigError(
                    f"max_total_tokens: no ShareGPT conversation fits in {self.max_total_tokens}"
                )

    def pairs(self) -> np.ndarray:
        """The (prompt, output) pairs this sampler draws from."""
        table = sharegpt_pairs()
        if self.max_total_tokens is None:
            return table
        return _filtered_pairs(self.max_total_tokens)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        table = self.pairs()
        rows = table[rng.integers(0, table.shape[0], size=n)]
        return rows[:, 0].copy(), rows[:, 1].copy()


@lru_cache(maxsize=8)
def _filtered_pairs(max_total_tokens: int) -> np.ndarray:
    table = sharegpt_pairs()
    kept = table[table.sum(axis=1) <= max_total_tokens]
    kept.setflags(write=False)
    return kept


@lru_cache(maxsize=64)
def _power_law_cdf(mean: float, low: int, high: int) -> np.ndarray:
    """CDF over ``low..high`` of the power law ``p(l) ~ l**-alpha`` with the given mean."""
    values = np.arange(low, high + 1, dtype=np.float64)
    logs = np.log(values)

    def mean_for(alpha: float) -> float:
        log_weights = -alpha * logs
        weights = np.exp(log_weights - log_weights.max())
        return float((values * weights).sum() / weights.sum())

    lo_alpha, hi_alpha = -20.0, 20.0  # mean falls as alpha rises
    for _ in range(100):
        mid = 0.5 * (lo_alpha + hi_alpha)
        if mean_for(mid) > mean:
            lo_alpha = mid
        else:
            hi_alpha = mid
    log_weights = -0.5 * (lo_alpha + hi_alpha) * logs
    weights = np.exp(log_weights - log_weights.max())
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf.setflags(write=False)
    return cdf


def _check_power_law(field: str, mean: float, low: int, high: int) -> None:
    require_number(f"{field}_min_tokens", low, 1, integer=True)
    require_number(f"{field}_max_tokens", high, low + 1, 1_000_000, integer=True)
    require_number(
        f"{field}_mean_tokens", mean, low, high, low_inclusive=False, high_inclusive=False
    )


@dataclass(frozen=True)
class PowerLawLengths:
    """Independent discrete power laws for prompt and output lengths with the given means.

    Attributes:
        prompt_mean_tokens / output_mean_tokens: target means (strictly inside the range).
        min_tokens / max_tokens: the support, tokens (both ends included).
    """

    prompt_mean_tokens: float = 256.0
    output_mean_tokens: float = 256.0
    min_tokens: int = 1
    max_tokens: int = 6144

    def __post_init__(self) -> None:
        _check_power_law("prompt", self.prompt_mean_tokens, self.min_tokens, self.max_tokens)
        _check_power_law("output", self.output_mean_tokens, self.min_tokens, self.max_tokens)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for mean in (self.prompt_mean_tokens, self.output_mean_tokens):
            cdf = _power_law_cdf(float(mean), self.min_tokens, self.max_tokens)
            index = np.searchsorted(cdf, rng.random(n), side="right")
            out.append(np.minimum(index, cdf.size - 1).astype(np.int64) + self.min_tokens)
        return out[0], out[1]


@dataclass(frozen=True)
class FixedLengths:
    """Every request has the same prompt and output length (tokens)."""

    prompt_tokens: int = 512
    output_tokens: int = 128

    def __post_init__(self) -> None:
        require_number("prompt_tokens", self.prompt_tokens, 1, integer=True)
        require_number("output_tokens", self.output_tokens, 1, integer=True)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.full(n, self.prompt_tokens, np.int64),
            np.full(n, self.output_tokens, np.int64),
        )
