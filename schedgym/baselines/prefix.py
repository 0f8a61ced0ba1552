"""Baselines for PrefixBatch: the order in which an offline shared-prefix batch enters the engine.

Every policy reads the simulator's view (pending requests per prefix group, KV blocks, the
prefix cache); output lengths are the batch's declared ones, as BatchLLM assumes. Registered as
``fcfs-lru``, ``batchllm`` and ``random``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.baselines.common import RandomMaskedPolicy
from schedgym.core.policy import SimulatorPolicy, register_policy
from schedgym.envs.prefixbatch.simulator import PrefixBatchSimulator

FAMILY = "PrefixBatch"
VLLM_MAX_NUM_SEQS = 256  # vLLM's default cap on running requests


class FCFSLRUPolicy(SimulatorPolicy[PrefixBatchSimulator]):
    """vLLM with automatic prefix caching: requests in submission order, each admitted as soon
    as its prompt fits (head-of-line: a request that does not fit blocks those behind it), at
    most 256 running; reuse happens only when an earlier request left the prefix resident and
    the LRU cache has not evicted it since."""

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        run = env.unwrapped.run_action
        inst = sim.instance
        if inst.num_running() + len(inst.waiting) >= VLLM_MAX_NUM_SEQS:
            return run
        group = sim.fcfs_group()
        if group >= 0 and sim.releasable(group):
            return group
        return run


class BatchLLMPolicy(SimulatorPolicy[PrefixBatchSimulator]):
    """BatchLLM (Zheng et al., 2024): global prefix sharing and throughput-oriented batching.

    - Global prefix identification: the batch's prefix tree is flattened into prefix groups, and
      a group's requests are scheduled together, so its shared prefix is computed once and stays
      resident while they run (instead of depending on an LRU cache's luck).
    - Groups with a larger decode ratio (output tokens over prompt tokens) go first: their long
      decodes start early and later prefill-heavy groups overlap with them.
    - Memory-centric token batching: requests are admitted while the KV memory the running ones
      will need at their last token (private blocks plus resident prefixes) fits, rather than up
      to a fixed request count; this fills memory without preemption.

    ``overcommit_fraction`` (0 here: BatchLLM) raises that limit by a share of capacity: not every
    running request reaches its last token at once, so some overcommit packs more requests at the
    price of a few preemptions (a training teacher uses it; see ``training/teachers.py``).
    """

    def __init__(self, overcommit_fraction: float = 0.0) -> None:
        self._order: list[int] = []
        self._position = 0
        self.overcommit_fraction = overcommit_fraction

    def reset(self, env: Any) -> None:
        sim = self.simulator(env)
        ratio = sim.group_output_tokens / np.maximum(sim.group_prompt_tokens, 1)
        # Larger decode ratio first; ties by group index for determinism.
        self._order = sorted(range(sim.num_groups), key=lambda g: (-ratio[g], g))
        self._position = 0

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        run = env.unwrapped.run_action
        order = self._order
        while self._position < len(order) and sim.group_pending[order[self._position]] == 0:
            self._position += 1
        if self._position == len(order):
            return run
        group = order[self._position]
        request = sim.next_request(group)
        if not sim.releasable(group):
            return run
        # Released requests still queued in the engine will pin their paths too: count every
        # unpinned node on theirs and the candidate's path once.
        queued = [r.request_id for r in sim.instance.waiting]
        projected = (
            sim.committed_private_blocks
            + sim.pinned_prefix_blocks()
            + sim.unpinned_paths_blocks([*queued, request])
            + sim.private_blocks_at_finish(request)
        )
        limit = (
            sim.capacity_blocks
            - sim.instance.watermark_blocks
            + self.overcommit_fraction * sim.capacity_blocks
        )
        if projected > limit and sim.can_run():
            return run
        return group


for _name, _factory, _description in (
    ("fcfs-lru", FCFSLRUPolicy, "vLLM-like: submission order, LRU prefix cache, 256 seats"),
    (
        "batchllm",
        BatchLLMPolicy,
        "BatchLLM: prefix groups together, decode-ratio first, memory-centric batching",
    ),
    ("random", RandomMaskedPolicy, "Uniformly random valid release or run"),
):
    register_policy(FAMILY, _name, _factory, _description)
