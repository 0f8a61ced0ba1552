"""Groupwise-regret policies for SoCDAG: ``regret-heft`` and ``regret-portfolio``.

``regret-heft``: HEFT whose execution-time estimates come from a
:class:`~schedgym.baselines.online_learning.GroupwiseOnlineRegressor` trained online, within the
episode, on the tasks that have completed (``simulator.task_records``: actual start and finish, and
the nominal time on the PE type that ran it). It predicts the ratio actual / nominal minus one for
a (task, PE type), with groups: everything, each PE type, each application, each task kind (of an
application), each (task kind, PE type). The ``noisy`` preset's systematic error is per (task kind,
PE type), which the finest groups can learn once they have data, while the coarser ones carry what
is shared before that.

``regret-portfolio``: :class:`~schedgym.baselines.portfolio.GroupwisePortfolioPolicy` over HEFT,
ETF, MET, EFT, CP and FCFS; a decision epoch is a window of simulated time; a heuristic's loss is
the time its epoch's jobs spend in the system over a longer horizon, in a counterfactual rollout
(see :class:`SoCPortfolioAdapter`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from schedgym.baselines import soc
from schedgym.baselines.online_learning import Group, GroupFamily, GroupwiseOnlineRegressor
from schedgym.baselines.portfolio import (
    GroupwisePortfolioPolicy,
    PortfolioAdapterBase,
    TimeWindowEpochs,
)
from schedgym.core.policy import Policy, register_policy
from schedgym.envs.soc.dag import DagTemplate
from schedgym.envs.soc.simulator import DONE, READY, RUNNING, WAITING, SoCSimulator

FAMILY = soc.FAMILY

# Ratios actual / nominal are clipped to [RATIO_FLOOR, 1 + RATIO_BOUND] when used.
RATIO_BOUND = 4.0
RATIO_FLOOR = 0.05
_ONE = np.ones(1)


# ----------------------------------------------------------------------------- regret-heft
def exec_time_regressor() -> GroupwiseOnlineRegressor:
    """The groupwise regressor of (actual / nominal - 1) for a (task kind, PE type).

    Contexts: ``app`` (template name), ``kind`` (kind id within the app), ``pe_type``. The
    single feature is a constant, so each group's ridge learner is a shrunk running mean of the
    group's ratios (shrunk towards the nominal profile).
    """
    return GroupwiseOnlineRegressor(
        [Group("all", lambda c: True)],
        num_features=1,
        families=[
            GroupFamily("pe_type", lambda c: c["pe_type"]),
            GroupFamily("app", lambda c: c["app"]),
            GroupFamily("kind", lambda c: (c["app"], c["kind"])),
            GroupFamily("kind_pe", lambda c: (c["app"], c["kind"], c["pe_type"])),
        ],
        reg=1.0,
        bound=RATIO_BOUND,
        loss_scale=1.0,
    )


class RegretHEFTPolicy(soc.HEFTPolicy):
    """HEFT with execution times from the groupwise online regressor (``regret-heft``).

    Before each decision the regressor takes in the tasks completed since the previous one (one
    round each, in completion order); HEFT then plans newly admitted jobs with
    ``nominal * (1 + predicted ratio - 1)`` per PE type. Only completed tasks are read: no sampled
    time of a task that has not finished is ever seen.
    """

    def __init__(self) -> None:
        super().__init__(exec_estimator=self._estimate)

    def reset(self, env: Any) -> None:
        super().reset(env)
        self.regressor = exec_time_regressor()
        self._records_seen = 0
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._sim_ref = self.simulator(env)

    def _learn(self, sim: SoCSimulator) -> None:
        records = sim.task_records
        if self._records_seen == records.total:
            return
        for record in records.since(self._records_seen):
            if record.expected_us <= 0.0:
                continue
            template = sim.job_template[record.job_id]
            context = {
                "app": template.name,
                "kind": int(template.kind[record.task]),
                "pe_type": int(sim.pe_type[record.pe]),
            }
            ratio = (record.finish_us - record.start_us) / record.expected_us
            self.regressor.update(context, _ONE, ratio - 1.0)
        self._records_seen = records.total
        self._cache.clear()

    def _estimate(self, job_id: int, template: DagTemplate, task: int) -> np.ndarray:
        key = (template.name, task)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        nominal = template.exec_us[task]
        kind = int(template.kind[task])
        ratios = np.ones_like(nominal)
        for pe_type in np.flatnonzero(~np.isnan(nominal)).tolist():
            context = {"app": template.name, "kind": kind, "pe_type": pe_type}
            predicted = 1.0 + self.regressor.predict(context, _ONE)
            ratios[pe_type] = min(max(predicted, RATIO_FLOOR), 1.0 + RATIO_BOUND)
        estimate = nominal * ratios
        self._cache[key] = estimate
        return estimate

    def act(self, observation: Any, env: Any) -> int:
        self._learn(self.simulator(env))
        return super().act(observation, env)


# ------------------------------------------------------------------------ regret-portfolio
class SyncedHEFTPolicy(soc.HEFTPolicy):
    """HEFT that tolerates other policies acting between its decisions (portfolio expert).

    Before deciding it drops, from its plan, the entries of tasks that someone else has started
    and of jobs that have left the SoC; otherwise a PE whose next planned task was run elsewhere
    would wait for it forever. The rest of the plan is kept and re-timed as HEFT normally does.
    """

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        if getattr(self, "_timelines", None) is not None:
            slot_of = {int(j): s for s, j in enumerate(sim.slot_job_id.tolist()) if j >= 0}
            for timeline in self._timelines:
                keep = []
                for entry in timeline:
                    if entry.dispatched:
                        keep.append(entry)
                        continue
                    slot = slot_of.get(entry.job_id)
                    if slot is None:
                        continue
                    state = sim.node_state[slot * sim.tasks_per_job + entry.task]
                    if state == READY or state == WAITING:
                        keep.append(entry)
                timeline[:] = keep
        return super().act(observation, env)


PORTFOLIO_EXPERTS: dict[str, type] = {
    "heft": SyncedHEFTPolicy,
    "etf": soc.ETFPolicy,
    "eft": soc.EFTPolicy,
    "cp": soc.CriticalPathPolicy,
    "fcfs": soc.FCFSPolicy,
    "met": soc.METPolicy,
}


def _runs_application(name: str, context: Mapping[str, Any]) -> bool:
    """Group predicate: an application named ``name`` has a job in the SoC."""
    return name in context["apps"]


class SoCPortfolioAdapter(PortfolioAdapterBase[SoCSimulator]):
    """Experts, contexts, groups and windows of the SoCDAG portfolio.

    Decision epochs: consecutive windows of ``window_us`` simulated microseconds (an epoch starts
    at the first decision at or after the previous one's start plus the window). Context: load
    (jobs in the SoC over its job slots, backlog), and which applications are active. Groups:
    everyone; light / moderate / full load (thirds of the job slots, full also when jobs wait
    in the backlog); backlog non-empty; one group per application with a job in the SoC
    (intersecting).

    Loss of a heuristic for an epoch begun at ``t0``: on the snapshot taken at ``t0``, with every
    task that had not started given its nominal time and arrivals drawn noise-free (``redact``:
    the actual times are the simulator's sampled future), the heuristic runs until
    ``t0 + horizon_us``; the loss is the total time, within ``[t0, t0 + horizon_us]``, that the
    epoch's jobs (in the system at ``t0`` or arriving before ``t0 + window_us``) spend in the
    system, in ms: the part of the reward the epoch's decisions shape, followed long enough for
    their consequences to show (a window-only integral favoured greedy rules that leave work
    for later). Feedback waits until reality has passed ``t0 + horizon_us`` and every task
    running at ``t0`` has finished, so the arrivals and task times used are past by then.
    """

    def __init__(self, window_us: float = 500.0, horizon_us: float = 2000.0) -> None:
        if window_us <= 0:
            raise ValueError(f"window_us: must be positive, got {window_us}")
        if horizon_us < window_us:
            raise ValueError(f"horizon_us: must be at least window_us, got {horizon_us}")
        self.window_us = window_us
        self.horizon_us = horizon_us
        self._epochs = TimeWindowEpochs(window_us)

    def experts(self) -> dict[str, Policy]:
        return {name: factory() for name, factory in PORTFOLIO_EXPERTS.items()}

    def groups(self, env: Any) -> tuple[list[Group], list[GroupFamily]]:
        sim = self.simulator(env)
        groups = [
            Group("all", lambda c: True),
            Group("load:light", lambda c: c["load"] <= 1 / 3 and c["backlog"] == 0),
            Group("load:moderate", lambda c: 1 / 3 < c["load"] <= 2 / 3 and c["backlog"] == 0),
            Group("load:full", lambda c: c["load"] > 2 / 3 or c["backlog"] > 0),
            Group("backlog", lambda c: c["backlog"] > 0),
        ]
        templates = sim.application_templates
        for app in sorted(templates):
            name = templates[app].name
            groups.append(Group(f"app:{name}", partial(_runs_application, name)))
        return groups, []

    def context(self, env: Any) -> dict[str, Any]:
        sim = self.simulator(env)
        active = [int(j) for j in sim.slot_job_id.tolist() if j >= 0]
        return {
            "load": len(active) / sim.config.max_active_jobs,
            "backlog": len(sim.backlog),
            "apps": frozenset(sim.job_template[j].name for j in active),
        }

    def epoch_key(self, env: Any) -> Any:
        sim = self.simulator(env)
        return self._epochs.key(sim, sim.now_us)

    def start_marker(self, env: Any) -> tuple[Any, Any]:
        sim = self.simulator(env)
        running = np.flatnonzero(sim.node_state == RUNNING)
        jobs = [(sim.job_id_of(int(n)), int(n) % sim.tasks_per_job) for n in running.tolist()]
        return sim.now_us, jobs

    def feedback_ready(self, env: Any, start: Any, pending: Any) -> bool:
        sim = self.simulator(env)
        if sim.done:
            return True
        if sim.now_us < start + self.horizon_us:
            return False
        for job_id, task in pending:
            node = sim.node_of(job_id, task)
            if node >= 0 and sim.node_state[node] != DONE:
                return False
        return True

    def redact(self, clone: Any, reality: Any) -> None:
        sim: SoCSimulator = clone.simulator
        sim.redact_unrevealed()

    def window_done(self, clone: Any, start: Any) -> bool:
        return clone.simulator.now_us >= start + self.horizon_us

    def loss_state(self, clone: Any) -> Any:
        return clone.simulator.now_us

    def window_loss(self, clone: Any, start_state: Any) -> float:
        """Time in system, within ``[start, start + horizon]``, of the epoch's jobs (ms).

        The epoch's jobs are those in the system at its start or arriving during it; time after
        the horizon is not counted (it would depend on arrivals not yet seen).
        """
        sim = clone.simulator
        start_us = float(start_state)
        end_us = start_us + self.horizon_us
        arrival = np.asarray(sim.job_arrival_us)
        finish = np.asarray(sim.job_finish_us)
        finish = np.where(np.isnan(finish), end_us, np.minimum(finish, end_us))
        tracked = arrival < start_us + self.window_us
        spans = finish[tracked] - np.maximum(arrival[tracked], start_us)
        return float(np.maximum(spans, 0.0).sum() / 1000.0)


class SoCPortfolioPolicy(GroupwisePortfolioPolicy):
    """``regret-portfolio`` on SoCDAG (see :class:`SoCPortfolioAdapter`)."""

    def __init__(
        self,
        seed: int = 0,
        selection: str = "mode",
        window_us: float = 500.0,
        horizon_us: float = 2000.0,
    ) -> None:
        super().__init__(SoCPortfolioAdapter(window_us, horizon_us), seed=seed, selection=selection)


register_policy(
    FAMILY,
    "regret-heft",
    RegretHEFTPolicy,
    "HEFT with execution times from a groupwise-regret online regressor (Acharya et al. 2024)",
)
register_policy(
    FAMILY,
    "regret-portfolio",
    SoCPortfolioPolicy,
    "Groupwise-regret portfolio over HEFT/ETF/EFT/CP/FCFS/MET (AdaNormalHedge over groups)",
)
