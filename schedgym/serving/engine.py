"""One serving instance: a vLLM-style continuous-batching engine, event-driven.

The engine runs iterations back to back while it has work. Each iteration's batch comes from a
pluggable :mod:`~schedgym.serving.schedulers` policy; its duration from the calibrated inference
cost model (:meth:`~schedgym.costmodels.inference.InferenceCostModel.time_from_summary_s`, with
each prefill chunk's already-cached KV length as its context). The KV cache is paged in 16-token
blocks (:class:`~schedgym.serving.kv_cache.KVCache`); a decode that cannot get a block preempts
the newest running request (recompute: its KV is freed and it re-queues at the front).

Speed: a stretch of decode-only iterations with an unchanged batch is one *segment*. Its
iteration times are computed in one vectorised call and the batch's state advances through one
counter, the instance's decode index ``E``: a decoding request's generated tokens are
``gen_offset + E``, the batch's total KV is ``sum_kv_offset + n * E``, and since all requests
advance in lockstep the new blocks of ``k`` iterations follow from a 16-bin histogram of KV
lengths modulo the block size. Nothing loops over decoding requests per iteration. A segment
ends at the next completion or at the first iteration that would run out of blocks; a request
arriving, or a migration detaching or attaching one, cuts it at the iteration in flight.

Clock protocol for a driver (see :class:`~schedgym.serving.cluster.ServingCluster`):
``next_event_s`` is when the instance next needs attention (``inf`` when idle); call
:meth:`ServingInstance.on_event` at that time. :meth:`ServingInstance.sync` brings the state up
to any earlier time (iterations completed by then) for observation. Requests that finished are
appended to ``finished``, those detached for migration to ``detached``; the driver drains both.

Token times: every decode iteration's end time is logged (``decode_end_times_s``); a request's
``spans`` say which decode iterations it took part in, so :meth:`ServingInstance.token_times_s`
recovers each of its tokens' times and :func:`schedgym.serving.metrics.tbt_samples` the
time-between-tokens distribution, without a per-token Python loop.
"""

from __future__ import annotations

import copy
import heapq
from bisect import bisect_left, bisect_right
from collections import deque
from typing import Any

import numpy as np

from schedgym.core.buffers import GrowingArray
from schedgym.core.metrics import QuantileSketch
from schedgym.costmodels.inference import InferenceCostModel
from schedgym.serving.kv_cache import BLOCK_TOKENS, KVCache
from schedgym.serving.request import DECODE, DETACHED, FINISHED, PREFILL, WAITING, Request
from schedgym.serving.schedulers import DEFAULT_MAX_BATCH_TOKENS, BatchPlan, BatchScheduler

INF = float("inf")
# Segment kinds.
_IDLE, _DECODE_RUN, _SINGLE = 0, 1, 2
# Below this many iterations a scalar loop beats numpy's call overhead.
_VECTOR_MIN_ITERATIONS = 12


class DecodeTimer:
    """Iteration times of decode-only batches, vectorised over consecutive iterations.

    Mirrors :meth:`InferenceCostModel.time_from_summary_s` for ``prefill_chunks=()`` (a test
    checks they agree to 1e-12), using the model's folded constants.
    """

    def __init__(self, cost_model: InferenceCostModel) -> None:
        self.cost_model = cost_model
        constants = cost_model.decode_constants()
        self._layers = constants.layers
        self._d_seq_s = constants.per_sequence_spread_s
        self._d_key_s = constants.per_key_spread_s
        self._d_cta_s = constants.block_latency_s
        self._d_crit_key_s = constants.per_key_critical_s
        self._d_sharp = constants.sharpness
        self._d_floor_s = constants.floor_s
        self._cpu_fixed_s = constants.cpu_fixed_s
        self._cpu_sequence_s = constants.cpu_sequence_s
        self._overlap = constants.overlap_sharpness
        self._d_sharp_inverse = 1.0 / self._d_sharp
        self._overlap_inverse = 1.0 / self._overlap
        # The constants an array is multiplied by or added to, as 0-d float64 arrays: the same
        # float64 operation as with a Python float, without converting the float at each call
        # (about a third of a small array operation's cost).
        self._key_spread = _constant(self._d_key_s)
        self._key_critical = _constant(self._d_crit_key_s)
        self._block_latency = _constant(self._d_cta_s)
        self._floor = _constant(self._d_floor_s)
        self._layer_count = _constant(self._layers)

    def times_s(
        self,
        num_decodes: int,
        first_sum_kv: int,
        iterations: int,
        shared_kv_tokens: int = 0,
        shared_group_work_layer_s: float = 0.0,
    ) -> np.ndarray:
        """``(iterations,)`` durations (s) of decode-only iterations with ``num_decodes``
        sequences whose KV sum is ``first_sum_kv`` in the first and grows by ``num_decodes``.

        ``shared_kv_tokens`` of that KV lie in prefixes shared within the batch, whose
        multi-query work is ``shared_group_work_layer_s`` (both constant over a segment: only
        the suffixes grow); each iteration takes the faster of the plain and the cascade kernel
        (:meth:`InferenceCostModel.decode_attention_shared_s`)."""
        n = num_decodes
        if iterations < _VECTOR_MIN_ITERATIONS:
            f = self.cost_model.time_from_summary_s
            return np.array(
                [
                    f(n, first_sum_kv + n * i, (), shared_kv_tokens, shared_group_work_layer_s)
                    for i in range(iterations)
                ]
            )
        cm = self.cost_model
        base = cm.decode_non_attention_time_s(n)
        # The KV sums are whole numbers below 2**53: exact, as first + n * i computed in floats.
        kv = np.arange(first_sum_kv, first_sum_kv + n * iterations, n, dtype=np.float64)
        attention = self._decode_attention(n, kv, first_sum_kv)
        if shared_kv_tokens > 0.0:
            cascade = self._decode_attention(
                n, kv - shared_kv_tokens, first_sum_kv - shared_kv_tokens
            )
            cascade += cm.shared_prefix_attention_s(shared_group_work_layer_s)
            np.minimum(attention, cascade, out=attention)
        attention += base  # the GPU time
        cpu = self._cpu_fixed_s + self._cpu_sequence_s * n
        if cpu <= 0.0:
            return attention
        # cpu > 0, so every element's larger term is positive.
        return _soft_max_positive(attention, cpu, self._overlap, self._overlap_inverse)

    def _decode_attention(self, n: int, kv: np.ndarray, first_kv: float) -> np.ndarray:
        """Decode attention of every iteration (all layers), ``kv`` the KV sums (increasing
        from ``first_kv``); ``InferenceCostModel.decode_attention_s`` element by element, with
        the same floating-point operations in the same order."""
        spread = kv * self._key_spread
        spread += self._d_seq_s * n
        critical = kv * self._key_critical
        critical /= n
        critical += self._block_latency
        if self._d_cta_s > 0.0 and self._d_crit_key_s >= 0.0 and first_kv >= 0.0:
            # critical >= block_latency_s > 0 everywhere: the soft maximum's larger term is
            # positive, no element needs the zero case.
            value = _soft_max_positive(spread, critical, self._d_sharp, self._d_sharp_inverse)
        else:
            value = _soft_max(spread, critical, self._d_sharp)
        value += self._floor
        value *= self._layer_count
        return value


def _constant(value: float) -> np.ndarray:
    """``value`` as a read-only 0-d float64 array."""
    out = np.array(value, np.float64)
    out.flags.writeable = False
    return out


_ONE = _constant(1.0)


def _soft_max(first: np.ndarray, second: np.ndarray, sharpness: float) -> np.ndarray:
    """``top * ((first / top) ** p + (second / top) ** p) ** (1 / p)`` (0 where top <= 0).

    Where top > 0 one of the two ratios is top / top = 1.0 exactly, and 1.0 ** p is exactly
    1.0 (C99 pow), so only the smaller ratio needs a power: the same bits with one ``pow`` per
    element fewer (pow was the costliest part of computing a decode segment's times)."""
    top = np.maximum(first, second)
    positive = top > 0.0
    safe = np.where(positive, top, 1.0)
    ratio = np.minimum(first, second) / safe
    value = top * (ratio**sharpness + 1.0) ** (1.0 / sharpness)
    return np.where(positive, value, 0.0)


def _soft_max_positive(
    first: np.ndarray, second: np.ndarray | float, sharpness: float, inverse: float
) -> np.ndarray:
    """:func:`_soft_max` where every element's larger term is known to be positive (so neither
    ``where`` changes anything), ``inverse`` = ``1.0 / sharpness``: the same operations on
    each element, in place in one new array (a decode segment's times are computed thousands
    of times per episode, mostly for a few dozen iterations, where numpy's per-call cost and
    the temporaries outweigh the arithmetic). ``first`` is overwritten."""
    top = np.maximum(first, second)
    ratio = np.minimum(first, second, out=first)
    ratio /= top
    # In-place ``**=`` takes the same path as ``**`` (numpy's fast cases for exponents such as
    # 2 or 0.5 included), so each element gets the same power as in _soft_max.
    ratio **= sharpness
    ratio += _ONE
    ratio **= inverse
    ratio *= top
    return ratio


def default_watermark_blocks(capacity_blocks: int) -> int:
    """Blocks admission leaves free for decodes unless told otherwise: 1% of the KV capacity,
    rounded up (vLLM's watermark)."""
    return -(-capacity_blocks // 100)


def min_kv_capacity_blocks(request_tokens: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """The smallest KV capacity (blocks) at which one request of ``request_tokens`` (prompt
    plus output) can be admitted alone past the default watermark, so that it cannot wait
    forever on an empty instance."""
    need = -(-request_tokens // block_tokens)
    capacity = need
    while capacity - default_watermark_blocks(capacity) < need:
        capacity += 1
    return capacity


class ServingInstance:
    """A continuous-batching engine on one GPU (or one tensor-parallel group).

    Args:
        instance_id: index in the cluster.
        cost_model: iteration-time model of the (model, GPU, tp) served.
        kv: the instance's KV cache (capacity from the cost model's memory model).
        scheduler: the batch-composition policy.
        max_num_seqs: most requests running at once (vLLM's default 256).
        max_batch_tokens: most prefill tokens per iteration for whole-prompt schedulers.
        watermark_blocks: blocks admission leaves free for decodes (vLLM keeps 1%).
        fast_forward: run decode-only stretches as one segment (exact; False runs one
            iteration per event, for drivers that decide per iteration).
        max_segment_iterations: longest segment, bounding the arrays computed at once.
        priority_first: queue high-priority requests ahead of normal ones, and preempt normal
            ones first (Llumnix' instance-level priorities).
        prefix_sharing_attention: decode attention may use a cascade (shared-prefix) kernel:
            the KV of a prefix that two or more decoding requests share is read once per
            iteration for all of them (BatchLLM's prefix-shared attention, FlashInfer's cascade
            inference), when that is faster than the plain kernel. A prefix here is a request's
            whole shared ``prefix_path`` (two-level sharing: one shared prefix per group, as
            BatchLLM's kernel). ``False``: the plain kernel, each request re-reads its prefix.
        exact_log_iterations: decode iterations whose logs are kept whole (exact pooled TBT
            percentiles, every token time recoverable). Past that the instance bounds its
            memory: pooled TBT goes into a :class:`~schedgym.core.metrics.QuantileSketch`
            (relative error 0.1%) and the decode-end log keeps only the iterations that
            requests still in flight took part in (the driver calls :meth:`trim_token_log`).
            ``None``: keep everything (for short runs, and drivers that read every request's
            token times after the run).
    """

    def __init__(
        self,
        instance_id: int,
        cost_model: InferenceCostModel,
        kv: KVCache,
        scheduler: BatchScheduler,
        *,
        max_num_seqs: int = 256,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        watermark_blocks: int | None = None,
        fast_forward: bool = True,
        max_segment_iterations: int = 2048,
        priority_first: bool = False,
        prefix_sharing_attention: bool = False,
        exact_log_iterations: int | None = None,
    ) -> None:
        if exact_log_iterations is not None and exact_log_iterations < 1:
            raise ValueError(
                f"exact_log_iterations: must be >= 1 or None, got {exact_log_iterations}"
            )
        self.instance_id = instance_id
        self.cost_model = cost_model
        self.timer = DecodeTimer(cost_model)
        self.kv = kv
        self.block_tokens = kv.block_tokens
        self.scheduler = scheduler
        self.max_num_seqs = max_num_seqs
        self.max_batch_tokens = max_batch_tokens
        self.watermark_blocks = (
            default_watermark_blocks(kv.capacity_blocks)
            if watermark_blocks is None
            else watermark_blocks
        )
        self.fast_forward = fast_forward
        self.max_segment_iterations = max_segment_iterations
        self.priority_first = priority_first
        self.prefix_sharing_attention = prefix_sharing_attention
        # Shared prefixes among the decodes (prefix_sharing_attention): group key (the last
        # node of the shared path) -> [decoding requests, shared tokens]; the KV tokens of
        # groups of two or more and their multi-query work (cost model's per-layer seconds).
        self._share_groups: dict[int, list[int]] = {}
        self.shared_decode_kv_tokens = 0
        self.shared_group_work_layer_s = 0.0
        self._group_work_memo: dict[tuple[int, int], float] = {}
        # Queues.
        self.waiting: deque[Request] = deque()
        self.waiting_prefill_tokens = 0  # sum of remaining_prefill over waiting and prefilling
        self.waiting_blocks = 0  # blocks the waiting requests' prefills need
        self.prefilling: list[Request] = []
        self.decoding: dict[int, Request] = {}  # request id -> request, in join order
        self.incoming: list[Request] = []  # migrated in; join the decodes at the next boundary
        self.detach_requests: list[Request] = []  # leave at the next boundary (migration)
        self.finished: list[Request] = []  # drained by the driver
        self.detached: list[Request] = []  # drained by the driver
        # Decode batch aggregates (see module docstring).
        self.num_decoding = 0
        self.decode_index = 0  # E: decode iterations run so far
        # Bumped whenever the decode batch's membership (or a member's output length) changes:
        # between two bumps every member's generated tokens are gen_offset + E, so orders and
        # thresholds over the batch that a driver derives from it stay valid (see
        # decode_batch_version).
        self._decode_batch_version = 0
        self.sum_kv_offset = 0  # sum over decodes of (kv - E)
        self.phase_count = [0] * self.block_tokens  # decodes by (kv - E) mod block_tokens
        self._finish_heap: list[tuple[int, int, int, Request]] = []
        self._heap_seq = 0
        self._prealloc_blocks = 0  # blocks already taken for the decode iteration at E
        self._joiners: list[Request] = []  # joined since the last decode iteration
        # Segment in flight.
        self._kind = _IDLE
        self._seg_start_s = 0.0
        # Absolute end times (s) of the segment's iterations, as Python floats: bisect and
        # single reads on a list are several times faster than on an ndarray (every decision
        # asks every instance).
        self._seg_ends: list[float] = []
        self._seg_len = 0
        self._seg_applied = 0
        self._seg_plan: BatchPlan | None = None
        # End (s) of the running decode segment's first iteration not yet applied (inf when
        # none): sync and used_blocks_at before it have nothing to apply, decided with one float
        # comparison (drivers ask every instance at every decision).
        self._pending_end_s = INF
        # Blocks the running decode segment takes in all (from its first decode index), and
        # those of its iterations applied so far: uncommitted_free_blocks in O(1).
        self._seg_first_index = 0
        self._seg_new_blocks = 0
        self._seg_applied_blocks = 0
        self.next_event_s = INF
        self.now_s = 0.0  # state is materialised up to here
        # Logs and counters.
        # End time (s) of every decode-bearing iteration, and per applied run of them
        # (iterations, decodes, first weight): compact buffers, 8 bytes a value, since they
        # grow with the episode.
        self._decode_end_log = GrowingArray(np.float64)
        self._tbt_meta = GrowingArray(np.int64, width=3)
        self.tbt_individual_s: list[float] = []  # gaps of requests resuming a decode stream
        # Bounded logs (exact_log_iterations): the sketch into which the TBT logs are folded
        # (at each trim, in one vectorised step) with the decode index folded up to and that
        # iteration's end, the decode index of the log's first kept entry, and the log length
        # at which the driver should trim again.
        self.exact_log_iterations = exact_log_iterations
        self._tbt_sketch: QuantileSketch | None = None
        self._folded_index = 0
        self._folded_end_s = float("nan")
        self._log_offset = 0
        self._trim_at = exact_log_iterations
        # The decode index past which the logs become bounded (inf once they are, or never):
        # until then nothing is trimmed, the log holds one end per decode iteration and its
        # length is the decode index.
        self._bound_logs_after: float = (
            INF if exact_log_iterations is None else exact_log_iterations
        )
        self.last_decode_end_s = float("nan")
        self.num_iterations = 0
        self.busy_time_s = 0.0
        self.last_iteration_s = 0.0
        self.preemptions = 0
        self.tokens_generated = 0
        self.prefill_tokens_computed = 0

    # ----------------------------------------------------------------- request views
    def generated(self, request: Request) -> int:
        """Output tokens ``request`` has produced so far (state materialised at ``now_s``)."""
        if request.state == DECODE and request.instance == self.instance_id:
            return request.gen_offset + self.decode_index
        return request.generated

    def decoding_generated(self) -> list[tuple[Request, int]]:
        """Every request in the decode batch, in join order, with ``generated(request)`` (state
        materialised at ``now_s``): one pass for callers that scan the whole batch. A request
        in the batch is DECODE on this instance, so it has produced gen_offset + decode_index
        tokens."""
        index = self.decode_index
        return [(r, r.gen_offset + index) for r in self.decoding.values()]

    @property
    def decode_batch_version(self) -> int:
        """A counter that changes whenever a request joins or leaves the decode batch, or the
        members' output lengths change (:meth:`rekey_decode_completions`). While it stays the
        same, the batch's members, their ``gen_offset`` and ``output_tokens`` stay the same and
        only the decode index ``E`` moves, so a caller may cache what it derives from them."""
        return self._decode_batch_version

    def kv_tokens(self, request: Request) -> int:
        """Tokens of KV ``request`` holds (0 while waiting)."""
        if request.state == DECODE or request.state == DETACHED:
            return request.prompt_tokens + self.generated(request) - 1
        if request.state == PREFILL:
            return request.prefilled
        return 0

    def held_blocks(self, request: Request) -> int:
        """Private KV blocks ``request`` holds on this instance (shared prefix blocks excluded)."""
        shared = request.shared_prefix_tokens // self.block_tokens
        if request.state == PREFILL:
            return -(-request.prefill_target // self.block_tokens) - shared
        if request.state == DECODE or request.state == DETACHED:
            kv = request.prompt_tokens + self.generated(request) - 1
            return -(-kv // self.block_tokens) - shared
        return 0

    def num_running(self) -> int:
        """Requests holding KV here: decoding and prefilling (not waiting)."""
        return self.num_decoding + len(self.prefilling)

    def load_counters(self, now_s: float) -> tuple[int, int, int, int, float, int, int, int, int]:
        """``(running, waiting, used KV blocks, waiting requests' prefill blocks, last
        iteration time (s), queued prefill tokens, decoding, decode index, uncommitted free
        blocks)`` at ``now_s``: the per-instance numbers a decision's observation and mask
        read, in one call, exactly as after :meth:`sync` (``now_s``) but without
        materialising (the queues only change at iteration boundaries, events; the KV level,
        the last iteration time and the decode index are read off the running segment). The
        last two are :meth:`decode_index_at` and :meth:`uncommitted_free_blocks`."""
        used = self.kv.used_blocks
        last_s = self.last_iteration_s
        decode_index = self.decode_index
        if now_s >= self._pending_end_s:
            applied = self._seg_applied
            done = bisect_right(self._seg_ends, now_s, applied, self._seg_len)
            decode_index += done - applied
            if done - applied == 1:  # _new_blocks' common case, without the call
                used += self.phase_count[(-self.decode_index) % self.block_tokens]
            else:
                used += self._new_blocks(self.decode_index, done - applied)
            if self._prealloc_blocks > 0:
                used -= self._prealloc_blocks
            # _apply_decodes' last_iteration_s after applying iterations up to done - 1.
            ends = self._seg_ends
            previous = ends[done - 2] if done >= 2 else self._seg_start_s
            last_s = ends[done - 1] - previous
        return (
            self.num_decoding + len(self.prefilling),
            len(self.waiting),
            used,
            self.waiting_blocks,
            last_s,
            self.waiting_prefill_tokens,
            self.num_decoding,
            decode_index,
            self.uncommitted_free_blocks(),
        )

    def decode_index_at(self, now_s: float) -> int:
        """The decode index ``E`` after :meth:`sync` (``now_s``), without materialising."""
        if now_s >= self._pending_end_s:
            applied = self._seg_applied
            done = bisect_right(self._seg_ends, now_s, applied, self._seg_len)
            return self.decode_index + done - applied
        return self.decode_index

    def num_outstanding(self) -> int:
        """Requests on this instance: waiting, prefilling, decoding, or about to join."""
        return len(self.waiting) + len(self.prefilling) + self.num_decoding + len(self.incoming)

    def sum_decode_kv_tokens(self) -> int:
        """Total KV tokens of the decoding requests."""
        return self.sum_kv_offset + self.num_decoding * self.decode_index

    @property
    def free_blocks(self) -> int:
        return self.kv.capacity_blocks - self.kv.used_blocks

    @property
    def busy(self) -> bool:
        return self._kind != _IDLE

    # ----------------------------------------------------------------- driver API
    def add_request(self, request: Request, now_s: float) -> None:
        """Queue a newly dispatched request; it can join at the next iteration boundary."""
        request.instance = self.instance_id
        self._enqueue(request, front=False)
        self._poke(now_s)

    def attach(self, request: Request, now_s: float) -> None:
        """Receive a migrated decoding request whose KV blocks this instance already counts."""
        request.instance = self.instance_id
        request.state = DETACHED
        self.incoming.append(request)
        self._poke(now_s)

    def request_detach(self, request: Request, now_s: float) -> None:
        """Take ``request`` out of the decode batch at the next iteration boundary (the last
        stage of a live migration); it then appears in ``detached`` with its KV still held."""
        self.sync(now_s)
        self.detach_requests.append(request)
        self._cut_after(now_s)

    def release_detached(self, request: Request, now_s: float) -> None:
        """Free a detached request's blocks here (its KV now lives on the destination)."""
        self.kv.release(self.held_blocks(request))
        self.start_if_idle(now_s)

    def reattach(self, request: Request, now_s: float) -> None:
        """An aborted migration's detached request rejoins this instance's decodes."""
        self.incoming.append(request)
        self._poke(now_s)

    def reserve_blocks(self, blocks: int, now_s: float) -> bool:
        """Reserve ``blocks`` for an incoming migration (no preemption); False if short.

        Blocks the decode segment in flight will still take count as taken, so the segment
        stays valid."""
        self.sync(now_s)
        if blocks > self.uncommitted_free_blocks():
            return False
        return self.kv.allocate(blocks)

    def uncommitted_free_blocks(self) -> int:
        """Free blocks minus those the running decode segment will take before it ends.

        The same before and after :meth:`sync`: applying iterations moves their blocks from
        "still to take" to "used" (and drops the pre-allocation they include)."""
        free = self.kv.capacity_blocks - self.kv.used_blocks
        if self._kind == _DECODE_RUN:
            remaining = self._seg_len - self._seg_applied
            if remaining:
                # _new_blocks(decode_index, remaining), by additivity over iterations.
                free -= self._seg_new_blocks - self._seg_applied_blocks
                if self._prealloc_blocks > 0:
                    free += self._prealloc_blocks
        return free

    def release_reserved(self, blocks: int, now_s: float) -> None:
        """Give back reserved blocks (an aborted migration, or the unused margin)."""
        if blocks:
            self.kv.release(blocks)
            self.start_if_idle(now_s)

    def sync(self, now_s: float) -> None:
        """Apply every iteration of the running segment that has completed by ``now_s``."""
        if now_s >= self._pending_end_s:
            done = bisect_right(self._seg_ends, now_s, self._seg_applied, self._seg_len)
            self._apply_decodes(done - self._seg_applied)

    def used_blocks_at(self, now_s: float) -> int:
        """Blocks in use at ``now_s`` without materialising the segment (a cheap read for
        policies that only need the memory level)."""
        used = self.kv.used_blocks
        if now_s >= self._pending_end_s:
            done = bisect_right(self._seg_ends, now_s, self._seg_applied, self._seg_len)
            used += self._new_blocks(self.decode_index, done - self._seg_applied)
            if self._prealloc_blocks > 0:
                used -= self._prealloc_blocks
        return used

    def on_event(self, now_s: float) -> None:
        """The segment in flight ends at ``now_s`` (== ``next_event_s``): apply it, handle
        completions, detaches and arrivals, and start the next iteration(s)."""
        if self._kind == _DECODE_RUN:
            remaining = self._seg_len - self._seg_applied
            if remaining:
                self._apply_decodes(remaining)
        elif self._kind == _SINGLE:
            self._apply_single()
        self._kind = _IDLE
        self._pending_end_s = INF
        self.next_event_s = INF
        self.now_s = now_s
        self._boundary_and_start()

    # ----------------------------------------------------------------- scheduler API
    def prepare_decode(self) -> bool:
        """Make room for one more token of KV for every decode, preempting the newest running
        request while blocks are short; True if any decode can run."""
        if self.num_decoding == 0:
            return False
        if self._prealloc_blocks:
            return True
        kv = self.kv
        need = self.phase_count[(-self.decode_index) % self.block_tokens]
        while not kv.allocate(need):
            victim = self._newest_running()
            if victim is None:
                return False
            self.preempt(victim)
            if self.num_decoding == 0:
                return False
            need = self.phase_count[(-self.decode_index) % self.block_tokens]
        self._prealloc_blocks = need if need else -1  # -1: checked, nothing to take
        return True

    def reorder_waiting(self, key: Any) -> None:
        """Reorder the admission queue by ``key(request)``, smallest first (a stable sort).

        A hook for policies that order admissions (shortest predicted job first): the engine
        admits the queue's head first. The queue's aggregates (``waiting_prefill_tokens``,
        ``waiting_blocks``) are sums over it, so a permutation keeps them exact. With
        ``priority_first`` the key must keep high-priority requests ahead of normal ones.
        """
        if len(self.waiting) > 1:
            self.waiting = deque(sorted(self.waiting, key=key))

    def admission_blocks(self, request: Request) -> int:
        """Blocks admitting ``request`` takes now (its prefill's KV, minus cached prefix)."""
        blocks = -(-request.prefill_target // self.block_tokens)
        prefix = self.kv.prefix
        if prefix is not None and request.prefix_path:
            shared_tokens = sum(tokens for _, tokens in request.prefix_path)
            blocks -= shared_tokens // self.block_tokens
            blocks += prefix.new_blocks_for(request.prefix_path)
        return blocks

    def own_evictable_blocks(self, request: Request) -> int:
        """Blocks of ``request``'s resident, unreferenced prefix nodes: counted in the KV cache's
        evictable room, but admitting ``request`` references them, so it cannot use them."""
        prefix = self.kv.prefix
        if prefix is None or not request.prefix_path:
            return 0
        return prefix.unreferenced_blocks(request.prefix_path)

    def can_admit(self) -> bool:
        """Whether the head of the queue can be admitted now (blocks, watermark, seat)."""
        if not self.waiting or self.num_running() >= self.max_num_seqs:
            return False
        head = self.waiting[0]
        need = self.admission_blocks(head) + self.watermark_blocks
        return need <= self.kv.available_blocks() - self.own_evictable_blocks(head)

    def admit_next(self) -> Request:
        """Admit the head of the queue: reference its cached prefix, allocate its blocks and
        start its prefill.

        The prefix is referenced before the allocation, so an allocation that has to evict
        never takes a node of the request's own prefix (it would be dropped, then re-created
        without its blocks being allocated).
        """
        request = self.waiting[0]
        blocks = self.admission_blocks(request)
        room = self.kv.available_blocks() - self.own_evictable_blocks(request)
        if blocks > room:  # pragma: no cover - schedulers call can_admit first
            raise AssertionError("admit_next without room; call can_admit first")
        self.waiting.popleft()
        self.waiting_blocks -= -(-request.prefill_target // self.block_tokens)
        prefix = self.kv.prefix
        if prefix is not None and request.prefix_path:
            cached, _ = prefix.acquire(request.prefix_path, self.now_s)
            request.shared_prefix_tokens = sum(tokens for _, tokens in request.prefix_path)
            # At least the last token is computed, to produce the next one.
            skipped = min(cached, request.prefill_target - 1)
            request.prefilled = skipped
            self.waiting_prefill_tokens -= skipped
        if not self.kv.allocate(blocks):  # pragma: no cover - room was checked above
            raise AssertionError("KV allocation failed after the room check")
        request.state = PREFILL
        if request.admitted_s != request.admitted_s:  # nan: first admission
            request.admitted_s = self.now_s
        self.prefilling.append(request)
        return request

    def preempt(self, request: Request) -> None:
        """Preempt by recompute: free ``request``'s KV and put it back at the queue's front."""
        if request.state == DECODE:
            self._leave_decode(request)
        elif request.state == PREFILL:
            self.prefilling.remove(request)
            self.waiting_prefill_tokens -= request.remaining_prefill
        else:
            raise AssertionError(f"cannot preempt {request!r}")
        self.kv.release(self.held_blocks_after_leave(request))
        self._release_prefix(request)
        request.prefill_target = request.prompt_tokens + request.generated
        request.prefilled = 0
        request.num_preemptions += 1
        self.preemptions += 1
        self._enqueue(request, front=True)

    def held_blocks_after_leave(self, request: Request) -> int:
        """Private blocks of a request that has just left the decode batch or prefill list."""
        shared = request.shared_prefix_tokens // self.block_tokens
        if request.state == PREFILL:
            return -(-request.prefill_target // self.block_tokens) - shared
        kv = request.prompt_tokens + request.generated - 1
        return -(-kv // self.block_tokens) - shared

    # ----------------------------------------------------------------- token times
    def decode_end_times_s(self) -> np.ndarray:
        """End time (s) of every decode-bearing iteration so far, in order, from decode index
        :attr:`token_log_offset` (0 unless bounded logs were trimmed)."""
        return self._decode_end_log.view()

    @property
    def token_log_offset(self) -> int:
        """Decode index of the first entry :meth:`decode_end_times_s` still holds."""
        return self._log_offset

    def decode_end_times_between(self, first: int, end: int) -> np.ndarray:
        """End times (s) of decode iterations ``first`` to ``end`` (exclusive)."""
        if first < self._log_offset:
            raise RuntimeError(
                f"instance {self.instance_id}: decode iterations before {self._log_offset} were "
                f"dropped from its bounded log (asked from {first}); token times of finished "
                "requests are only kept while exact_log_iterations is not exceeded"
            )
        return self._decode_end_log.view()[first - self._log_offset : end - self._log_offset]

    @property
    def tbt_exact(self) -> bool:
        """Whether the pooled TBT is still kept exactly (:meth:`tbt_weights` works)."""
        return self._tbt_sketch is None

    def tbt_sketch(self) -> QuantileSketch:
        """A sketch of every TBT gap of this instance (a copy; logs not yet folded added)."""
        sketch = QuantileSketch() if self._tbt_sketch is None else copy.deepcopy(self._tbt_sketch)
        gaps, counts = self._unfolded_weighted_gaps()
        sketch.add(gaps, counts)
        sketch.add(self.tbt_individual_s)
        return sketch

    def token_log_needs_trim(self) -> bool:
        """Whether the bounded decode-end log has grown enough for the driver to trim it."""
        return self._tbt_sketch is not None and len(self._decode_end_log) >= self._trim_at  # type: ignore[operator]

    def trim_token_log(self, keep_from: int) -> None:
        """Bounded logs only: drop the decode-end times before decode index ``keep_from``. The
        driver passes the oldest index a request in flight (anywhere) still needs."""
        if self._tbt_sketch is None:
            raise RuntimeError(
                "trim_token_log: the exact logs are still kept (see exact_log_iterations)"
            )
        self._fold_tbt_logs()
        keep_from = min(keep_from, self.decode_index)
        self._decode_end_log.discard_first(keep_from - self._log_offset)
        self._log_offset = max(self._log_offset, keep_from)
        self._trim_at = max(self.exact_log_iterations or 0, 2 * len(self._decode_end_log))

    def _fold_tbt_logs(self) -> None:
        """Bounded logs: move the TBT gaps logged since the last fold into the sketch."""
        if self._tbt_sketch is None:
            self._tbt_sketch = QuantileSketch()
            self._bound_logs_after = INF
        gaps, counts = self._unfolded_weighted_gaps()
        self._tbt_sketch.add(gaps, counts)
        self._tbt_sketch.add(self.tbt_individual_s)
        self._tbt_meta = GrowingArray(np.int64, width=3)
        self.tbt_individual_s = []
        self._folded_index = self.decode_index
        self._folded_end_s = self.last_decode_end_s  # end of decode iteration decode_index - 1

    def _unfolded_weighted_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """``(gaps_s, counts)`` of the decode iterations not yet folded into the sketch (all of
        them while the logs are exact): each iteration's gap since the previous decode
        iteration and how many requests emitted a token in both."""
        ends = self._decode_end_log.view()[self._folded_index - self._log_offset :]
        if ends.size == 0:
            return np.zeros(0), np.zeros(0, np.int64)
        meta = self._tbt_meta.view()
        counts = np.repeat(meta[:, 1], meta[:, 0])
        firsts = np.concatenate(([0], np.cumsum(meta[:, 0])[:-1]))
        counts[firsts] = meta[:, 2]
        previous = self._folded_end_s
        if previous != previous:  # nan: nothing before the first decode iteration
            gaps = np.diff(ends, prepend=ends[0])
            counts[0] = 0
        else:
            gaps = np.diff(ends, prepend=previous)
        return gaps, counts

    def log_copy_memo(self) -> dict[int, Any]:
        """``copy.deepcopy`` memo entries for a clone of this instance: its append-only logs
        copied without deep-copying each item, and its immutable timer shared."""
        return {
            id(self.timer): self.timer,
            id(self._decode_end_log): self._decode_end_log.copy(),
            id(self._tbt_meta): self._tbt_meta.copy(),
            id(self.tbt_individual_s): list(self.tbt_individual_s),
        }

    def tbt_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(gaps_s, counts)``: for each decode iteration, the gap since the previous decode
        iteration and how many requests emitted a token in both (a weighted TBT sample)."""
        if self._tbt_sketch is not None:
            raise RuntimeError(
                f"tbt_weights: instance {self.instance_id} keeps its TBT in a sketch past "
                f"{self.exact_log_iterations} decode iterations; read tbt_sketch()"
            )
        return self._unfolded_weighted_gaps()

    # ----------------------------------------------------------------- internals
    def _enqueue(self, request: Request, front: bool) -> None:
        request.state = WAITING
        self.waiting_prefill_tokens += request.remaining_prefill
        self.waiting_blocks += -(-request.prefill_target // self.block_tokens)
        waiting = self.waiting
        if self.priority_first and waiting:
            # High-priority requests go ahead of every normal one; FCFS within a class.
            if front:
                index = 0
                if request.priority == 0:
                    while index < len(waiting) and waiting[index].priority > 0:
                        index += 1
            else:
                index = len(waiting)
                while index > 0 and waiting[index - 1].priority < request.priority:
                    index -= 1
            waiting.insert(index, request)
        elif front:
            waiting.appendleft(request)
        else:
            waiting.append(request)

    def _release_prefix(self, request: Request) -> None:
        prefix = self.kv.prefix
        if prefix is not None and request.shared_prefix_tokens:
            prefix.release(request.prefix_path, self.now_s)
            request.shared_prefix_tokens = 0

    def _newest_running(self) -> Request | None:
        """The preemption victim: lowest priority class, then the latest arrival (vLLM's FCFS
        order preempts from the back)."""
        best: Request | None = None
        best_key = (0, 0.0, 0)
        for pool in (self.decoding.values(), self.prefilling):
            for request in pool:
                key = (request.priority, -request.arrival_s, -request.request_id)
                if best is None or key < best_key:
                    best, best_key = request, key
        return best

    def _poke(self, now_s: float) -> None:
        if self._kind == _IDLE:
            self.now_s = max(self.now_s, now_s)
            self._boundary_and_start()
        else:
            self._cut_after(now_s)

    def start_if_idle(self, now_s: float) -> None:
        """If the engine is idle, bring its clock to ``now_s`` and start the next iteration now
        (a driver that changed what the next iteration will run calls this)."""
        if self._kind == _IDLE:
            self.now_s = max(self.now_s, now_s)
            self._boundary_and_start()

    def rekey_decode_completions(self, now_s: float) -> None:
        """Re-key the decode-completion queue after requests' output lengths changed (at
        ``now_s``).

        A decoding request finishes when the decode counter reaches ``output_tokens -
        gen_offset``, computed when it joins, so the queue is rebuilt here. A decode stretch
        planned on the old lengths is cut after the iteration in flight (the engine replans at
        its end); the new lengths must exceed what each request has produced by then. A driver
        that schedules this instance's events must reschedule it afterwards.
        """
        self.sync(now_s)
        heap = []
        for request in self.decoding.values():
            self._heap_seq += 1
            remaining = request.output_tokens - request.gen_offset
            heap.append((remaining, self._heap_seq, request.version, request))
        heapq.heapify(heap)
        self._finish_heap = heap
        self._decode_batch_version += 1
        self._cut_after(now_s)

    def _cut_after(self, now_s: float) -> None:
        """End the running segment with the iteration in flight at ``now_s``."""
        if self._kind != _DECODE_RUN:
            return
        index = bisect_left(self._seg_ends, now_s, self._seg_applied, self._seg_len)
        if index < self._seg_len - 1:
            self._seg_len = index + 1
            self._seg_new_blocks = self._new_blocks(self._seg_first_index, self._seg_len)
            self.next_event_s = self._seg_ends[index]

    def _join_decode(self, request: Request) -> None:
        request.state = DECODE
        e = self.decode_index
        request.gen_offset = request.generated - e
        request.join_decode_index = e
        offset = request.prompt_tokens - 1 + request.gen_offset
        self.phase_count[offset % self.block_tokens] += 1
        self.sum_kv_offset += offset
        self.num_decoding += 1
        self.decoding[request.request_id] = request
        self._decode_batch_version += 1
        if self.prefix_sharing_attention and request.shared_prefix_tokens:
            self._share(request, 1)
        finish_index = e + request.output_tokens - request.generated
        self._heap_seq += 1
        heapq.heappush(self._finish_heap, (finish_index, self._heap_seq, request.version, request))
        self._joiners.append(request)

    def _leave_decode(self, request: Request) -> None:
        e = self.decode_index
        request.generated = request.gen_offset + e
        if e > request.join_decode_index:
            request.spans.append((self.instance_id, request.join_decode_index, e))
            request.last_token_s = self.last_decode_end_s
        offset = request.prompt_tokens - 1 + request.gen_offset
        self.phase_count[offset % self.block_tokens] -= 1
        self.sum_kv_offset -= offset
        self.num_decoding -= 1
        del self.decoding[request.request_id]
        self._decode_batch_version += 1
        if self.prefix_sharing_attention and request.shared_prefix_tokens:
            self._share(request, -1)
        request.version += 1
        if self._joiners and request in self._joiners:
            self._joiners.remove(request)
        if self._prealloc_blocks > 0:
            # The blocks taken for the next decode iteration included this request's block, if
            # it needed one; drop the pre-allocation, prepare_decode recomputes it.
            self.kv.release(self._prealloc_blocks)
        self._prealloc_blocks = 0

    def _group_work(self, members: int, tokens: int) -> float:
        key = (members, tokens)
        work = self._group_work_memo.get(key)
        if work is None:
            work = self.cost_model.shared_prefix_group_layer_s(members, tokens)
            self._group_work_memo[key] = work
        return work

    def _share(self, request: Request, delta: int) -> None:
        """A decoding request with a shared prefix joins (+1) or leaves (-1) its group."""
        key = request.prefix_path[-1][0]
        tokens = request.shared_prefix_tokens
        entry = self._share_groups.get(key)
        before = entry[0] if entry is not None else 0
        after = before + delta
        if before >= 2:
            self.shared_decode_kv_tokens -= before * tokens
            self.shared_group_work_layer_s -= self._group_work(before, tokens)
        if after >= 2:
            self.shared_decode_kv_tokens += after * tokens
            self.shared_group_work_layer_s += self._group_work(after, tokens)
        if after:
            self._share_groups[key] = [after, tokens]
        else:
            del self._share_groups[key]
        if self.shared_decode_kv_tokens == 0:
            self.shared_group_work_layer_s = 0.0  # no drift from the running float sum

    def _new_blocks(self, e: int, iterations: int) -> int:
        """Blocks the decode batch takes over decode iterations ``e .. e + iterations - 1``."""
        if iterations == 1:  # the common case: one iteration ended since the last look
            return self.phase_count[(-e) % self.block_tokens]
        full, rest = divmod(iterations, self.block_tokens)
        total = full * self.num_decoding
        if rest:
            # Iteration e + i takes phase_count[(-(e + i)) % size]: the indices run down from
            # (-e) % size, wrapping past 0; two slice sums instead of a loop.
            phase = self.phase_count
            first = (-e) % self.block_tokens
            low = first - rest + 1
            if low >= 0:
                total += sum(phase[low : first + 1])
            else:
                total += sum(phase[: first + 1]) + sum(phase[low:])
        return total

    def _iterations_with_memory(self, cap: int) -> int:
        """How many decode iterations from ``E`` fit in the free blocks (the first is already
        pre-allocated), at most ``cap``."""
        n = self.num_decoding
        free = self.kv.capacity_blocks - self.kv.used_blocks
        cycles = free // n
        k = 1 + self.block_tokens * cycles
        if k >= cap:
            return cap
        free -= cycles * n
        first = self.decode_index + 1
        phase = self.phase_count
        size = self.block_tokens
        for i in range(size):
            need = phase[(-(first + i)) % size]
            if need > free:
                break
            free -= need
            k += 1
        return min(k, cap)

    def _boundary_and_start(self) -> None:
        """At an iteration boundary: completions, detaches, joins; then plan and start."""
        heap = self._finish_heap
        e = self.decode_index
        while heap and heap[0][0] <= e:
            _, _, version, request = heapq.heappop(heap)
            if version != request.version or request.state != DECODE:
                continue
            self._leave_decode(request)
            self._finish(request)
        if self.detach_requests:
            for request in self.detach_requests:
                if request.state == DECODE and request.instance == self.instance_id:
                    self._leave_decode(request)
                    request.state = DETACHED
                    self.detached.append(request)
            self.detach_requests.clear()
        if self.incoming:
            for request in self.incoming:
                self._join_decode(request)
            self.incoming.clear()
        self._start()

    def _finish(self, request: Request) -> None:
        self.kv.release(self.held_blocks_after_leave(request))
        self._release_prefix(request)
        request.state = FINISHED
        request.finish_s = request.last_token_s
        self.finished.append(request)

    def _start(self) -> None:
        if not self.waiting and not self.num_decoding and not self.prefilling:
            self._kind = _IDLE
            self._pending_end_s = INF
            self.next_event_s = INF
            return
        plan = self.scheduler.plan(self)
        now = self.now_s
        if plan.empty:
            if self._prealloc_blocks > 0:
                self.kv.release(self._prealloc_blocks)
            self._prealloc_blocks = 0
            self._kind = _IDLE
            self._pending_end_s = INF
            self.next_event_s = INF
            return
        n = self.num_decoding if plan.decode else 0
        if not plan.prefills and self.fast_forward:
            heap = self._finish_heap
            while heap[0][2] != heap[0][3].version or heap[0][3].state != DECODE:
                heapq.heappop(heap)
            until_completion = heap[0][0] - self.decode_index
            k = self._iterations_with_memory(min(until_completion, self.max_segment_iterations))
            first_kv = self.sum_kv_offset + n * self.decode_index + n
            times = self.timer.times_s(
                n, first_kv, k, self.shared_decode_kv_tokens, self.shared_group_work_layer_s
            )
            ends = times.cumsum()  # np.cumsum's own call, without its wrapper
            ends += now
            self._kind = _DECODE_RUN
            self._seg_ends = ends.tolist()
            self._seg_len = k
            self._seg_first_index = self.decode_index
            self._seg_new_blocks = self._new_blocks(self.decode_index, k)
            self._seg_applied_blocks = 0
        else:
            chunks = [(chunk, request.prefilled) for request, chunk in plan.prefills]
            sum_kv = self.sum_kv_offset + n * self.decode_index + n if n else 0
            if n:
                duration = self.cost_model.time_from_summary_s(
                    n, sum_kv, chunks, self.shared_decode_kv_tokens, self.shared_group_work_layer_s
                )
            else:
                duration = self.cost_model.time_from_summary_s(0, 0, chunks)
            self._kind = _SINGLE
            self._seg_plan = plan
            self._seg_ends = [now + duration]
            self._seg_len = 1
        self._seg_start_s = now
        self._seg_applied = 0
        self._pending_end_s = self._seg_ends[0] if self._kind == _DECODE_RUN else INF
        self.next_event_s = self._seg_ends[self._seg_len - 1]

    def _apply_decodes(self, count: int) -> None:
        """Apply ``count`` decode iterations of the running segment (or of a single one)."""
        start = self._seg_applied
        stop = start + count
        ends = self._seg_ends
        e = self.decode_index
        n = self.num_decoding
        if count == 1:  # _new_blocks' common case, without the call
            new = self.phase_count[(-e) % self.block_tokens]
        else:
            new = self._new_blocks(e, count)
        self._seg_applied_blocks += new
        if self._prealloc_blocks > 0:
            new -= self._prealloc_blocks
        self._prealloc_blocks = 0
        kv = self.kv
        kv.used_blocks += new
        if kv.used_blocks > kv.peak_used_blocks:
            kv.peak_used_blocks = kv.used_blocks
        first_end = ends[start]
        last_end = ends[stop - 1]
        joiners = self._joiners
        if count == 1:
            self._decode_end_log.append(last_end)
        else:
            self._decode_end_log.extend(ends[start:stop])
        self._tbt_meta.append((count, n, n - len(joiners)))
        if joiners:
            for request in joiners:
                self.tbt_individual_s.append(first_end - request.last_token_s)
            joiners.clear()
        previous = ends[start - 1] if start else self._seg_start_s
        self.last_iteration_s = last_end - (ends[stop - 2] if count > 1 else previous)
        self.busy_time_s += last_end - previous
        self.last_decode_end_s = last_end
        self.decode_index = e + count
        self._seg_applied = stop
        self._pending_end_s = (
            ends[stop] if self._kind == _DECODE_RUN and stop < self._seg_len else INF
        )
        self.now_s = last_end
        self.num_iterations += count
        self.tokens_generated += n * count
        if e + count > self._bound_logs_after:
            self._fold_tbt_logs()  # past exact_log_iterations: bounded from here on

    def _apply_single(self) -> None:
        plan = self._seg_plan
        assert plan is not None
        end = self._seg_ends[0]
        if plan.decode and self.num_decoding:
            self._apply_decodes(1)
        else:
            self.busy_time_s += end - self._seg_start_s
            self.last_iteration_s = end - self._seg_start_s
            self.now_s = end
            self.num_iterations += 1
            self._seg_applied = 1
        self._seg_plan = None
        for request, chunk in plan.prefills:
            if request.state != PREFILL or request.instance != self.instance_id:
                continue
            request.prefilled += chunk
            self.waiting_prefill_tokens -= chunk
            self.prefill_tokens_computed += chunk
            if request.prefilled < request.prefill_target:
                continue
            self.prefilling.remove(request)
            if request.generated:  # a recompute: the gap since its last token is a TBT sample
                self.tbt_individual_s.append(end - request.last_token_s)
            request.generated += 1
            self.tokens_generated += 1
            request.prefill_emit_s.append(end)
            if request.first_token_s != request.first_token_s:
                request.first_token_s = end
            request.last_token_s = end
            if request.generated >= request.output_tokens:
                request.state = DECODE  # for the block count of a just-finished request
                self._finish(request)
            else:
                self._join_decode(request)

    def token_times_s(self, request: Request, instances: list[ServingInstance]) -> np.ndarray:
        """Every output token's time (s) of ``request``, from its spans over ``instances``."""
        parts = [np.array(request.prefill_emit_s)]
        for instance_id, first, end in request.spans:
            parts.append(instances[instance_id].decode_end_times_between(first, end))
        return np.sort(np.concatenate(parts))
