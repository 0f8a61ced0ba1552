"""Sequence-length mixtures for training data: lognormal bodies with Pareto tails, in tokens.

Training corpora mix many short documents with a heavy tail of long ones (code repositories, books,
long-context synthetic data). A :class:`LengthMixture` is a weighted mixture of components, each
one of

- ``("lognormal", weight, median_tokens, sigma)``: ``median * exp(sigma * Z)``;
- ``("pareto", weight, min_tokens, alpha)``: ``P(S > x) = (min_tokens / x)^alpha`` for
  ``x >= min_tokens`` (alpha <= 1 has an infinite mean before truncation, a very heavy tail);
- ``("uniform", weight, low_tokens, high_tokens)``: uniform on ``[low, high]``;

with every draw rounded and clipped to ``[min_tokens, max_tokens]`` (a context window of up to
2M tokens, as in ByteScale). Nothing here is specific to one environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.core.config import require_choice, require_number
from schedgym.core.errors import ConfigError

COMPONENT_KINDS = ("lognormal", "pareto", "uniform")
# The longest context the mixtures are meant for (ByteScale trains at 2048K).
MAX_CONTEXT_TOKENS = 2_097_152
# Draws per call while filling a batch: large enough to amortise numpy's call overhead.
_CHUNK = 256

Component = tuple[str, float, float, float]


def validate_components(field: str, components: Any) -> tuple[Component, ...]:
    """Check a component list and return it as a tuple of ``(kind, weight, a, b)`` tuples.

    Raises:
        ConfigError: naming ``field[i]`` and the offending value.
    """
    if isinstance(components, (str, bytes)) or not isinstance(components, Sequence):
        raise ConfigError(f"{field}: must be a list of (kind, weight, a, b) components")
    if not components:
        raise ConfigError(f"{field}: must hold at least one component")
    out: list[Component] = []
    for i, comp in enumerate(components):
        name = f"{field}[{i}]"
        if isinstance(comp, (str, bytes)) or not isinstance(comp, Sequence) or len(comp) != 4:
            raise ConfigError(f"{name}: must be (kind, weight, a, b), got {comp!r}")
        kind, weight, a, b = comp
        require_choice(f"{name}.kind", kind, COMPONENT_KINDS)
        require_number(f"{name}.weight", weight, 0.0)
        if kind == "lognormal":
            require_number(f"{name}.median_tokens", a, 1.0, float(MAX_CONTEXT_TOKENS))
            require_number(f"{name}.sigma", b, 0.0, 5.0)
        elif kind == "pareto":
            require_number(f"{name}.min_tokens", a, 1.0, float(MAX_CONTEXT_TOKENS))
            require_number(f"{name}.alpha", b, 0.1, 10.0)
        else:
            require_number(f"{name}.low_tokens", a, 1.0, float(MAX_CONTEXT_TOKENS))
            require_number(f"{name}.high_tokens", b, float(a), float(MAX_CONTEXT_TOKENS))
        out.append((str(kind), float(weight), float(a), float(b)))
    if sum(c[1] for c in out) <= 0.0:
        raise ConfigError(f"{field}: component weights must sum to a positive number")
    return tuple(out)


@dataclass(frozen=True)
class LengthMixture:
    """A mixture of length distributions clipped to ``[min_tokens, max_tokens]``.

    Args:
        components: ``(kind, weight, a, b)`` tuples, see the module docstring.
        min_tokens: shortest sequence.
        max_tokens: longest sequence (at most 2,097,152).
    """

    components: tuple[Component, ...]
    min_tokens: int = 1
    max_tokens: int = MAX_CONTEXT_TOKENS

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", validate_components("components", self.components))
        require_number("min_tokens", self.min_tokens, 1, MAX_CONTEXT_TOKENS, integer=True)
        require_number(
            "max_tokens", self.max_tokens, self.min_tokens, MAX_CONTEXT_TOKENS, integer=True
        )
        weights = np.array([c[1] for c in self.components])
        object.__setattr__(self, "_probs", weights / weights.sum())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n,)`` int64 lengths drawn from the mixture."""
        probs: np.ndarray = self._probs  # type: ignore[attr-defined]
        which = rng.choice(len(self.components), size=n, p=probs)
        uniform = rng.random(n)
        normal = rng.standard_normal(n)
        out = np.empty(n, np.float64)
        for index, (kind, _, a, b) in enumerate(self.components):
            sel = which == index
            if not sel.any():
                continue
            if kind == "lognormal":
                out[sel] = a * np.exp(b * normal[sel])
            elif kind == "pareto":
                # Inverse CDF; 1 - u lies in (0, 1], so the power is finite.
                out[sel] = a * (1.0 - uniform[sel]) ** (-1.0 / b)
            else:
                out[sel] = a + (b - a) * uniform[sel]
        clipped = np.clip(np.rint(out), self.min_tokens, self.max_tokens)
        return clipped.astype(np.int64)

    def sample_batch(self, rng: np.random.Generator, budget_tokens: int) -> np.ndarray:
        """Sequences in draw order whose total stays within ``budget_tokens``.

        Draws until the next sequence would overflow the budget (that one is dropped, as a data
        loader that fills a global batch of fixed token count does). A first draw longer than the
        whole budget is truncated to it, so a batch is never empty.
        """
        require_number("budget_tokens", budget_tokens, 1, integer=True)
        parts: list[np.ndarray] = []
        total = 0
        while True:
            chunk = self.sample(rng, _CHUNK)
            cumulative = total + np.cumsum(chunk)
            over = np.flatnonzero(cumulative > budget_tokens)
            if over.size:
                parts.append(chunk[: over[0]])
                break
            parts.append(chunk)
            total = int(cumulative[-1])
        lengths = np.concatenate(parts)
        if lengths.size == 0:
            lengths = np.array([budget_tokens], np.int64)
        return lengths

    def token_share_above(
        self, rng: np.random.Generator, threshold_tokens: int, n: int = 100_000
    ) -> float:
        """Monte-Carlo share of tokens in sequences longer than ``threshold_tokens``."""
        draws = self.sample(rng, n)
        return float(draws[draws > threshold_tokens].sum() / draws.sum())
