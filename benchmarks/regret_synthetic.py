"""Synthetic data for the groupwise regressor's regret proof (tests/baselines/test_regret.py
and benchmarks/bench_regret.py): a regression stream with intersecting groups, the best fixed
predictor in hindsight, and the growth exponent of the regret."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schedgym.baselines.online_learning import Group


# ------------------------------------------------------------------ synthetic validation
@dataclass
class SyntheticStream:
    """A regression stream with intersecting groups (age band, sex, region).

    Attributes:
        contexts: per round, ``{"age": 0..2, "sex": 0..1, "region": 0..3}``.
        features: ``(T, d)``, the first column all ones.
        targets: ``(T,)``.
    """

    contexts: list[dict[str, int]]
    features: np.ndarray
    targets: np.ndarray


SYNTHETIC_ATTRIBUTES = {"age": 3, "sex": 2, "region": 4}


def synthetic_stream(
    rounds: int,
    seed: int,
    num_features: int = 4,
    active: Sequence[str] = tuple(SYNTHETIC_ATTRIBUTES),
) -> SyntheticStream:
    """Data where the best linear predictor differs by group, as in the paper's experiments.

    Each round's attributes are drawn independently (so every age band meets every sex and
    region); the target is ``x . (beta_0 + beta_age + beta_sex + beta_region) + noise`` with the
    group coefficients drawn once, so no single linear predictor fits all groups and each
    attribute group has its own best one. ``active`` lists the attributes that enter the target
    (the others still define groups, but irrelevant ones).
    """
    rng = np.random.default_rng(seed)
    coefficients = {
        name: rng.normal(0.0, 1.0, (size, num_features))
        for name, size in SYNTHETIC_ATTRIBUTES.items()
    }
    base = rng.normal(0.0, 1.0, num_features)
    attrs = {name: rng.integers(0, size, rounds) for name, size in SYNTHETIC_ATTRIBUTES.items()}
    x = np.column_stack([np.ones(rounds), rng.uniform(-1.0, 1.0, (rounds, num_features - 1))])
    beta = base + sum(coefficients[name][attrs[name]] for name in active)
    y = np.einsum("td,td->t", x, beta) + rng.normal(0.0, 0.5, rounds)
    contexts = [{name: int(attrs[name][t]) for name in SYNTHETIC_ATTRIBUTES} for t in range(rounds)]
    return SyntheticStream(contexts, x, y)


def synthetic_groups() -> list[Group]:
    """Everyone, plus one group per value of each attribute (intersecting groups)."""
    groups = [Group("all", lambda c: True)]
    for name, size in SYNTHETIC_ATTRIBUTES.items():
        for value in range(size):
            groups.append(Group(f"{name}={value}", lambda c, n=name, v=value: c[n] == v))
    return groups


def best_fixed_linear_loss(features: np.ndarray, targets: np.ndarray) -> float:
    """Squared loss of the least-squares linear predictor fitted in hindsight."""
    if targets.size == 0:
        return 0.0
    theta, *_ = np.linalg.lstsq(features, targets, rcond=None)
    return float(((features @ theta - targets) ** 2).sum())


def fit_growth_exponent(counts: np.ndarray, regrets: np.ndarray) -> float:
    """Slope of log(regret) against log(rounds): regret ~ rounds^slope.

    Only positive regrets enter the fit; with fewer than two, the regret is not growing and the
    slope is reported as 0.
    """
    keep = (regrets > 0) & (counts > 0)
    if keep.sum() < 2:
        return 0.0
    slope, _ = np.polyfit(np.log(counts[keep]), np.log(regrets[keep]), 1)
    return float(slope)
