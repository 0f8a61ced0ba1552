"""The PrefillChunk simulator: one serving replica whose every iteration's batch is decided outside.

Pure state machine, no Gymnasium. It drives one :class:`~schedgym.serving.engine.ServingInstance`
(the shared continuous-batching engine: paged KV cache, preemption by recompute, iteration times
from the calibrated cost model) with a :class:`BudgetComposer` as its batch scheduler. The engine
runs one iteration per decision (``fast_forward=False``); between iterations the composer holds
the engine idle until the caller picks the next iteration's (mode, budget).

Time (seconds) jumps from iteration end to iteration end, and from arrival to arrival while the
replica is empty. A *decision point* is an iteration boundary with work on the replica.

Batch composition modes (``budget`` is the iteration's prefill-token budget):

- ``STALL_FREE`` (Sarathi-Serve): every running decode, then the ongoing partial prefills, then
  new requests, each chunk ``min(remaining prompt, budget left)``. Budget 0: decode-only.
- ``WHOLE_MIXED`` (Orca): every running decode plus whole prompts (partial ones first, then new
  requests in arrival order) while their tokens fit the budget; the first always goes, as an
  engine's batch-token limit is at least the context window.
- With ``budget_counts_decodes`` (Sarathi-Serve's ``chunk_size``), the budget bounds the whole
  iteration: the running decodes take one token each and the prompts get what is left.
- ``PREFILL_ONLY`` (vLLM): when a prompt is partly prefilled or the queue's head can be
  admitted, an iteration of whole prompts as in ``WHOLE_MIXED`` while the decodes pause;
  otherwise a decode-only iteration.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.fork import Forkable, shallow_list, shared, shared_items
from schedgym.core.metrics import percentile
from schedgym.envs.prefillchunk.config import PrefillChunkConfig
from schedgym.serving.engine import ServingInstance
from schedgym.serving.kv_cache import KVCache
from schedgym.serving.metrics import tbt_samples_s
from schedgym.serving.request import PREFILL, Request
from schedgym.serving.schedulers import BatchPlan, ServingInstanceView
from schedgym.workloads.requests import RequestStream

STALL_FREE, WHOLE_MIXED, PREFILL_ONLY = 0, 1, 2
MODE_NAMES = ("stall-free", "whole-mixed", "prefill-only")


class BudgetComposer:
    """Batch scheduler for the engine that composes exactly one iteration per :meth:`arm`."""

    name = "prefillchunk"

    def __init__(self, budget_counts_decodes: bool = False) -> None:
        self.mode = STALL_FREE
        self.budget = 0
        self.armed = False
        # Sarathi-Serve's semantics: the budget bounds the iteration's tokens, decodes included.
        self.budget_counts_decodes = budget_counts_decodes
        # What the last plan did, for the simulator's per-iteration accounting.
        self.last_decodes = 0
        self.last_recomputes: list[Request] = []

    def arm(self, mode: int, budget: int) -> None:
        self.mode = mode
        self.budget = budget
        self.armed = True

    def plan(self, instance: ServingInstanceView) -> BatchPlan:
        if not self.armed:
            return BatchPlan(False)  # hold the engine idle until the next decision
        self.armed = False
        mode = self.mode
        whole = mode != STALL_FREE
        if mode == PREFILL_ONLY and (instance.prefilling or instance.can_admit()):
            decode = False
        else:
            decode = instance.prepare_decode()
        self.last_decodes = instance.num_decoding if decode else 0
        left = self.budget
        if self.budget_counts_decodes:
            left -= self.last_decodes
        prefills: list[tuple[Request, int]] = []
        if left > 0:
            for request in instance.prefilling:
                if left <= 0:
                    break
                remaining = request.remaining_prefill
                chunk = remaining if whole else min(remaining, left)
                prefills.append((request, chunk))
                left -= chunk
            waiting = instance.waiting
            while left > 0 and instance.can_admit():
                if whole and prefills and waiting[0].remaining_prefill > left:
                    break
                request = instance.admit_next()
                remaining = request.remaining_prefill
                chunk = remaining if whole else min(remaining, left)
                prefills.append((request, chunk))
                left -= chunk
        self.last_recomputes = [r for r, _ in prefills if r.generated > 0]
        return BatchPlan(decode, prefills)


class PrefillChunkSimulator(Forkable):
    """One replica serving a Poisson (or Gamma) stream; the caller composes each iteration.

    Args:
        config: the validated configuration.
        instance: the episode's requests (``PrefillChunkGenerator.generate(config, seed)`` or a
            recorded stream of ``config.num_requests`` requests).
    """

    def __init__(self, config: PrefillChunkConfig, instance: RequestStream) -> None:
        self.config = config
        if instance.num_requests != config.num_requests:
            raise ConfigError(
                f"instance: holds {instance.num_requests} requests, the config's num_requests "
                f"is {config.num_requests}"
            )
        self.episode = instance
        self.requests = [
            Request(i, float(arrival), int(prompt), int(output))
            for i, (arrival, prompt, output) in enumerate(
                zip(
                    instance.arrival_s.tolist(),
                    instance.prompt_tokens.tolist(),
                    instance.output_tokens.tolist(),
                    strict=True,
                )
            )
        ]
        deployment = config.resolved_deployment()
        self.cost_model = deployment.cost_model
        self.capacity_blocks = deployment.kv_capacity_blocks
        self.composer = BudgetComposer(config.budget_counts_decodes)
        self.instance = ServingInstance(
            0,
            self.cost_model,
            KVCache(self.capacity_blocks),
            self.composer,
            max_num_seqs=config.max_batch_requests,
            fast_forward=False,
        )
        self.now_s = 0.0
        self.requests_arrived = 0
        self.requests_completed = 0
        self.finished: list[Request] = []
        self.done = False
        self.truncated = False
        # Per-iteration accounting (the last iteration's values, for rewards and observations).
        self.iterations = 0
        self.last_tokens = 0
        self.last_violations = 0
        self.last_decode_gap_s = 0.0
        self.last_iteration_s = 0.0
        self.total_violations = 0
        self.recent_violation_frac = 0.0  # exponential average over iterations (weight 0.1)
        self._advance()

    # ----------------------------------------------------------------- read-only views
    @property
    def waiting(self) -> int:
        """Requests queued on the replica (not yet admitted, or preempted)."""
        return len(self.instance.waiting)

    def has_prefill_work(self) -> bool:
        """Whether some prompt is queued or partly prefilled."""
        return bool(self.instance.waiting) or bool(self.instance.prefilling)

    def queue_view(self, limit: int) -> list[Request]:
        """Up to ``limit`` requests with prefill work: partly prefilled first, then the queue."""
        inst = self.instance
        head = inst.prefilling[:limit]
        if len(head) < limit:
            head = head + list(islice(inst.waiting, limit - len(head)))
        return head

    def action_valid(self, mode: int, budget: int) -> bool:
        """Whether (mode, budget) composes a non-empty iteration now."""
        if self.done:
            return False
        if budget == 0:
            return mode == STALL_FREE and self.instance.num_decoding > 0
        return True  # at a decision point there is work, and every budget > 0 finds some

    # ----------------------------------------------------------------------------- actions
    def step(self, mode: int, budget: int) -> None:
        """Run one iteration composed with ``mode`` and ``budget``, then advance to the next
        decision point."""
        if not self.action_valid(mode, budget):
            raise InvalidActionError(
                f"action: {MODE_NAMES[mode] if 0 <= mode < 3 else mode} with budget {budget} "
                "is not valid now (see action_masks())"
            )
        inst = self.instance
        tokens_before = inst.tokens_generated
        gaps_before = len(inst.tbt_individual_s)
        previous_decode_end = inst.last_decode_end_s
        self.composer.arm(mode, budget)
        inst.start_if_idle(self.now_s)  # the engine plans with the armed composer and starts
        iteration_end = inst.next_event_s
        self._advance()
        # Tokens whose gap exceeded the SLO: the decodes that continued from the previous decode
        # iteration share one gap; requests resuming a stream (first decode after a prefill,
        # token after a recompute) have their own, logged by the engine.
        slo = self.config.slo_tbt_s
        new_gaps = inst.tbt_individual_s[gaps_before:]
        violations = sum(1 for gap in new_gaps if gap > slo)
        decodes = self.composer.last_decodes
        if decodes and inst.last_decode_end_s == iteration_end:
            # A recompute that finished its prefill has left the prefill state.
            recomputes = sum(1 for r in self.composer.last_recomputes if r.state != PREFILL)
            joiners = len(new_gaps) - min(len(new_gaps), recomputes)
            continuing = max(0, decodes - joiners)
            first = previous_decode_end != previous_decode_end  # nan: no decode before
            gap = 0.0 if first else iteration_end - previous_decode_end
            self.last_decode_gap_s = gap
            if gap > slo:
                violations += continuing
        self.iterations += 1
        self.last_tokens = inst.tokens_generated - tokens_before
        self.last_violations = violations
        self.total_violations += violations
        self.last_iteration_s = inst.last_iteration_s
        frac = violations / self.last_tokens if self.last_tokens else 0.0
        self.recent_violation_frac += 0.1 * (frac - self.recent_violation_frac)

    def extend_requests(self, requests: list[Request]) -> None:
        """Append requests that arrive no earlier than the current last one.

        For a counterfactual copy that learns of arrivals as reality reveals them (the
        portfolio's whole-policy shadows): a request whose arrival time has already passed
        joins the queue now, and an episode that had served every request it knew resumes
        (an episode cut at its horizon stays over).

        Raises:
            ValueError: when ``requests`` are out of arrival order.
        """
        last_s = self.requests[-1].arrival_s if self.requests else -math.inf
        for request in requests:
            if request.arrival_s < last_s:
                raise ValueError(
                    f"requests: arrival {request.arrival_s} is before the last one, {last_s}"
                )
            last_s = request.arrival_s
        if not requests:
            return
        self.requests.extend(requests)
        if self.truncated:
            return
        if self.done:
            self.done = False
            self._advance()
            return
        inst = self.instance
        while self.requests_arrived < len(self.requests) and (
            self.requests[self.requests_arrived].arrival_s <= self.now_s
        ):
            inst.add_request(self.requests[self.requests_arrived], self.now_s)
            self.requests_arrived += 1

    # --------------------------------------------------------------------------- dynamics
    def _advance(self) -> None:
        """Run until the next decision point (an idle boundary with work) or the end."""
        inst = self.instance
        requests = self.requests
        horizon = self.config.horizon_s
        while True:
            if inst.busy:
                end = inst.next_event_s
                if horizon is not None and end > horizon:
                    self._truncate(horizon)
                    return
                # Arrivals during the iteration queue up; they can join from the next one.
                while self.requests_arrived < len(requests) and (
                    requests[self.requests_arrived].arrival_s < end
                ):
                    request = requests[self.requests_arrived]
                    self.requests_arrived += 1
                    inst.add_request(request, request.arrival_s)
                inst.on_event(end)
                self.now_s = end
                self._drain()
                continue
            if inst.waiting or inst.num_running():
                # Deliver arrivals at exactly this instant before deciding.
                while self.requests_arrived < len(requests) and (
                    requests[self.requests_arrived].arrival_s <= self.now_s
                ):
                    inst.add_request(requests[self.requests_arrived], self.now_s)
                    self.requests_arrived += 1
                return
            if self.requests_arrived == len(requests):
                self.done = True
                return
            arrival = requests[self.requests_arrived].arrival_s
            if horizon is not None and arrival > horizon:
                self._truncate(horizon)
                return
            self.now_s = max(self.now_s, arrival)
            while self.requests_arrived < len(requests) and (
                requests[self.requests_arrived].arrival_s <= self.now_s
            ):
                inst.add_request(requests[self.requests_arrived], self.now_s)
                self.requests_arrived += 1

    def _drain(self) -> None:
        finished = self.instance.finished
        if finished:
            self.finished.extend(finished)
            self.requests_completed += len(finished)
            finished.clear()

    def _truncate(self, horizon_s: float) -> None:
        self.instance.sync(horizon_s)
        self.now_s = horizon_s
        self.truncated = True
        self.done = True

    # ------------------------------------------------------------------------- metrics
    def tbt_samples_s(self) -> np.ndarray:
        """Every time-between-tokens gap so far, seconds."""
        return tbt_samples_s([self.instance])

    def summary(self) -> dict[str, float | int]:
        """Episode metrics (Sarathi-Serve's): TBT and TTFT percentiles, scheduling delay,
        throughput, SLO violations, and ``slo_excess_ratio``, the larger of p99 TBT / SLO and
        median scheduling delay / 2 s (at most 1 exactly when the run meets the capacity
        criterion)."""
        tbt = self.tbt_samples_s()
        finished = self.finished
        ttft = [r.first_token_s - r.arrival_s for r in finished]
        arrived = self.requests[: self.requests_arrived]
        delays = [r.admitted_s - r.arrival_s for r in arrived if r.admitted_s == r.admitted_s]
        # Requests still queued at a truncation have waited at least until now.
        delays += [self.now_s - r.arrival_s for r in arrived if r.admitted_s != r.admitted_s]
        first_arrival = self.requests[0].arrival_s
        elapsed = self.now_s - first_arrival
        tokens = self.instance.tokens_generated
        slo = self.config.slo_tbt_s
        tbt_p99 = percentile(tbt, 99)
        delay_p50 = percentile(delays, 50)
        excess = max(
            tbt_p99 / slo if not math.isnan(tbt_p99) else 0.0,
            delay_p50 / 2.0 if not math.isnan(delay_p50) else 0.0,
        )
        return {
            "tbt_p50_s": percentile(tbt, 50),
            "tbt_p99_s": tbt_p99,
            "ttft_p50_s": percentile(ttft, 50),
            "ttft_p99_s": percentile(ttft, 99),
            "sched_delay_p50_s": delay_p50,
            "throughput_tok_s": tokens / elapsed if elapsed > 0 else 0.0,
            "requests_arrived": self.requests_arrived,
            "requests_completed": self.requests_completed,
            "slo_violation_frac": float((tbt > slo).mean()) if tbt.size else 0.0,
            "slo_excess_ratio": excess,
            "preemptions": self.instance.preemptions,
            "iterations": self.iterations,
        }

    # ---------------------------------------------------------------------------- forking
    def fork_memo(self) -> dict[int, Any]:
        """What a :meth:`fork` shares: the config, the cost model and the finished requests
        (a finished request never changes again); the engine's append-only logs and the list
        of finished requests are copied shallowly."""
        memo = shared(self.config, self.cost_model)
        memo.update(self.instance.log_copy_memo())
        memo.update(shallow_list(self.finished))
        memo.update(shared_items(self.finished))
        return memo
