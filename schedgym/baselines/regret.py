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

Two uses here:

- :class:`GroupwiseOnlineRegressor`: squared loss, an online ridge regression per group, the
  prediction the weighted mean of the awake groups' predictions (the loss is convex, so the mean
  does at least as well as sampling a group).
- :class:`GroupwiseHedge` and :class:`GroupwisePortfolioPolicy`: a finite set of experts (an
  environment's heuristics), Hedge per group, the played distribution the weighted mixture of the
  awake groups' distributions. The portfolio policy measures each heuristic's loss by a
  counterfactual rollout of a cloned simulator (see :class:`GroupwisePortfolioPolicy`).

Everything is numpy; all randomness comes from generators seeded by the caller.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from schedgym.core.policy import Policy, SimT, SimulatorPolicy, SimulatorReader

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
        return weights / weights.sum()  # type: ignore[no-any-return]

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
        return w / w.sum()  # type: ignore[no-any-return]

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
        return np.clip(preds, -self.bound, self.bound)  # type: ignore[no-any-return]

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


# ------------------------------------------------------------------ the portfolio policy
class PortfolioAdapter(Protocol):
    """What :class:`GroupwisePortfolioPolicy` needs to know about one environment family."""

    def experts(self) -> dict[str, Policy]:
        """Fresh heuristics reading the simulator's view, by name (first: the tie-break default)."""

    def groups(self, env: Any) -> tuple[list[Group], list[GroupFamily]]:
        """The groups over this family's contexts (called once per episode)."""

    def context(self, env: Any) -> dict[str, Any]:
        """The context of the decision epoch starting now (the simulator's view only)."""

    def epoch_key(self, env: Any) -> Hashable:
        """A key that changes when a new decision epoch starts."""

    def share(self, env: Any) -> dict[int, Any]:
        """``copy.deepcopy`` memo entries: immutable objects clones may share."""

    def redact(self, clone: Any, reality: Any) -> None:
        """Replace what the policy may not know yet in a snapshot with its expectation.

        ``reality`` is the live unwrapped env at the moment feedback is computed: what it has
        revealed by then (past arrivals, completed requests, ...) is known; nothing else is.
        """

    def window_done(self, clone: Any, start: Any) -> bool:
        """Whether a counterfactual rollout begun at epoch ``start`` has covered its window."""

    def feedback_ready(self, env: Any, start: Any, pending: Any) -> bool:
        """Whether reality has passed the window of an epoch begun at ``start``."""

    def start_marker(self, env: Any) -> tuple[Any, Any]:
        """``(start, pending)`` of an epoch starting now (e.g. its time and running tasks)."""

    def window_loss(self, clone: Any, start_state: Any) -> float:
        """The cost the rollout incurred over its window (lower is better)."""

    def loss_state(self, clone: Any) -> Any:
        """What ``window_loss`` needs from the snapshot before the rollout."""


class WholePolicyAdapter(PortfolioAdapter, Protocol):
    """An adapter whose experts are judged as whole policies (``feedback = "whole-policy"``).

    For metrics that do not add up over windows (a p99 over the whole episode: a heuristic
    whose rare slow iterations stay under 1% of the gaps only when it is played all the time),
    each expert's loss for an epoch is the episode's metric so far had that expert been played
    from the episode's start to the end of the epoch's horizon. Per expert, a shadow copy of
    the episode's first state runs that expert only; at each feedback it learns what reality
    has revealed since the last one (:meth:`catch_up`) and runs on to the horizon.
    """

    feedback: str

    def catch_up(self, shadow: Any, base: Any, reality: Any) -> None:
        """Give ``shadow`` (a copy run by one expert, redacted earlier) what ``reality`` has
        revealed since: new arrivals (fresh copies taken from ``base``, the untouched first
        state) and output lengths, each still only as known at ``reality``'s present."""

    def episode_loss(self, shadow: Any) -> float:
        """The episode's metric so far in ``shadow`` (lower is better; nan while the shadow
        has too little of the episode for the metric to mean anything: the round is skipped)."""


@dataclass
class _Epoch:
    start: Any
    pending: Any
    record: RoundRecord
    snapshot: Any  # (unwrapped env, experts) deep copy, redacted later
    chosen: int


@dataclass
class PortfolioStats:
    """Counters of one episode, for benchmarks and tests."""

    epochs: int = 0
    feedback_rounds: int = 0
    rollout_steps: int = 0
    clone_s: float = 0.0
    rollout_s: float = 0.0
    choices: list[str] = field(default_factory=list)
    losses: list[np.ndarray] = field(default_factory=list)


class TimeWindowEpochs:
    """Decision epochs that are consecutive windows of simulated time.

    An epoch starts at the first decision at or after the previous epoch's start plus
    ``window``; a new simulator object (a new episode) starts a new epoch. ``key(sim, now)`` is
    the adapter's ``epoch_key``: it changes exactly when an epoch starts.
    """

    def __init__(self, window: float) -> None:
        if window <= 0:
            raise ValueError(f"window: must be positive, got {window}")
        self.window = window
        self._sim: Any = None
        self.start = 0.0

    def key(self, sim: Any, now: float) -> Hashable:
        if self._sim is not sim:
            self._sim, self.start = sim, now
        elif now >= self.start + self.window:
            self.start = now
        return (id(sim), self.start)


class TimeWindowAdapter(SimulatorReader[SimT]):
    """Shared part of the adapters whose epochs are windows of simulated time and whose losses
    come from rollouts ``horizon_s`` long. Subclasses set ``expert_factories``."""

    expert_factories: dict[str, Any] = {}  # noqa: RUF012  (name -> zero-argument factory)

    def __init__(self, window_s: float, horizon_s: float) -> None:
        if horizon_s < window_s:
            raise ValueError(f"horizon_s: must be at least window_s, got {horizon_s}")
        self.window_s = window_s
        self.horizon_s = horizon_s
        self._epochs = TimeWindowEpochs(window_s)

    def experts(self) -> dict[str, Policy]:
        return {name: factory() for name, factory in self.expert_factories.items()}

    def start_marker(self, env: Any) -> tuple[Any, Any]:
        return env.unwrapped.simulator.now_s, None

    def feedback_ready(self, env: Any, start: Any, pending: Any) -> bool:
        """Feedback waits until reality has passed the rollout horizon (or the episode ended)."""
        sim = env.unwrapped.simulator
        return sim.done or sim.now_s >= start + self.horizon_s  # type: ignore[no-any-return]

    def window_done(self, clone: Any, start: Any) -> bool:
        sim = clone.simulator
        return sim.done or sim.now_s >= start + self.horizon_s  # type: ignore[no-any-return]


class GroupwisePortfolioPolicy(SimulatorPolicy[Any]):
    """Follow, per decision epoch, the heuristic chosen by the groupwise aggregator.

    At the start of each decision epoch (an adapter-defined window: a slice of simulated time, a
    global batch, ...) the context is read from the simulator's view, the awake groups' Hedge
    distributions are mixed by AdaNormalHedge, and a heuristic is drawn from the mixture with the
    policy's own seeded generator (``selection="sample"``) or its most probable one is taken
    (``selection="mode"``, ties to the adapter's first expert). That heuristic makes every decision
    of the epoch. All heuristics are kept as live instances for the whole episode; a stateful one
    (e.g. a planner) sees the decisions the others made when it is next consulted.

    How losses are measured (full information, by counterfactual rollout): when an epoch starts,
    the unwrapped env and every heuristic's state are deep-copied (a snapshot; the copy shares the
    simulator's immutable tables). Feedback for that epoch is computed only once reality has
    passed the epoch's window (delayed feedback: nothing about the window is learnt before it is
    past). Then, on the snapshot, whatever the policy could not have known when the feedback is
    computed is replaced by its expectation (``adapter.redact``, given the live env as the
    knowledge cutoff: e.g. actual execution times of tasks that have not run are set to their
    nominal values, output lengths of requests that have not finished to their conditional
    mean, arrivals not yet seen dropped), and each heuristic, from its own copied state,
    runs the snapshot until the window is covered; its loss is the window's cost
    (``adapter.window_loss``: e.g. the time-averaged number of jobs in the system). Losses are
    shifted by the round's best and divided by the largest spread seen so far in the episode, so
    they lie in [0, 1]; neither changes which expert is best, and the first divides every regret by
    the same constant.

    Whole-policy feedback (an adapter with ``feedback = "whole-policy"``, see
    :class:`WholePolicyAdapter`): for metrics that do not add up over windows, an expert's loss
    for an epoch is the episode's metric had that expert been played from the start to the end
    of the epoch's horizon, from one shadow per expert that catches up with what reality has
    revealed at each feedback; a round whose metric is not defined yet (nan) is skipped.

    Args:
        adapter: the environment family's experts, contexts, groups and windows.
        seed: seed of the expert-sampling generator.
        selection: ``sample`` (play the mixture; the regret bound holds in expectation) or
            ``mode``.
    """

    def __init__(self, adapter: PortfolioAdapter, seed: int = 0, selection: str = "mode") -> None:
        if selection not in ("sample", "mode"):
            raise ValueError(f"selection: must be 'sample' or 'mode', got {selection!r}")
        self.adapter = adapter
        self.seed = seed
        self.selection = selection
        self.stats = PortfolioStats()

    def reset(self, env: Any) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._experts = self.adapter.experts()
        self.expert_names = list(self._experts)
        self._expert_list = list(self._experts.values())
        for expert in self._expert_list:
            expert.reset(env)
        groups, families = self.adapter.groups(env)
        self.learner = GroupwiseHedge(len(self._expert_list), groups, families)
        self._epoch_key: Any = object()
        self._current = 0
        self._pending: deque[_Epoch] = deque()
        self._spread = 0.0
        self.stats = PortfolioStats()
        self._whole_policy = getattr(self.adapter, "feedback", "window") == "whole-policy"
        # Whole-policy feedback: the untouched first state (taken before any expert acts) and
        # one shadow (env copy, experts copy) per expert, created at the first feedback.
        self._base: Any = None
        self._shadows: list[Any] = [None] * len(self._expert_list)

    # ---------------------------------------------------------------------------- feedback
    def _play(self, env_copy: Any, expert: Policy, start: Any) -> None:
        """Let ``expert`` drive ``env_copy`` until the adapter says the window is covered."""
        import time

        adapter = self.adapter
        # The experts read the simulator's view, never the observation (as in run_episode).
        fast = hasattr(env_copy, "advance")
        started = time.perf_counter()
        done = False
        while not done and not adapter.window_done(env_copy, start):
            action = expert.act(None, env_copy)
            if fast:
                _, terminated, truncated, _ = env_copy.advance(action)
            else:
                _, _, terminated, truncated, _ = env_copy.step(action)
            done = terminated or truncated
            self.stats.rollout_steps += 1
        self.stats.rollout_s += time.perf_counter() - started

    def _rollout_loss(self, snapshot: Any, expert_index: int, start: Any) -> float:
        adapter = self.adapter
        env_copy, experts = copy.deepcopy(snapshot, adapter.share(snapshot[0]))
        state = adapter.loss_state(env_copy)
        self._play(env_copy, experts[expert_index], start)
        return float(adapter.window_loss(env_copy, state))

    def _whole_policy_loss(self, expert_index: int, start: Any, env: Any) -> float:
        """Expert ``expert_index``'s episode metric had it been played from the start to the
        end of the epoch begun at ``start`` (see :class:`WholePolicyAdapter`)."""
        adapter: Any = self.adapter
        reality = env.unwrapped
        shadow = self._shadows[expert_index]
        if shadow is None:
            shadow = copy.deepcopy(self._base, adapter.share(self._base[0]))
            adapter.redact(shadow[0], reality)
            self._shadows[expert_index] = shadow
        else:
            adapter.catch_up(shadow[0], self._base[0], reality)
        self._play(shadow[0], shadow[1][expert_index], start)
        return float(adapter.episode_loss(shadow[0]))

    def _feedback(self, epoch: _Epoch, env: Any) -> None:
        if self._whole_policy:
            raw = np.array(
                [
                    self._whole_policy_loss(i, epoch.start, env)
                    for i in range(len(self._expert_list))
                ]
            )
        else:
            self.adapter.redact(epoch.snapshot[0], env.unwrapped)
            raw = np.array(
                [
                    self._rollout_loss(epoch.snapshot, i, epoch.start)
                    for i in range(len(self._experts))
                ]
            )
        if np.isnan(raw).any():
            # An expert's metric is not defined yet (too little of the episode): no round.
            self.stats.losses.append(raw)
            return
        excess = raw - raw.min()
        self._spread = max(self._spread, float(excess.max()))
        losses = excess / self._spread if self._spread > 0 else excess
        self.learner.update(epoch.record, losses)
        self.stats.feedback_rounds += 1
        self.stats.losses.append(raw)

    def _drain(self, env: Any, final: bool = False) -> None:
        while self._pending and (
            final
            or self.adapter.feedback_ready(env, self._pending[0].start, self._pending[0].pending)
        ):
            self._feedback(self._pending.popleft(), env)

    # ------------------------------------------------------------------------------- acting
    def _start_epoch(self, env: Any) -> None:
        import time

        unwrapped = env.unwrapped
        dist, record = self.learner.distribution(self.adapter.context(env))
        if self.selection == "sample":
            self._current = int(self._rng.choice(dist.size, p=dist))
        else:
            self._current = int(np.argmax(dist))  # first maximum: the adapter's order
        start, pending = self.adapter.start_marker(env)
        started = time.perf_counter()
        snapshot: Any = None
        if not self._whole_policy:
            snapshot = copy.deepcopy((unwrapped, self._expert_list), self.adapter.share(unwrapped))
        elif self._base is None:
            # The first epoch starts before any expert has acted: the episode's first state.
            self._base = copy.deepcopy(
                (unwrapped, self._expert_list), self.adapter.share(unwrapped)
            )
        self.stats.clone_s += time.perf_counter() - started
        self._pending.append(_Epoch(start, pending, record, snapshot, self._current))
        self.stats.epochs += 1
        self.stats.choices.append(self.expert_names[self._current])

    def act(self, observation: Any, env: Any) -> Any:
        self._drain(env)
        key = self.adapter.epoch_key(env)
        if key != self._epoch_key:
            self._epoch_key = key
            self._start_epoch(env)
        return self._expert_list[self._current].act(observation, env)


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
