"""Baselines for PrefillChunk: the batch-composition rules of the serving systems Sarathi-Serve
compares against, each expressed as the (mode, budget) it picks per iteration.

Every policy reads the simulator's view (queue, running decodes); none reads future arrivals or
output lengths. Registered as ``vllm``, ``orca``, ``fastertransformer``, ``sarathi-512``,
``sarathi-2048`` and ``random``. The budget of the whole-prompt systems is the largest configured
one (4096 by default; a longer prompt still goes, alone), standing for their batch-token limit.
"""

from __future__ import annotations

from typing import Any

from schedgym.baselines.common import RandomMaskedPolicy
from schedgym.core.policy import SimulatorPolicy, register_policy
from schedgym.envs.prefillchunk.simulator import (
    PREFILL_ONLY,
    STALL_FREE,
    WHOLE_MIXED,
    PrefillChunkSimulator,
)

FAMILY = "PrefillChunk"


class FixedModePolicy(SimulatorPolicy[PrefillChunkSimulator]):
    """Every iteration the same composition: ``mode`` with ``budget`` prefill tokens when a
    prompt waits (a budget of None means the largest configured), decode-only otherwise."""

    def __init__(self, mode: int, budget: int | None = None) -> None:
        self.mode = mode
        self.budget = budget

    def act(self, observation: Any, env: Any) -> int:
        unwrapped = env.unwrapped
        sim = self.simulator(env)
        if not sim.has_prefill_work():
            return 0  # decode-only: a decision point without prompts has decodes
        budget = self.budget if self.budget is not None else unwrapped.budgets[-1]
        return int(unwrapped.action_index(self.mode, budget))


class VLLMPolicy(FixedModePolicy):
    """vLLM (Kwon et al., SOSP 2023): prefill-first; whole prompts in prefill-only iterations
    while the running decodes pause, decode-only iterations when no prompt can start."""

    def __init__(self) -> None:
        super().__init__(PREFILL_ONLY)


class OrcaPolicy(FixedModePolicy):
    """Orca (Yu et al., OSDI 2022): iteration-level scheduling; whole prompts of new requests
    run in the same iteration as every running decode."""

    def __init__(self) -> None:
        super().__init__(WHOLE_MIXED)


class SarathiPolicy(FixedModePolicy):
    """Sarathi-Serve (Agrawal et al., OSDI 2024): stall-free batching, every running decode
    plus prefill chunks up to a fixed token budget (512 or 2048).

    Sarathi's budget (``chunk_size``) bounds the iteration's tokens, decodes included: its
    scheduler counts one token per running decode and gives the prompt chunks
    ``chunk_size - num_batched_tokens`` (sarathi-serve, ``SarathiScheduler``). With the env's
    ``budget_counts_decodes`` the env applies exactly that and this policy passes its budget.
    Otherwise the env's budget counts prefill tokens only, and the policy asks for the largest
    configured budget within ``budget - running decodes`` (decode-only when none fits), so an
    iteration never exceeds Sarathi's token budget; the configured budgets' coarseness makes
    that a little more conservative than Sarathi.
    """

    def __init__(self, budget: int = 512) -> None:
        super().__init__(STALL_FREE, budget)

    def act(self, observation: Any, env: Any) -> int:
        unwrapped = env.unwrapped
        sim = self.simulator(env)
        assert self.budget is not None
        if not sim.has_prefill_work():
            return 0
        if unwrapped.config.budget_counts_decodes:
            return int(unwrapped.action_index(STALL_FREE, self.budget))
        room = self.budget - sim.instance.num_decoding
        fitting = [b for b in unwrapped.budgets if 0 < b <= room]
        if not fitting:
            return 0  # the decodes fill the budget: a decode-only iteration
        return int(unwrapped.action_index(STALL_FREE, fitting[-1]))


class FasterTransformerPolicy(SimulatorPolicy[PrefillChunkSimulator]):
    """FasterTransformer: request-level batching. When the replica is empty, the requests
    queued at that moment (up to the batch limit) form a batch; their prompts are prefilled in
    prefill-only iterations, then the batch decodes until every one of them has finished;
    arrivals meanwhile wait for the next batch."""

    def __init__(self) -> None:
        self._batch: set[int] = set()

    def reset(self, env: Any) -> None:
        self._batch = set()

    def act(self, observation: Any, env: Any) -> int:
        unwrapped = env.unwrapped
        sim = self.simulator(env)
        inst = sim.instance
        if inst.num_running() == 0:
            limit = unwrapped.config.max_batch_requests
            self._batch = {r.request_id for r in list(inst.waiting)[:limit]}
        head = inst.waiting[0] if inst.waiting else None
        if head is not None and head.request_id in self._batch:
            return int(unwrapped.action_index(PREFILL_ONLY, unwrapped.budgets[-1]))
        if inst.num_decoding:
            return 0
        # A preempted member re-queued behind others cannot be reached: finish what runs.
        return int(unwrapped.action_index(STALL_FREE, unwrapped.budgets[-1]))


for _name, _factory, _description in (
    ("vllm", VLLMPolicy, "vLLM: prefill-first whole prompts, decodes pause (Kwon et al. 2023)"),
    ("orca", OrcaPolicy, "Orca: whole prompts mixed with the decodes (Yu et al. 2022)"),
    (
        "fastertransformer",
        FasterTransformerPolicy,
        "FasterTransformer: request-level batching (a batch runs to completion)",
    ),
    (
        "sarathi-512",
        lambda: SarathiPolicy(512),
        "Sarathi-Serve: stall-free chunks, 512-token budget (Agrawal et al. 2024)",
    ),
    (
        "sarathi-2048",
        lambda: SarathiPolicy(2048),
        "Sarathi-Serve: stall-free chunks, 2048-token budget (Agrawal et al. 2024)",
    ),
    ("random", RandomMaskedPolicy, "Uniformly random valid (mode, budget)"),
):
    register_policy(FAMILY, _name, _factory, _description)
