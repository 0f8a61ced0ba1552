"""Groupwise-regret policies for PrefillChunk: ``regret-portfolio`` and ``regret-sjf``.

``regret-portfolio``: :class:`~schedgym.baselines.portfolio.GroupwisePortfolioPolicy` over the
batch-composition baselines (vLLM, Orca, FasterTransformer, Sarathi-512, Sarathi-2048, in their
registration order; ``random`` is not a heuristic). A decision epoch is a window of simulated
time; see :class:`PrefillPortfolioAdapter` for the groups and how a heuristic's loss is measured.
The episode's metric is a p99 over the whole episode: vLLM's rare prefill stalls keep its p99 TBT
low only when it is played nearly all the time, which a per-window loss cannot see. So by default
(``feedback="to-end"``) a heuristic's loss is the suite's ``slo_excess_ratio`` at the episode's end
had it been played from the epoch's start to the end: the rollout continues past the present over
requests drawn afresh from the configured workload (its arrival process and length distribution,
which are public knobs; never the episode's own future draws). ``feedback="window"`` is the
per-window loss described in :class:`PrefillPortfolioAdapter`; ``feedback="whole-policy"`` judges
each heuristic by the episode's metric so far had it been played from the start.

``regret-sjf``: shortest predicted job first. The env's action picks an iteration's (mode,
budget) and cannot express an order: the engine admits its queue's head first. The closest
faithful variant, through the engine's additive hook
:meth:`~schedgym.serving.engine.ServingInstance.reorder_waiting` (outside the action: an action
trace alone does not replay it; the policy is deterministic, so rerunning it does), orders the
admission queue before every iteration by predicted job size (prefill iterations plus predicted
remaining decode tokens, :func:`~schedgym.baselines.regret_serving.sjf_key`) and composes the
iteration as Sarathi-Serve does (stall-free, 512-token budget), so it differs from
``sarathi-512`` only in which request is admitted. Output lengths come from an
:class:`~schedgym.baselines.regret_serving.OutputLengthPredictor` trained online on the
requests that have completed (groups: everyone, prompt-length bands); the output length of a
request that has not finished is never read.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from schedgym.baselines import prefill
from schedgym.baselines.online_learning import Group, GroupFamily
from schedgym.baselines.portfolio import GroupwisePortfolioPolicy, TimeWindowAdapter
from schedgym.baselines.regret_serving import (
    CompletedLengths,
    OutputLengthPredictor,
    decoding_generated,
    rebuild_finish_heap,
    redact_requests,
    sjf_key,
)
from schedgym.core.metrics import percentile
from schedgym.core.policy import SimulatorPolicy, register_policy
from schedgym.envs.prefillchunk.simulator import PrefillChunkSimulator
from schedgym.serving.request import Request
from schedgym.workloads.arrivals import interarrival_times_s
from schedgym.workloads.request_lengths import FixedLengths, ShareGPTLengths

FAMILY = prefill.FAMILY

PORTFOLIO_EXPERTS: dict[str, Any] = {
    "vllm": prefill.VLLMPolicy,
    "orca": prefill.OrcaPolicy,
    "fastertransformer": prefill.FasterTransformerPolicy,
    "sarathi-512": lambda: prefill.SarathiPolicy(512),
    "sarathi-2048": lambda: prefill.SarathiPolicy(2048),
}

# Group thresholds: queued requests, tokens still to prefill, running decodes.
QUEUE_SHORT, QUEUE_LONG = 1, 4
PREFILL_SMALL, PREFILL_LARGE = 512, 2048
DECODES_MANY = 16
# The "late" group: the running share of late tokens above the 1% a p99 at the SLO allows.
P99_SHARE = 0.01
# The window loss's delay term: mean wait over Sarathi-Serve's 2 s scheduling-delay bound.
DELAY_SCALE_S = 2.0
# How an expert's loss is measured: ``to-end`` (reality's past, then the expert to the episode's
# end over arrivals drawn from the configured workload: the episode's metric, p99 and all),
# ``whole-policy`` (its episode metric so far had it been played from the start) or ``window``
# (reality's past, then the expert for one horizon).
FEEDBACK_KINDS = ("to-end", "whole-policy", "window")
# Whole-policy feedback starts once a shadow holds this many token gaps: 50 above its p99.
MIN_TBT_GAPS = 5000


def synthetic_arrivals(reality: PrefillChunkSimulator) -> list[Request]:
    """The requests of the episode that have not arrived yet in ``reality``, drawn afresh from
    the configured workload (arrival process and rate, length distribution: public knobs, not
    the episode's draws), after ``reality``'s present; seeded by what is known (requests
    arrived, iterations run), so a rollout over them replays exactly."""
    config = reality.config
    known = reality.requests_arrived
    missing = config.num_requests - known
    if missing <= 0:
        return []
    rng = np.random.default_rng([known, reality.iterations, 0x5EED])
    gaps = interarrival_times_s(
        rng,
        missing,
        config.request_rate_per_s,
        process=config.arrival_process,
        cv=config.arrival_cv,
    )
    last_s = reality.requests[known - 1].arrival_s if known else 0.0
    arrivals = max(reality.now_s, last_s) + np.cumsum(gaps)
    if config.lengths == "sharegpt":
        sampler: ShareGPTLengths | FixedLengths = ShareGPTLengths(config.max_total_tokens)
    else:
        sampler = FixedLengths(config.prompt_tokens, config.output_tokens)
    prompts, outputs = sampler.sample(rng, missing)
    return [
        Request(known + i, float(arrivals[i]), int(prompts[i]), int(outputs[i]))
        for i in range(missing)
    ]


class PrefillPortfolioAdapter(TimeWindowAdapter[PrefillChunkSimulator]):
    """Experts, contexts, groups and windows of the PrefillChunk portfolio.

    Decision epochs: windows of ``window_s`` simulated seconds. Context, from the simulator's
    view at the epoch's start: requests queued (load level), prompt tokens still to prefill
    (request-size band), running decodes, and the recent share of late tokens. Groups
    (intersecting): everyone; queue empty / short (1-3) / long (4+); tokens to prefill small
    (< 512) / medium / large (> 2048); decodes none / few / many (> 16); late tokens recently
    (the running average of late-token share above 1%).

    Loss with ``feedback="to-end"`` (the default): the heuristic runs the redacted snapshot
    taken at ``t0`` to the episode's end, future arrivals drawn afresh (:func:`synthetic_arrivals`);
    the loss is the episode's ``slo_excess_ratio`` there. With ``feedback="window"``, the loss of
    a heuristic for an epoch begun at ``t0``: the heuristic runs a snapshot taken at
    ``t0`` until ``t0 + horizon_s``; the loss is the sum of the two terms of the suite's
    ``slo_excess_ratio``, each made additive over windows. TBT: the episode's p99 TBT / SLO
    with the window gone this way (the snapshot's past gaps pooled with the rollout's), scaled
    by elapsed time / horizon so that every window weighs the same, as in the episode's p99. A
    per-window p99 or late-token share is not consistent with the episode's: rare prefill
    stalls can exceed 1% of a short window's gaps yet stay under 1% of the episode's. Delay:
    the mean time the requests waiting for admission in the window waited in it, over
    Sarathi-Serve's 2 s bound. The pooled median delay is not used: it does not move until
    half the requests wait, and a heuristic that defers admission (FasterTransformer) then
    looks free inside the horizon while its backlog grows. Feedback is computed once reality has
    passed ``t0 + horizon_s``; before the rollouts the snapshot is redacted to what is known
    then (:meth:`redact`): requests that have not arrived are dropped, and every request that
    has not finished gets its conditional expected output length given the tokens it has
    produced, from the completed requests' lengths. The arrivals inside the window are past
    by then, so the rollout sees the real ones.
    """

    expert_factories = PORTFOLIO_EXPERTS

    def __init__(
        self,
        window_s: float = 16.0,
        horizon_s: float = 16.0,
        feedback: str = "to-end",
        min_tbt_gaps: int = MIN_TBT_GAPS,
    ) -> None:
        super().__init__(window_s, horizon_s)
        if feedback not in FEEDBACK_KINDS:
            raise ValueError(f"feedback: must be one of {FEEDBACK_KINDS}, got {feedback!r}")
        if min_tbt_gaps < 0:
            raise ValueError(f"min_tbt_gaps: must be >= 0, got {min_tbt_gaps}")
        self.feedback = feedback
        self.min_tbt_gaps = min_tbt_gaps

    def groups(self, env: Any) -> tuple[list[Group], list[GroupFamily]]:
        return (
            [
                Group("all", lambda c: True),
                Group("queue:empty", lambda c: c["queued"] < QUEUE_SHORT),
                Group("queue:short", lambda c: QUEUE_SHORT <= c["queued"] < QUEUE_LONG),
                Group("queue:long", lambda c: c["queued"] >= QUEUE_LONG),
                Group("prefill:small", lambda c: c["prefill_tokens"] < PREFILL_SMALL),
                Group(
                    "prefill:medium",
                    lambda c: PREFILL_SMALL <= c["prefill_tokens"] <= PREFILL_LARGE,
                ),
                Group("prefill:large", lambda c: c["prefill_tokens"] > PREFILL_LARGE),
                Group("decodes:none", lambda c: c["decodes"] == 0),
                Group("decodes:few", lambda c: 0 < c["decodes"] <= DECODES_MANY),
                Group("decodes:many", lambda c: c["decodes"] > DECODES_MANY),
                Group("late", lambda c: c["late_share"] > P99_SHARE),
            ],
            [],
        )

    def context(self, env: Any) -> dict[str, Any]:
        sim = self.simulator(env)
        inst = sim.instance
        return {
            "queued": len(inst.waiting),
            "prefill_tokens": inst.waiting_prefill_tokens,
            "decodes": inst.num_decoding,
            "late_share": sim.recent_violation_frac,
        }

    def epoch_key(self, env: Any) -> Any:
        sim = self.simulator(env)
        return self._epochs.key(sim, sim.now_s)

    def redact(self, clone: Any, reality: Any) -> None:
        """Keep what is known when feedback is computed (``reality``'s present), nothing else."""
        sim: PrefillChunkSimulator = clone.simulator
        real: PrefillChunkSimulator = reality.simulator
        known = real.requests_arrived
        if len(sim.requests) > known:
            sim.requests = sim.requests[:known]  # arrivals not seen yet: dropped
        finished = {r.request_id for r in real.finished}
        real_requests = real.requests
        redact_requests(
            sim.requests,
            finished,
            lambda rid: real.instance.generated(real_requests[rid]),
            CompletedLengths(r.output_tokens for r in real.finished),
        )
        rebuild_finish_heap(sim.instance, sim.now_s)
        if self.feedback == "to-end":
            sim.extend_requests(synthetic_arrivals(real))

    def window_done(self, clone: Any, start: Any) -> bool:
        if self.feedback == "to-end":
            return clone.simulator.done
        return super().window_done(clone, start)

    def catch_up(self, shadow: Any, base: Any, reality: Any) -> None:
        """Whole-policy feedback: what ``reality`` revealed since ``shadow`` was last redacted.

        New arrivals are fresh copies of ``base``'s (untouched) requests; every request the
        shadow has not finished gets the length :meth:`redact` would give it now (its true
        length once reality has finished it), raised above what the shadow has produced
        (a request the shadow has run past its now-known end finishes at its next token).
        """
        sim: PrefillChunkSimulator = shadow.simulator
        real: PrefillChunkSimulator = reality.simulator
        fresh = [
            copy.copy(r) for r in base.simulator.requests[len(sim.requests) : real.requests_arrived]
        ]
        finished_real = {r.request_id for r in real.finished}
        finished_shadow = {r.request_id for r in sim.finished}
        real_requests = real.requests
        lengths = CompletedLengths(r.output_tokens for r in real.finished)
        for request in [*sim.requests, *fresh]:
            rid = request.request_id
            if rid in finished_shadow:
                continue
            if rid in finished_real:
                known = real_requests[rid].output_tokens
            else:
                known = lengths.expected_total(real.instance.generated(real_requests[rid]))
            produced = decoding_generated(sim.instance, request)
            request.output_tokens = max(known, produced + 1)
        rebuild_finish_heap(sim.instance, sim.now_s)
        sim.extend_requests(fresh)

    def episode_loss(self, shadow: Any) -> float:
        """The suite's ranking metric, ``slo_excess_ratio``, of the shadow's episode so far;
        nan (no information) while it holds fewer than ``min_tbt_gaps`` token gaps, too few
        for its p99 to mean anything."""
        sim: PrefillChunkSimulator = shadow.simulator
        if sim.tbt_samples_s().size < self.min_tbt_gaps:
            return math.nan
        return float(sim.summary()["slo_excess_ratio"])

    def loss_state(self, clone: Any) -> Any:
        return clone.simulator.now_s

    def window_loss(self, clone: Any, start_state: Any) -> float:
        sim: PrefillChunkSimulator = clone.simulator
        if self.feedback == "to-end":
            return float(sim.summary()["slo_excess_ratio"])
        start_s = start_state
        end_s = start_s + self.horizon_s
        # The episode's p99 TBT if the window went this way: the past gaps the snapshot holds
        # pooled with the rollout's. A window moves it by about its share of the pooled gaps
        # times its own influence; the share shrinks as 1 / elapsed, so scaling by elapsed /
        # horizon weighs every window alike, as the episode's metric does. The part common to
        # every expert (the history's p99) goes with the policy's shift by the round's best.
        elapsed = max(end_s - sim.requests[0].arrival_s, self.horizon_s)
        p99 = percentile(sim.tbt_samples_s(), 99)
        tbt_term = (0.0 if math.isnan(p99) else p99 / sim.config.slo_tbt_s) * (
            elapsed / self.horizon_s
        )
        waits = []
        for request in sim.requests[: sim.requests_arrived]:
            if request.arrival_s >= end_s:
                break
            admitted = request.admitted_s
            if admitted == admitted and admitted <= start_s:
                continue  # admitted before the window
            until = min(admitted, end_s) if admitted == admitted else min(sim.now_s, end_s)
            waits.append(max(until - max(request.arrival_s, start_s), 0.0))
        mean_wait = float(np.mean(waits)) if waits else 0.0
        return tbt_term + mean_wait / DELAY_SCALE_S


class PrefillPortfolioPolicy(GroupwisePortfolioPolicy):
    """``regret-portfolio`` on PrefillChunk (see :class:`PrefillPortfolioAdapter`)."""

    def __init__(
        self,
        seed: int = 0,
        selection: str = "mode",
        window_s: float = 16.0,
        horizon_s: float = 16.0,
        feedback: str = "to-end",
        min_tbt_gaps: int = MIN_TBT_GAPS,
    ) -> None:
        super().__init__(
            PrefillPortfolioAdapter(window_s, horizon_s, feedback, min_tbt_gaps),
            seed=seed,
            selection=selection,
        )


class RegretSJFPolicy(SimulatorPolicy[PrefillChunkSimulator]):
    """Shortest predicted job first (``regret-sjf``; see the module docstring).

    Before every decision the predictor takes in the requests completed since the previous
    one; when more than one request waits, the admission queue is sorted by predicted job
    size; the iteration is composed as ``sarathi-<budget>``.

    Args:
        budget: Sarathi's prefill-token budget (one of the env's ``token_budgets``).
    """

    def __init__(self, budget: int = 512) -> None:
        self.budget = budget
        self.composition = prefill.SarathiPolicy(budget)

    def reset(self, env: Any) -> None:
        sim = self.simulator(env)
        self.predictor = OutputLengthPredictor(max_tokens=float(sim.config.max_total_tokens))
        self._learnt = 0
        self.composition.reset(env)

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        finished = sim.finished
        if self._learnt < len(finished):
            self.predictor.learn(finished[self._learnt :])
            self._learnt = len(finished)
        inst = sim.instance
        if len(inst.waiting) > 1:
            inst.reorder_waiting(sjf_key(self.predictor, inst.generated, self.budget))
        return self.composition.act(observation, env)


register_policy(
    FAMILY,
    "regret-portfolio",
    PrefillPortfolioPolicy,
    "Groupwise-regret portfolio over vLLM/Orca/FasterTransformer/Sarathi-512/Sarathi-2048",
)
register_policy(
    FAMILY,
    "regret-sjf",
    RegretSJFPolicy,
    "Sarathi-512 admitting the shortest predicted job first (groupwise-regret output lengths)",
)
