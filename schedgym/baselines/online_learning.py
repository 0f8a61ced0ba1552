"""Groupwise regret: per-group online learners combined by sleeping experts.

The reduction (Blum & Lykouris 2020; Acharya, Balkanski, Ghosh, Malik, Ravindranathan, "Oracle
Efficient Algorithms for Groupwise Regret", ICLR 2024): a *group* is an arbitrary predicate over
a round's context, and groups may intersect. For every group an external-regret learner runs on
that group's subsequence only; a sleeping-experts aggregator (AdaNormalHedge, Luo & Schapire,
"Achieving All with No Parameters: AdaNormalHedge", COLT 2015) treats each group's learner as an
expert that is awake exactly when the context belongs to its group, and predicts with the
weighted combination of the awake ones. The regret to every group's learner on that group's own
rounds is ``O(sqrt(n_g log G))``, so the regret to the best fixed predictor *for each group* is that
plus the group learner's own regret. The cost of a round is linear in the number of groups.

The learners here:

- :class:`GroupwiseOnlineRegressor`: squared loss, an online ridge regression per group, the
  prediction the weighted mean of the awake groups' predictions (the loss is convex, so the mean
  does at least as well as sampling a group).
- :class:`GroupwiseHedge`: a finite set of experts, Hedge per group, the played distribution the
  weighted mixture of the awake groups' distributions. The portfolio policy that plays an
  environment's heuristics with it is :mod:`schedgym.baselines.portfolio`.

Everything is numpy; all randomness comes from generators seeded by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Context = Mapping[str, Any]


# ------------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """A named predicate over contexts (``context -> bool``)."""

    name: str
    contains: Callable[[Context], bool]


@dataclass(frozen=True)
class GroupFamily:
    """Groups created on first sight, one per value of ``key(context)``.

    A family is a compact way to write many predicates of the form ``key(context) == value``
    (e.g. one group per (task kind, PE type)) without enumerating the values up front; a group
    whose value has not appeared yet has been asleep on every round, which is exactly how the
    sleeping-experts aggregator treats it once it appears. ``key`` returning ``None`` puts the
    context in no group of the family.
    """

    name: str
    key: Callable[[Context], Hashable | None]


class GroupIndex:
    """Maps a context to the indices of its awake groups (fixed groups, then families' groups).

    Cost per context: one predicate call per fixed group and one key call per family.
    """

    def __init__(self, groups: Sequence[Group] = (), families: Sequence[GroupFamily] = ()) -> None:
        if not groups and not families:
            raise ValueError("groups: give at least one group or group family")
        self.groups = list(groups)
        self.families = list(families)
        self.names: list[str] = [g.name for g in self.groups]
        self._family_index: list[dict[Hashable, int]] = [{} for _ in self.families]

    def __len__(self) -> int:
        return len(self.names)

    def awake(self, context: Context, create: bool = True) -> list[int]:
        """Indices of the groups containing ``context`` (new family groups are created)."""
        out = [i for i, group in enumerate(self.groups) if group.contains(context)]
        for family, index in zip(self.families, self._family_index, strict=True):
            value = family.key(context)
            if value is None:
                continue
            if value not in index:
                if not create:
                    continue
                index[value] = len(self.names)
                self.names.append(f"{family.name}={value}")
            out.append(index[value])
        return out


# ----------------------------------------------------------------------------- learners
class OnlineRidge:
    """Online ridge regression (follow the regularised leader for squared loss).

    Predicts ``x . theta_t`` with ``theta_t = (reg I + sum x x^T)^-1 sum x y`` over the rounds seen
    so far; the inverse is kept by Sherman-Morrison updates, ``O(d^2)`` per round. Its regret to the
    best fixed linear predictor is ``O(d log n)`` for bounded data (Vovk 2001; Azoury & Warmuth
    2001).
    """

    def __init__(self, num_features: int, reg: float = 1.0) -> None:
        if reg <= 0:
            raise ValueError(f"reg: must be positive, got {reg}")
        self.a_inv = np.eye(num_features) / reg  # (d, d)
        self.b = np.zeros(num_features)  # (d,)
        self.theta = np.zeros(num_features)  # (d,)
        self.rounds = 0

    def predict(self, x: np.ndarray) -> float:
        return float(x @ self.theta)

    def update(self, x: np.ndarray, y: float) -> None:
        ax = self.a_inv @ x
        self.a_inv -= np.outer(ax, ax) / (1.0 + float(x @ ax))
        self.b += y * x
        self.theta = self.a_inv @ self.b
        self.rounds += 1


class Hedge:
    """Exponential weights over ``n`` experts with the anytime rate ``sqrt(8 ln n / t)``.

    Losses must lie in [0, 1]; the regret to the best expert is ``O(sqrt(t ln n))`` (Freund &
    Schapire 1997; Cesa-Bianchi & Lugosi 2006, Thm 2.3 with a time-varying rate).
    """

    def __init__(self, num_experts: int) -> None:
        self.cumulative_loss = np.zeros(num_experts)
        self.rounds = 0

    def distribution(self) -> np.ndarray:
        n = self.cumulative_loss.size
        eta = math.sqrt(8.0 * math.log(n) / max(self.rounds, 1)) if n > 1 else 0.0
        logits = -eta * (self.cumulative_loss - self.cumulative_loss.min())
        weights = np.exp(logits)
        return weights / weights.sum()

    def update(self, losses: np.ndarray) -> None:
        self.cumulative_loss += losses
        self.rounds += 1


class SleepingAdaNormalHedge:
    """AdaNormalHedge (Luo & Schapire 2015) with sleeping experts and a uniform prior.

    Each expert ``i`` keeps its cumulative instantaneous regret ``R_i`` and the sum of its absolute
    values ``C_i``, both over the rounds it was awake. With ``Phi(R, C) = exp([R]_+^2 / (3C))`` and
    ``w(R, C) = (Phi(R + 1, C + 1) - Phi(R - 1, C + 1)) / 2``, the awake experts are weighted
    ``p_i ∝ w(R_i, C_i)`` (uniform when every weight is zero). After the round, every awake expert
    gets ``r_i = <p, loss> - loss_i`` (for a convex loss and a combined prediction, the loss of the
    combination in place of ``<p, loss>``), losses in [0, 1]. A sleeping expert is untouched.
    Computed in log space: ``[R]_+^2 / (3C)`` reaches the hundreds.
    """

    def __init__(self) -> None:
        self.regret = np.zeros(0)  # (num_experts,) R
        self.abs_regret = np.zeros(0)  # (num_experts,) C

    def _grow(self, num_experts: int) -> None:
        if num_experts > self.regret.size:
            extra = num_experts - self.regret.size
            self.regret = np.concatenate([self.regret, np.zeros(extra)])
            self.abs_regret = np.concatenate([self.abs_regret, np.zeros(extra)])

    def distribution(self, awake: Sequence[int]) -> np.ndarray:
        """Probabilities over ``awake`` (in that order)."""
        if not awake:
            raise ValueError("awake: at least one expert must be awake")
        self._grow(max(awake) + 1)
        idx = np.asarray(awake)
        r = self.regret[idx]
        c = self.abs_regret[idx] + 1.0
        hi = np.maximum(r + 1.0, 0.0) ** 2 / (3.0 * c)
        lo = np.maximum(r - 1.0, 0.0) ** 2 / (3.0 * c)
        # log w = hi + log(1 - exp(lo - hi)) - log 2; w = 0 when hi == lo (R <= -1).
        gap = lo - hi
        positive = gap < 0.0
        if not positive.any():
            return np.full(idx.size, 1.0 / idx.size)
        log_w = np.full(idx.size, -np.inf)
        log_w[positive] = hi[positive] + np.log(-np.expm1(gap[positive]))
        log_w -= log_w.max()
        w = np.exp(log_w)
        return w / w.sum()

    def update(self, awake: Sequence[int], combined_loss: float, losses: np.ndarray) -> None:
        """Credit each awake expert ``combined_loss - losses[k]`` (losses aligned with awake)."""
        idx = np.asarray(awake)
        r = np.clip(combined_loss - np.asarray(losses, dtype=np.float64), -1.0, 1.0)
        self.regret[idx] += r
        self.abs_regret[idx] += np.abs(r)


# ----------------------------------------------------------------------- the regressor
class GroupwiseOnlineRegressor:
    """Online linear regression with regret to the best linear predictor of every group.

    Per group an :class:`OnlineRidge` on that group's rounds; AdaNormalHedge over the awake groups;
    the prediction is the AdaNormalHedge-weighted mean of the awake groups' ridge predictions,
    clipped to ``[-bound, bound]``. The aggregator's loss is ``min((y_hat - y)^2 / loss_scale, 1)``.

    Args:
        groups: fixed groups.
        num_features: length of the feature vectors.
        families: groups created per key value on first sight.
        reg: ridge regulariser of every group's learner.
        bound: predictions (and the targets seen by the aggregator) are clipped to +-bound.
        loss_scale: squared errors are divided by this before the aggregator sees them (so a
            typical error maps into [0, 1]).
    """

    def __init__(
        self,
        groups: Sequence[Group],
        num_features: int,
        families: Sequence[GroupFamily] = (),
        reg: float = 1.0,
        bound: float = 1e6,
        loss_scale: float = 1.0,
    ) -> None:
        self.index = GroupIndex(groups, families)
        self.num_features = num_features
        self.reg = reg
        self.bound = bound
        self.loss_scale = loss_scale
        self.learners: list[OnlineRidge] = []
        self.aggregator = SleepingAdaNormalHedge()
        self.rounds = 0

    def _learners_for(self, awake: list[int]) -> list[OnlineRidge]:
        while len(self.learners) < len(self.index):
            self.learners.append(OnlineRidge(self.num_features, self.reg))
        return [self.learners[g] for g in awake]

    def _group_predictions(self, awake: list[int], x: np.ndarray) -> np.ndarray:
        preds = np.array([learner.predict(x) for learner in self._learners_for(awake)])
        return np.clip(preds, -self.bound, self.bound)

    def predict(self, context: Context, x: np.ndarray) -> float:
        """The combined prediction for ``(context, x)`` (0 when no group is awake)."""
        awake = self.index.awake(context)
        if not awake:
            return 0.0
        probs = self.aggregator.distribution(awake)
        return float(probs @ self._group_predictions(awake, x))

    def update(self, context: Context, x: np.ndarray, y: float) -> float:
        """One round: predict ``(context, x)``, observe ``y``, update; returns the prediction."""
        x = np.asarray(x, dtype=np.float64)
        awake = self.index.awake(context)
        if not awake:
            return 0.0
        preds = self._group_predictions(awake, x)
        probs = self.aggregator.distribution(awake)
        combined = float(probs @ preds)
        target = min(max(y, -self.bound), self.bound)
        group_losses = np.minimum((preds - target) ** 2 / self.loss_scale, 1.0)
        combined_loss = min((combined - target) ** 2 / self.loss_scale, 1.0)
        self.aggregator.update(awake, combined_loss, group_losses)
        for learner in self._learners_for(awake):
            learner.update(x, y)
        self.rounds += 1
        return combined


# ---------------------------------------------------------------- the portfolio learner
class GroupwiseHedge:
    """Groupwise regret over a finite set of experts: Hedge per group, AdaNormalHedge across.

    ``distribution(context)`` returns the played distribution over experts (the
    aggregator-weighted mixture of the awake groups' Hedge distributions) together with what
    ``update`` needs; ``update`` takes every expert's loss in [0, 1] for that round (full
    information). Feedback may arrive late (after later rounds were played): each round's own
    distributions are kept with it, which is the standard delayed-feedback reduction.
    """

    def __init__(
        self, num_experts: int, groups: Sequence[Group], families: Sequence[GroupFamily] = ()
    ) -> None:
        if num_experts < 1:
            raise ValueError("num_experts: need at least one expert")
        self.num_experts = num_experts
        self.index = GroupIndex(groups, families)
        self.learners: list[Hedge] = []
        self.aggregator = SleepingAdaNormalHedge()
        self.rounds = 0

    def distribution(self, context: Context) -> tuple[np.ndarray, RoundRecord]:
        awake = self.index.awake(context)
        if not awake:
            uniform = np.full(self.num_experts, 1.0 / self.num_experts)
            return uniform, RoundRecord([], np.zeros((0, self.num_experts)), np.zeros(0))
        while len(self.learners) < len(self.index):
            self.learners.append(Hedge(self.num_experts))
        group_dists = np.array([self.learners[g].distribution() for g in awake])  # (A, N)
        group_weights = self.aggregator.distribution(awake)  # (A,)
        played = group_weights @ group_dists
        return played / played.sum(), RoundRecord(awake, group_dists, group_weights)

    def update(self, record: RoundRecord, losses: np.ndarray) -> None:
        if not record.awake:
            return
        losses = np.clip(np.asarray(losses, dtype=np.float64), 0.0, 1.0)
        group_losses = record.group_dists @ losses  # (A,)
        combined_loss = float(record.group_weights @ group_losses)
        self.aggregator.update(record.awake, combined_loss, group_losses)
        for g in record.awake:
            self.learners[g].update(losses)
        self.rounds += 1


@dataclass
class RoundRecord:
    """What one portfolio round played: awake groups, their distributions and weights."""

    awake: list[int]
    group_dists: np.ndarray  # (num_awake, num_experts)
    group_weights: np.ndarray  # (num_awake,)
