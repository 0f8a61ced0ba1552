"""Groupwise-regret portfolio for OnlineDataGen (``regret-portfolio``).

Experts: Melissa's online training (uniform sampling, half the cores solving), Breed-like
adaptive sampling (loss-weighted), and the offline pipeline's split rule (every core solving
until the fixed dataset exists, then every core training), from ``schedgym.baselines.datagen``.
The buffer policy is one choice for the whole episode, made at the first decision, before any
feedback can exist: the portfolio takes its first expert's, FIRO (Melissa's default and the
online baselines'). The three ``online-*`` baselines differ only in that buffer, so once it is
fixed they are one expert; every expert's action is played with the episode's buffer
(:class:`FixedBufferExpert`).

A decision epoch is one control interval. Context at its start: the phase of the compute budget
(the share used), the buffer's fill, and the spread of the per-region training losses. Groups
(intersecting): everyone; budget early / middle / late (thirds); buffer below its watermark /
filling / full; region losses skewed (the largest over the mean above 2) / even; no training
loss yet.

Loss of a heuristic for an epoch begun at interval ``k``: the heuristic runs a snapshot taken at
``k`` for ``horizon`` intervals; the loss is the natural log of the validation MSE at the end
(the env's reward sums to minus its change; every expert starts from the same state, so only
the end matters). The snapshot's random generators (simulation parameters, region draws,
minibatch draws) are re-seeded before the rollouts (:meth:`DataGenPortfolioAdapter.redact`):
a rollout draws fresh parameters instead of the simulator's future draws, the same ones for
every expert of the epoch (common random numbers). Feedback waits until reality has passed
``k + horizon``. A rollout trains the real surrogate, so it costs what the interval costs in
reality: the portfolio's episode costs about ``1 + experts * horizon`` episodes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schedgym.baselines import datagen
from schedgym.baselines.online_learning import Group, GroupFamily
from schedgym.baselines.portfolio import GroupwisePortfolioPolicy, PortfolioAdapterBase
from schedgym.core.policy import Policy, SimulatorReader, register_policy
from schedgym.envs.datagen.buffers import BUFFER_KINDS
from schedgym.envs.datagen.simulator import DataGenSimulator

FAMILY = datagen.FAMILY

PORTFOLIO_EXPERTS: dict[str, Any] = {
    "online": lambda: datagen.OnlinePolicy(buffer="firo"),
    "adaptive": lambda: datagen.AdaptivePolicy(buffer="firo"),
    "offline": datagen.OfflinePolicy,
}

SKEWED = 2.0
LOG_FLOOR = 1e-12
# Salt of the redaction seeds (a rollout's draws depend on it and the interval only).
REDACTION_SALT = 0x5EED


class FixedBufferExpert(SimulatorReader[DataGenSimulator]):
    """An OnlineDataGen heuristic played with the episode's buffer once it is fixed.

    Before the buffer is chosen the expert's own choice goes through (it fixes the buffer);
    afterwards the buffer part of its action is replaced by the episode's buffer, so a heuristic
    written for another buffer keeps its sampling and split decisions.
    """

    def __init__(self, expert: Any) -> None:
        self.expert = expert

    def reset(self, env: Any) -> None:
        self.expert.reset(env)

    def act(self, observation: Any, env: Any) -> int:
        action = int(self.expert.act(observation, env))
        kind = self.simulator(env).buffer_kind
        if kind is None:
            return action
        unwrapped = env.unwrapped
        acquisition, split, _ = unwrapped.decode_action(action)
        return int(unwrapped.encode_action(acquisition, split, BUFFER_KINDS.index(kind)))


class DataGenPortfolioAdapter(PortfolioAdapterBase[DataGenSimulator]):
    """Experts, contexts, groups and epochs of the OnlineDataGen portfolio (see the module
    doc)."""

    def __init__(self, horizon: int = 2) -> None:
        if horizon < 1:
            raise ValueError(f"horizon: must be at least 1 interval, got {horizon}")
        self.horizon = horizon

    def experts(self) -> dict[str, Policy]:
        return {name: FixedBufferExpert(factory()) for name, factory in PORTFOLIO_EXPERTS.items()}

    def groups(self, env: Any) -> tuple[list[Group], list[GroupFamily]]:
        return (
            [
                Group("all", lambda c: True),
                Group("budget:early", lambda c: c["budget_used"] < 1 / 3),
                Group("budget:middle", lambda c: 1 / 3 <= c["budget_used"] < 2 / 3),
                Group("budget:late", lambda c: c["budget_used"] >= 2 / 3),
                Group("buffer:below-watermark", lambda c: c["buffer"] == 0),
                Group("buffer:filling", lambda c: c["buffer"] == 1),
                Group("buffer:full", lambda c: c["buffer"] == 2),
                Group("loss:skewed", lambda c: c["loss_skew"] > SKEWED),
                Group("loss:even", lambda c: 0 < c["loss_skew"] <= SKEWED),
                Group("loss:none", lambda c: c["loss_skew"] == 0),
            ],
            [],
        )

    def context(self, env: Any) -> dict[str, Any]:
        sim = self.simulator(env)
        buffer = sim.buffer
        if buffer is None or not buffer.ready(sim.config.batch_size):
            level = 0
        elif buffer.size < buffer.capacity:
            level = 1
        else:
            level = 2
        skew = 0.0
        if sim.region_has_loss.any():
            losses = sim.region_loss[sim.region_has_loss]
            mean = float(losses.mean())
            skew = float(losses.max()) / mean if mean > 0 else 1.0
        return {
            "budget_used": sim.compute_used_core_s / sim.config.compute_budget_core_s,
            "buffer": level,
            "loss_skew": skew,
        }

    def epoch_key(self, env: Any) -> Any:
        sim = self.simulator(env)
        return (id(sim), sim.interval)

    def start_marker(self, env: Any) -> tuple[Any, Any]:
        return self.simulator(env).interval, None

    def feedback_ready(self, env: Any, start: Any, pending: Any) -> bool:
        sim = self.simulator(env)
        return sim.done or sim.interval >= start + self.horizon

    def redact(self, clone: Any, reality: Any) -> None:
        """Re-seed the snapshot's generators: the simulator's future draws are not known."""
        sim: DataGenSimulator = clone.simulator
        sim.reseed(np.random.SeedSequence([REDACTION_SALT, sim.interval]))

    def window_done(self, clone: Any, start: Any) -> bool:
        sim = clone.simulator
        return sim.done or sim.interval >= start + self.horizon

    def loss_state(self, clone: Any) -> Any:
        return None

    def window_loss(self, clone: Any, start_state: Any) -> float:
        return math.log(max(clone.simulator.scores.mse, LOG_FLOOR))


class DataGenPortfolioPolicy(GroupwisePortfolioPolicy):
    """``regret-portfolio`` on OnlineDataGen (see :class:`DataGenPortfolioAdapter`)."""

    def __init__(self, seed: int = 0, selection: str = "mode", horizon: int = 2) -> None:
        super().__init__(DataGenPortfolioAdapter(horizon), seed=seed, selection=selection)


register_policy(
    FAMILY,
    "regret-portfolio",
    DataGenPortfolioPolicy,
    "Groupwise-regret portfolio over online/adaptive/offline (FIRO buffer)",
)
