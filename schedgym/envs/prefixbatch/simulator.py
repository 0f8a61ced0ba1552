"""The PrefixBatch simulator: an offline batch with shared prompt prefixes on one replica.

Pure state machine, no Gymnasium. The whole batch is submitted at time 0 (BatchLLM's setting);
the caller decides the order in which requests enter the shared engine
(:class:`~schedgym.serving.engine.ServingInstance`, with its prefix cache on: a request whose
prompt path is resident reuses it, unreferenced prefixes are evicted least recently used first).
The engine batches what was released with Sarathi-Serve's stall-free chunking under a token
budget, preempts by recompute when blocks run out, and takes iteration times from the cost model.

Requests are released one at a time by *prefix group* (the requests that share a whole shared
prefix; see :mod:`schedgym.workloads.prefix_tree`): releasing group ``g`` queues its earliest
pending request (in submission order). A group is *releasable* when its next request's blocks
(its prompt, minus the resident part of its prefix) fit in the free and evictable blocks after
those of the requests already queued, with the engine's watermark, and a seat is free.

Decision points are moments at which some request can certainly be released (the smallest
pending prompt fits); otherwise the engine runs on to its next event (an iteration that
prefills, or the next completion of a decode stretch). Time jumps from event to event.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.fork import Forkable, shallow_list, shared, shared_items
from schedgym.envs.prefixbatch.config import PrefixBatchConfig
from schedgym.serving.engine import ServingInstance
from schedgym.serving.kv_cache import KVCache, PrefixCache
from schedgym.serving.request import Request
from schedgym.serving.schedulers import SarathiScheduler
from schedgym.workloads.prefix_tree import PrefixBatch


class _ChangeTrackingPrefixCache(PrefixCache):
    """A :class:`PrefixCache` that also records the ids of the nodes whose residency or
    reference count may have changed, so the simulator refreshes only those nodes' state.

    Each override calls the base method unchanged: the cache behaves exactly as the engine's.
    """

    def __init__(self, block_tokens: int) -> None:
        super().__init__(block_tokens)
        self.changed: set[int] = set()

    def acquire(self, path: Sequence[tuple[int, int]], now_s: float) -> tuple[int, int]:
        self.changed.update(node_id for node_id, _ in path)
        return super().acquire(path, now_s)

    def release(self, path: Sequence[tuple[int, int]], now_s: float) -> None:
        self.changed.update(node_id for node_id, _ in path)
        super().release(path, now_s)

    def evict(self, blocks_needed: int) -> int:
        # Eviction already scans every resident node per victim; one more pass is cheap.
        resident = list(self.nodes)
        freed = super().evict(blocks_needed)
        self.changed.update(node_id for node_id in resident if node_id not in self.nodes)
        return freed


class PrefixBatchSimulator(Forkable):
    """An offline shared-prefix batch served by one engine; the caller orders admissions.

    Args:
        config: the validated configuration.
        instance: the batch to serve (``PrefixBatchGenerator.generate(config, seed)`` or a
            recorded one with at most ``config.max_groups`` prefix groups).
    """

    def __init__(self, config: PrefixBatchConfig, instance: PrefixBatch) -> None:
        self.config = config
        if instance.num_groups > config.max_groups:
            raise ConfigError(
                f"instance: has {instance.num_groups} prefix groups, the config's max_groups is "
                f"{config.max_groups}"
            )
        self.batch: PrefixBatch = instance
        batch = self.batch
        n = batch.num_requests
        prompts = batch.request_prompt_tokens.tolist()
        outputs = batch.request_output_tokens.tolist()
        self.requests = [
            Request(i, 0.0, prompts[i], outputs[i], prefix_path=batch.prefix_path(i))
            for i in range(n)
        ]
        self.num_groups = batch.num_groups
        groups = batch.request_group.tolist()
        self.request_group = groups
        # Pending requests per group, in submission order (a queue per group).
        members: list[list[int]] = [[] for _ in range(self.num_groups)]
        for request in range(n):
            members[groups[request]].append(request)
        self.group_members = members
        self.group_next = [0] * self.num_groups  # index into group_members of the next pending
        self.group_prompt_tokens = np.zeros(self.num_groups, np.int64)
        self.group_output_tokens = np.zeros(self.num_groups, np.int64)
        np.add.at(self.group_prompt_tokens, batch.request_group, batch.request_prompt_tokens)
        np.add.at(self.group_output_tokens, batch.request_group, batch.request_output_tokens)
        self.group_sizes = np.array([len(m) for m in members], np.int64)
        self.group_pending = self.group_sizes.copy()
        self.group_pending_prompt = self.group_prompt_tokens.copy()
        self.group_pending_output = self.group_output_tokens.copy()
        self.group_running = np.zeros(self.num_groups, np.int64)
        # Smallest full-prompt block count among pending requests: a lazy min-heap.
        block = 16
        self._prompt_blocks = [-(-p // block) for p in prompts]
        self._min_heap = [(self._prompt_blocks[i], i) for i in range(n)]
        heapq.heapify(self._min_heap)
        self._released = [False] * n
        self._fcfs_next = 0  # earliest pending request in submission order
        deployment = config.resolved_deployment()
        cost_model = deployment.cost_model
        capacity = deployment.kv_capacity_blocks
        self.capacity_blocks = capacity
        kv = KVCache(capacity, prefix_caching=True)
        self._prefix = kv.prefix = _ChangeTrackingPrefixCache(kv.block_tokens)
        self.instance = ServingInstance(
            0,
            cost_model,
            kv,
            SarathiScheduler(config.token_budget),
            max_num_seqs=config.max_batch_requests,
            prefix_sharing_attention=config.prefix_sharing_attention,
        )
        self._init_group_needs(block)
        self.total_prompt_tokens = int(batch.request_prompt_tokens.sum())
        self.total_output_tokens = int(batch.request_output_tokens.sum())
        self.now_s = 0.0
        self.released = 0
        self.requests_completed = 0
        self.finished: list[Request] = []
        self.done = False
        # Blocks the released-but-unfinished requests will hold at their last token, private
        # part only (a policy's view of committed memory; shared prefixes count in the cache).
        self.committed_private_blocks = 0
        # Memo of queued_blocks(): valid while (epoch, queue length) is unchanged; the epoch
        # moves whenever the engine may have admitted, finished or evicted something.
        self._epoch = 0
        self._queued_key: tuple[int, int] = (-1, -1)
        self._queued_value = 0
        self._advance()

    def _init_group_needs(self, block: int) -> None:
        """Arrays behind :meth:`group_admission_needs` (the vectorised mask and observation).

        A pending request's admission need depends only on its own static prompt and prefix
        path and on the state of its path's nodes in the prefix cache. Keep, per request, its
        path as a row of node ids (padded with a sentinel node that is never resident and
        weighs nothing) and its fixed part; per node, what it adds to the need in its current
        state. Each step then costs one gather over (groups, path length) instead of a Python
        walk of every group's path.
        """
        batch = self.batch
        n = len(self.requests)
        paths = [req.prefix_path for req in self.requests]
        depth = max((len(path) for path in paths), default=0)
        sentinel = batch.num_nodes
        # Row n is the "no pending request" row: an empty path.
        self._path_nodes = np.full((n + 1, depth), sentinel, np.int64)
        fixed = np.zeros(n + 1, np.int64)
        for request, path in enumerate(paths):
            if path:
                self._path_nodes[request, : len(path)] = [node_id for node_id, _ in path]
            # ServingInstance.admission_blocks: the prefill's blocks (a pending request's
            # prefill_target is its prompt) minus its shared path, plus its missing nodes.
            shared = sum(tokens for _, tokens in path)
            fixed[request] = -(-self.requests[request].prefill_target // block) - shared // block
        self._fixed_blocks = fixed
        self._block = block
        self._node_tokens = np.append(batch.node_tokens.astype(np.int64), 0)  # sentinel: 0
        # Per node (sentinel last): tokens new_blocks_for() counts (missing nodes), blocks
        # own_evictable_blocks() counts (resident, unreferenced) and residency (lookup_tokens).
        self._node_missing_tokens = self._node_tokens.copy()
        self._node_evictable_blocks = np.zeros(sentinel + 1, np.int64)
        self._node_resident = np.zeros(sentinel + 1, bool)
        # Each group's next pending request (n: none), updated by release().
        self._group_next_request = np.array(
            [m[0] if m else n for m in self.group_members], np.int64
        )
        # Memo of group_admission_needs(); None when it must be recomputed.
        self._group_needs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        # Per request (row n: none), private_blocks_at_finish(); built on the first call of
        # group_projected_blocks() (only agents that ask for it pay for it).
        self._private_at_finish: np.ndarray | None = None

    def _sync_nodes(self) -> None:
        """Refresh the node arrays for the nodes the prefix cache touched since the last call."""
        prefix = self._prefix
        if not prefix.changed:
            return
        nodes = prefix.nodes
        for node_id in prefix.changed:
            node = nodes.get(node_id)
            if node is None:
                self._node_missing_tokens[node_id] = self._node_tokens[node_id]
                self._node_evictable_blocks[node_id] = 0
                self._node_resident[node_id] = False
            else:
                self._node_missing_tokens[node_id] = 0
                self._node_evictable_blocks[node_id] = node.blocks if node.refcount == 0 else 0
                self._node_resident[node_id] = True
        prefix.changed.clear()

    def group_admission_needs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per group, for its next pending request: ``(has_next, admission, own_evictable,
        path_resident)`` -- whether there is one, :meth:`admission_blocks`, the instance's
        ``own_evictable_blocks`` and whether the first node of its prefix path is resident
        (groups without a pending request read False, the fixed part of nothing, 0, False).
        The arrays are read-only and shared by the callers until the state changes."""
        if self._prefix.changed:
            self._sync_nodes()
            self._group_needs = None
        # The mask and the observation both ask at every decision; the answer only changes
        # when a release moves a group's next request or the prefix cache changes (above).
        if self._group_needs is None:
            requests = self._group_next_request
            paths = self._path_nodes[requests]
            missing = self._node_missing_tokens[paths].sum(axis=1)
            admission = self._fixed_blocks[requests] + missing // self._block
            own_evictable = self._node_evictable_blocks[paths].sum(axis=1)
            if paths.shape[1]:
                resident = self._node_resident[paths[:, 0]]
            else:
                resident = np.zeros(self.num_groups, bool)
            needs = (requests < len(self.requests), admission, own_evictable, resident)
            for array in needs:
                array.flags.writeable = False  # shared by every caller until invalidated
            self._group_needs = needs
        return self._group_needs

    # ----------------------------------------------------------------- read-only views
    @property
    def episode(self) -> PrefixBatch:
        """The batch being served, every request's length included: for recording and replay
        (a policy must not read output lengths from it)."""
        return self.batch

    def next_request(self, group: int) -> int:
        """The earliest pending request of ``group`` (-1 if none)."""
        index = self.group_next[group]
        members = self.group_members[group]
        return members[index] if index < len(members) else -1

    def fcfs_group(self) -> int:
        """The group of the earliest pending request in submission order (-1 if none)."""
        n = len(self.requests)
        while self._fcfs_next < n and self._released[self._fcfs_next]:
            self._fcfs_next += 1
        return self.request_group[self._fcfs_next] if self._fcfs_next < n else -1

    def queued_blocks(self) -> int:
        """Blocks the released requests still queued in the engine will take at admission
        (their own resident prefix counted as unavailable, as the engine counts it)."""
        inst = self.instance
        key = (self._epoch, len(inst.waiting))
        if self._queued_key != key:
            self._queued_value = sum(
                inst.admission_blocks(r) + inst.own_evictable_blocks(r) for r in inst.waiting
            )
            self._queued_key = key
        return self._queued_value

    def headroom_blocks(self) -> int:
        """Free plus evictable blocks left after the queued requests and the watermark."""
        inst = self.instance
        return inst.kv.available_blocks() - self.queued_blocks() - inst.watermark_blocks

    def seats_left(self) -> int:
        inst = self.instance
        return self.config.max_batch_requests - inst.num_running() - len(inst.waiting)

    def admission_blocks(self, request: int) -> int:
        """Blocks releasing ``request`` would take at admission now."""
        return self.instance.admission_blocks(self.requests[request])

    def private_blocks_at_finish(self, request: int) -> int:
        """Private blocks ``request`` holds at its last token (its prefix path excluded)."""
        req = self.requests[request]
        shared = sum(tokens for _, tokens in req.prefix_path) // 16
        return -(-(req.prompt_tokens + req.output_tokens) // 16) - shared

    def pinned_prefix_blocks(self) -> int:
        """Prefix-cache blocks referenced by running requests (the rest could be evicted)."""
        prefix = self.instance.kv.prefix
        return prefix.resident_blocks - prefix.evictable_blocks if prefix is not None else 0

    def unpinned_path_blocks(self, request: int) -> int:
        """Blocks of ``request``'s prefix path that no running request references: releasing it
        pins them (resident ones) or allocates them (missing ones)."""
        prefix = self.instance.kv.prefix
        if prefix is None:
            return 0
        nodes = prefix.nodes
        blocks = 0
        for node_id, tokens in self.requests[request].prefix_path:
            node = nodes.get(node_id)
            if node is None or node.refcount == 0:
                blocks += tokens // 16
        return blocks

    def unpinned_paths_blocks(self, requests: Sequence[int]) -> int:
        """Blocks of the prefix nodes on ``requests``' paths that no running request references,
        each node counted once: what admitting all of them pins or allocates."""
        prefix = self.instance.kv.prefix
        if prefix is None:
            return 0
        nodes = prefix.nodes
        seen: set[int] = set()
        blocks = 0
        for request in requests:
            for node_id, tokens in self.requests[request].prefix_path:
                if node_id in seen:
                    continue
                seen.add(node_id)
                node = nodes.get(node_id)
                if node is None or node.refcount == 0:
                    blocks += tokens // 16
        return blocks

    def group_projected_blocks(self) -> np.ndarray:
        """``(num_groups,)`` int64: per group, the KV blocks the released requests would hold
        at their last token if its next pending request were released now (BatchLLM's memory
        projection, vectorised): :attr:`committed_private_blocks`
        + :meth:`pinned_prefix_blocks` + :meth:`unpinned_paths_blocks` of the queued requests
        and that request + its :meth:`private_blocks_at_finish`. A group with no pending
        request reads the projection without one."""
        self.group_admission_needs()  # brings the node arrays up to date
        block = self._block
        if self._private_at_finish is None:
            prompts = self.batch.request_prompt_tokens.astype(np.int64)
            outputs = self.batch.request_output_tokens.astype(np.int64)
            path_tokens = self._node_tokens[self._path_nodes[:-1]].sum(axis=1)
            private = -(-(prompts + outputs) // block) - path_tokens // block
            self._private_at_finish = np.append(private, 0)
        # A node no running request references: its blocks if resident (evictable), its
        # tokens' blocks if missing; the sentinel weighs nothing either way.
        unpinned = np.where(
            self._node_resident, self._node_evictable_blocks, self._node_tokens // block
        )
        waiting = [request.request_id for request in self.instance.waiting]
        queued_nodes = np.unique(self._path_nodes[waiting]) if waiting else np.zeros(0, np.int64)
        base = (
            self.committed_private_blocks
            + self.pinned_prefix_blocks()
            + int(unpinned[queued_nodes].sum())
        )
        unpinned[queued_nodes] = 0  # each node counts once
        requests = self._group_next_request
        extra = unpinned[self._path_nodes[requests]].sum(axis=1)
        return base + extra + self._private_at_finish[requests]

    def releasable(self, group: int) -> bool:
        """Whether ``group``'s next request can be released now."""
        request = self.next_request(group)
        if request < 0 or self.seats_left() <= 0:
            return False
        need = self.admission_blocks(request) + self.instance.own_evictable_blocks(
            self.requests[request]
        )
        return need <= self.headroom_blocks()

    def releasable_mask(self) -> np.ndarray:
        """``(num_groups,)`` bool: the releasable groups (:meth:`releasable` for every group,
        vectorised)."""
        if self.seats_left() <= 0:
            return np.zeros(self.num_groups, bool)
        has_next, admission, own_evictable, _ = self.group_admission_needs()
        return has_next & (admission + own_evictable <= self.headroom_blocks())

    def can_run(self) -> bool:
        """Whether the engine has work to run on to (else a request must be released)."""
        inst = self.instance
        return bool(inst.waiting or inst.num_running())

    def _smallest_pending_fits(self) -> bool:
        heap = self._min_heap
        while heap and self._released[heap[0][1]]:
            heapq.heappop(heap)
        if not heap or self.seats_left() <= 0:
            return False
        return heap[0][0] <= self.headroom_blocks()

    # ----------------------------------------------------------------------------- actions
    def release(self, group: int) -> None:
        """Queue ``group``'s next request in the engine, then advance to the next decision."""
        if not 0 <= group < self.num_groups:
            raise InvalidActionError(f"action: group {group} must be in [0, {self.num_groups})")
        if not self.releasable(group):
            raise InvalidActionError(
                f"action: group {group} has no pending request that fits now (see action_masks())"
            )
        request = self.next_request(group)
        self.group_next[group] += 1
        following = self.next_request(group)
        self._group_next_request[group] = following if following >= 0 else len(self.requests)
        self._group_needs = None
        self._released[request] = True
        self.released += 1
        self.group_pending[group] -= 1
        self.group_pending_prompt[group] -= self.requests[request].prompt_tokens
        self.group_pending_output[group] -= self.requests[request].output_tokens
        self.group_running[group] += 1
        self.committed_private_blocks += self.private_blocks_at_finish(request)
        inst = self.instance
        req = self.requests[request]
        # Queued blocks change only when the engine acts; while it is busy the new request just
        # joins the queue and the sum grows by its own need (a burst of releases stays O(1)).
        before = (self._epoch, len(inst.waiting))
        known = self._queued_key == before and inst.busy
        need = inst.admission_blocks(req) + inst.own_evictable_blocks(req) if known else 0
        inst.add_request(req, self.now_s)
        if known and len(inst.waiting) == before[1] + 1 and inst.waiting[-1] is req:
            self._queued_key = (self._epoch, len(inst.waiting))
            self._queued_value += need
        else:
            self._epoch += 1
        self._advance()

    def run(self) -> None:
        """Let the engine run to its next event, then on to the next decision point."""
        if not self.can_run():
            raise InvalidActionError("action: nothing is running; release a request first")
        self._next_event()
        self._advance()

    # --------------------------------------------------------------------------- dynamics
    def _next_event(self) -> None:
        inst = self.instance
        end = inst.next_event_s
        if end == float("inf"):  # pragma: no cover - the capacity check rules it out
            raise AssertionError("engine idle with queued work: a prompt larger than the cache?")
        inst.on_event(end)
        self._epoch += 1
        self.now_s = end
        finished = inst.finished
        if finished:
            for request in finished:
                group = self.request_group[request.request_id]
                self.group_running[group] -= 1
                self.committed_private_blocks -= self.private_blocks_at_finish(request.request_id)
            self.finished.extend(finished)
            self.requests_completed += len(finished)
            finished.clear()

    def _advance(self) -> None:
        """Run the engine until some request can certainly be released, or to the end."""
        while True:
            if self.released < len(self.requests) and (
                self._smallest_pending_fits() or not self.can_run()
            ):
                return
            if not self.can_run():
                self.done = True
                return
            self._next_event()

    # ------------------------------------------------------------------------- metrics
    def summary(self) -> dict[str, float | int]:
        """Batch metrics: completion time, throughput (prompt and output tokens per second),
        the share of prompt tokens served from the prefix cache, and peak KV blocks."""
        inst = self.instance
        prefix = inst.kv.prefix
        hits = prefix.hit_tokens if prefix is not None else 0
        elapsed = self.now_s
        completed_tokens = sum(r.prompt_tokens + r.output_tokens for r in self.finished)
        return {
            "completion_time_s": elapsed,
            "throughput_tok_s": completed_tokens / elapsed if elapsed > 0 else 0.0,
            "output_tok_s": sum(r.output_tokens for r in self.finished) / elapsed
            if elapsed > 0
            else 0.0,
            "kv_reuse_ratio": hits / self.total_prompt_tokens,
            "peak_kv_blocks": inst.kv.peak_used_blocks,
            "requests_completed": self.requests_completed,
            "preemptions": inst.preemptions,
            "prefill_tokens_computed": inst.prefill_tokens_computed,
        }

    # ---------------------------------------------------------------------------- forking
    def fork_memo(self) -> dict[int, Any]:
        """What a :meth:`fork` shares: the config, the generated batch (prefix tree and
        lengths), the cost model and the finished requests (a finished request never changes
        again); the engine's append-only logs and the list of finished requests are copied
        shallowly."""
        memo = shared(self.config, self.batch, self.instance.cost_model)
        memo.update(self.instance.log_copy_memo())
        memo.update(shallow_list(self.finished))
        memo.update(shared_items(self.finished))
        return memo
