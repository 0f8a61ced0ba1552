"""Groupwise-regret policies for LLMCluster: ``regret-portfolio`` and ``regret-sjf``.

``regret-portfolio``: :class:`~schedgym.baselines.portfolio.GroupwisePortfolioPolicy` over the
dispatch (and migration) heuristics of ``schedgym.baselines.llm``: round-robin, least
outstanding requests, Llumnix, Llumnix without migration (registration order; ``random`` is not
a heuristic). See :class:`LLMPortfolioAdapter` for the groups and the loss.

``regret-sjf``: shortest predicted job first, the closest faithful variant the action space
allows. An action dispatches the one pending request (arrivals come one at a time, in order) or
starts one migration, so it cannot order requests; what an order changes is which queued
request each instance admits next, and each engine admits its queue's head. So the policy
dispatches and migrates as Llumnix does, and before every decision sorts every instance's
admission queue (the engine's additive hook
:meth:`~schedgym.serving.engine.ServingInstance.reorder_waiting`, outside the action) by
priority class (high first, as the engine's priority scheduling keeps them), then preempted
requests first (they hold generated tokens, as vLLM re-queues them at the front), then
predicted job size (prefill iterations plus predicted remaining decode tokens). Output lengths
come from an :class:`~schedgym.baselines.regret_serving.OutputLengthPredictor` trained on
completed requests only, with groups everyone, prompt-length bands and priority.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from schedgym.baselines import llm
from schedgym.baselines.online_learning import Group, GroupFamily
from schedgym.baselines.portfolio import GroupwisePortfolioPolicy, TimeWindowAdapter
from schedgym.baselines.regret_serving import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    CompletedLengths,
    OutputLengthPredictor,
    prompt_band,
    rebuild_finish_heap,
    redact_requests,
    sjf_key,
)
from schedgym.core.policy import register_policy
from schedgym.envs.llmcluster.simulator import DISPATCH, LLMClusterSimulator

FAMILY = llm.FAMILY

PORTFOLIO_EXPERTS: dict[str, Any] = {
    "round-robin": llm.RoundRobinPolicy,
    "lor": llm.LeastOutstandingPolicy,
    "llumnix": llm.LlumnixPolicy,
    "llumnix-no-migration": lambda: llm.LlumnixPolicy(migrate=False),
}

# Load groups: outstanding requests per instance that is up.
LOAD_LIGHT, LOAD_HEAVY = 4.0, 16.0
# The prefill chunk the SJF key counts a prompt in (iterations of prefill).
SJF_PREFILL_CHUNK = 2048


class LLMPortfolioAdapter(TimeWindowAdapter[LLMClusterSimulator]):
    """Experts, contexts, groups and windows of the LLMCluster portfolio.

    Decision epochs: windows of ``window_s`` simulated seconds. Context at an epoch's start:
    outstanding requests per instance that is up (load level), whether high-priority requests
    are in the system, and, at a dispatch, the pending request's prompt-length band and
    priority. Groups (intersecting): everyone; load light (< 4) / moderate / heavy (> 16);
    high-priority requests present; one group per prompt band of the pending request; one per
    its priority.

    Loss of a heuristic for an epoch begun at ``t0``: the heuristic runs a snapshot taken at
    ``t0`` until ``t0 + horizon_s``; the loss is the mean time, within the window, that the
    requests without a first token waited for it (the suite ranks by p99 TTFT). Feedback is
    computed once reality has passed ``t0 + horizon_s``; the snapshot is first redacted to what
    is known then (:meth:`redact`): arrivals not yet seen are dropped, and every request that
    has not finished (on an instance, or still in the workload stream) gets its conditional
    expected output length given the tokens it has produced, from the completed requests;
    decode stretches planned on the old lengths are cut.
    """

    expert_factories = PORTFOLIO_EXPERTS

    def __init__(self, window_s: float = 2.0, horizon_s: float = 6.0) -> None:
        super().__init__(window_s, horizon_s)

    def groups(self, env: Any) -> tuple[list[Group], list[GroupFamily]]:
        return (
            [
                Group("all", lambda c: True),
                Group("load:light", lambda c: c["load"] < LOAD_LIGHT),
                Group("load:moderate", lambda c: LOAD_LIGHT <= c["load"] <= LOAD_HEAVY),
                Group("load:heavy", lambda c: c["load"] > LOAD_HEAVY),
                Group("high-priority-present", lambda c: c["high_present"]),
            ],
            [
                GroupFamily("prompt_band", lambda c: c["band"]),
                GroupFamily("priority", lambda c: c["priority"]),
            ],
        )

    def context(self, env: Any) -> dict[str, Any]:
        sim = self.simulator(env)
        up = max(int(sim.up.sum()), 1)
        outstanding = sum(instance.num_outstanding() for instance in sim.instances)
        high = any(
            request.priority
            for instance in sim.instances
            for pool in (instance.waiting, instance.decoding.values())
            for request in pool
        )
        pending = sim.pending_request if sim.decision_kind == DISPATCH else None
        return {
            "load": outstanding / up,
            "high_present": high,
            "band": prompt_band(pending.prompt_tokens) if pending is not None else None,
            "priority": pending.priority if pending is not None else None,
        }

    def epoch_key(self, env: Any) -> Any:
        sim = self.simulator(env)
        return self._epochs.key(sim, sim.now_s)

    def redact(self, clone: Any, reality: Any) -> None:
        """Keep what is known when feedback is computed (``reality``'s present), nothing else."""
        sim: LLMClusterSimulator = clone.simulator
        real: LLMClusterSimulator = reality.simulator
        known = real.requests_arrived
        sim.num_requests = min(sim.num_requests, known)  # arrivals not seen yet: dropped
        completed = real.cluster.completed
        finished = set(completed.request_ids.tolist())
        lengths = CompletedLengths(completed.output_tokens.tolist())
        redact_requests(sim.live_requests(), finished, real.generated_tokens, lengths)
        # Requests that arrived in reality but not yet in the snapshot: their stream entries.
        stream = sim.stream
        outputs = np.array(stream.output_tokens[:known], copy=True)
        for k in range(sim.requests_arrived, known):
            if k not in finished:
                outputs[k] = lengths.expected_total(real.generated_tokens(k))
        sim.stream = dataclasses.replace(
            stream,
            arrival_s=stream.arrival_s[:known],
            prompt_tokens=stream.prompt_tokens[:known],
            output_tokens=outputs,
            priority=stream.priority[:known],
        )
        for instance in sim.instances:
            rebuild_finish_heap(instance, sim.now_s)
            sim.cluster.schedule_next_event(instance)

    def loss_state(self, clone: Any) -> Any:
        sim: LLMClusterSimulator = clone.simulator
        return sim.now_s, len(sim.cluster.completed)

    def window_loss(self, clone: Any, start_state: Any) -> float:
        sim: LLMClusterSimulator = clone.simulator
        start_s, completed_before = start_state
        end_s = start_s + self.horizon_s
        # Requests finished before the window had their first token before it: only those
        # finished since, and those still in flight, can have waited in it.
        completed = sim.cluster.completed
        seen = [
            (request_id, arrival, first)
            for request_id, arrival, first in zip(
                completed.request_ids[completed_before:].tolist(),
                completed.arrival_s[completed_before:].tolist(),
                completed.first_token_s[completed_before:].tolist(),
                strict=True,
            )
        ]
        seen += [(r.request_id, r.arrival_s, r.first_token_s) for r in sim.live_requests()]
        seen.sort()  # arrival order, as the waits were always summed
        waits = []
        for _, arrival, first in seen:
            if arrival >= end_s:
                break
            if first == first and first <= start_s:
                continue
            until = min(first, end_s) if first == first else min(sim.now_s, end_s)
            waits.append(max(until - max(arrival, start_s), 0.0))
        if not waits:
            return 0.0
        return float(np.mean(waits)) + float(np.max(waits))


class LLMPortfolioPolicy(GroupwisePortfolioPolicy):
    """``regret-portfolio`` on LLMCluster (see :class:`LLMPortfolioAdapter`)."""

    def __init__(
        self, seed: int = 0, selection: str = "mode", window_s: float = 2.0, horizon_s: float = 6.0
    ) -> None:
        super().__init__(LLMPortfolioAdapter(window_s, horizon_s), seed=seed, selection=selection)


class RegretSJFClusterPolicy(llm.LlumnixPolicy):
    """Llumnix dispatch and migration, instance queues in shortest-predicted-job-first order
    (``regret-sjf``; see the module docstring)."""

    def reset(self, env: Any) -> None:
        sim = self.simulator(env)
        # No length cap configured (max_total_tokens None): the predictor's default clip.
        limit = sim.config.max_total_tokens
        self.predictor = OutputLengthPredictor(
            families=[("priority", lambda r: r.priority)],
            max_tokens=DEFAULT_MAX_OUTPUT_TOKENS if limit is None else float(limit),
        )
        self._learnt = 0

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        completed = sim.cluster.completed
        if self._learnt < len(completed):
            self.predictor.learn(completed.rows(self._learnt))
            self._learnt = len(completed)
        for instance in sim.instances:
            if len(instance.waiting) > 1:
                size = sjf_key(self.predictor, instance.generated, SJF_PREFILL_CHUNK)
                instance.reorder_waiting(
                    lambda r, size=size: (-r.priority, r.num_preemptions == 0, *size(r))
                )
        return super().act(observation, env)


register_policy(
    FAMILY,
    "regret-portfolio",
    LLMPortfolioPolicy,
    "Groupwise-regret portfolio over round-robin/LOR/Llumnix/Llumnix-no-migration",
)
register_policy(
    FAMILY,
    "regret-sjf",
    RegretSJFClusterPolicy,
    "Llumnix with shortest-predicted-job-first instance queues (groupwise-regret lengths)",
)
