"""The groupwise-regret portfolio: per decision epoch, the heuristic a :class:`GroupwiseHedge`
over context groups chooses, each heuristic's loss measured by a counterfactual rollout of a
cloned simulator (see :class:`GroupwisePortfolioPolicy`). The online-learning algorithms are in
:mod:`schedgym.baselines.online_learning`.

Everything is numpy; all randomness comes from generators seeded by the caller.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from schedgym.baselines.online_learning import (
    Group,
    GroupFamily,
    GroupwiseHedge,
    RoundRecord,
)
from schedgym.core.policy import Policy, SimT, SimulatorPolicy, SimulatorReader


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
        """``copy.deepcopy`` memo entries of what a snapshot of the unwrapped ``env`` may share:
        ``env.fork_memo()`` (:class:`PortfolioAdapterBase`); an adapter extends it only with
        what is its own."""

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


class PortfolioAdapterBase(SimulatorReader[SimT]):
    """Base of the adapters: typed simulator access, and snapshots that share what the
    environment says a fork may share (:meth:`~schedgym.core.env.SchedulingEnv.fork_memo`)."""

    def share(self, env: Any) -> dict[int, Any]:
        return env.fork_memo()


class TimeWindowAdapter(PortfolioAdapterBase[SimT]):
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
        return sim.done or sim.now_s >= start + self.horizon_s

    def window_done(self, clone: Any, start: Any) -> bool:
        sim = clone.simulator
        return sim.done or sim.now_s >= start + self.horizon_s


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
    the unwrapped env and every heuristic's state are deep-copied (a snapshot; the copy shares what
    ``env.fork_memo()`` names: the config and the simulator's immutable tables). Feedback for
    that epoch is computed only once reality has passed the epoch's window (delayed feedback:
    nothing about the window is learnt before it is past). Then, on the snapshot, whatever the
    policy could not have known when the feedback is computed is replaced by its expectation
    (``adapter.redact``, given the live env as the knowledge cutoff: e.g. actual execution times
    of tasks that have not run are set to their nominal values, output lengths of requests that
    have not finished to their conditional mean, arrivals not yet seen dropped), and each
    heuristic, from its own copied state, runs the snapshot until the window is covered; its
    loss is the window's cost (``adapter.window_loss``: e.g. the time-averaged number of jobs in
    the system). Losses are shifted by the round's best and divided by the largest spread seen
    so far in the episode, so they lie in [0, 1]; neither changes which expert is best, and the
    first divides every regret by the same constant.

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
