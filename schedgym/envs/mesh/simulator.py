"""The MeshAssign simulator: one training step's sequences placed on a mesh of GPUs.

Pure state machine, no Gymnasium. A global batch of sequences (drawn from a length mixture until
the token budget is reached) is presented one sequence at a time, **longest first** (so the hard,
long sequences are placed while the mesh is empty, as every scheduler in the ByteScale paper
does). For each, the caller chooses a context-parallel degree ``c`` (a power of two) and an aligned
rank group ``[slot * c, (slot + 1) * c)``.

Timing model (per rank, in seconds, a timeline of micro-batches):

- A *micro-batch* runs on one group; all its ranks start it together (ring attention keeps them
  in lock step), so it starts when the last of them is free, and the others wait (idle).
- Micro-batching: a sequence placed on the group whose micro-batch is the last one on every member
  and still has room (tokens per rank within the capacity) joins it (sequence packing); otherwise
  it opens a new micro-batch after everything already on those ranks (gradient accumulation). So
  a rank may run many short sequences, packed and in sequence, while another runs one long one.
- A micro-batch's time comes from :class:`~schedgym.costmodels.training.TrainingCostModel`:
  compute at a token-dependent MFU, the exposed part of the ring-attention exchange, and exposed
  activation offload when a rank holds more than ``C`` tokens.
- Ranks synchronise at the optimizer step: the step time is the latest rank's finish time plus
  the gradient all-reduce.

Memory: a micro-batch never holds more than ``C`` tokens per rank (``C`` times the offload factor
when offload is allowed); a degree is valid for a sequence when its shard fits, and only groups of
existing ranks are valid. Everything is deterministic given the drawn lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.fork import Forkable, shallow_list, shared
from schedgym.costmodels.training import TrainingCostModel, get_training_cost_model
from schedgym.envs.mesh.config import MeshConfig
from schedgym.envs.mesh.generator import MeshBatchStream, MeshInstance
from schedgym.workloads.lengths import LengthMixture

# Rows of MeshSimulator.rank_values (float64, one column per rank). The order groups what
# ``place`` updates together: rows [_ADDED, _SET) are added to when a sequence is placed (its
# cost components and its shard), rows [_SET, _IDLE) are overwritten (the rank's finish time and
# its open micro-batch), and the idle time is added to separately (it differs per rank).
_COMPUTE, _EXPOSED_COMM, _EXPOSED_OFFLOAD, _TOKENS_HELD = 0, 1, 2, 3
_FINISH, _OPEN_COMPUTE, _OPEN_COMM, _OPEN_OFFLOAD = 4, 5, 6, 7
_OPEN_TOKENS, _OPEN_SHARD_SQ, _OPEN_START = 8, 9, 10
_IDLE = 11
_NUM_VALUE_ROWS = 12
_ADDED, _SET = _COMPUTE, _FINISH
# Rows of MeshSimulator.rank_counters (int64): the open micro-batch's group key and record index
# (overwritten together), and the rank's micro-batch count.
_OPEN_KEY, _OPEN_RECORD, _MICROBATCHES = 0, 1, 2
_NUM_COUNTER_ROWS = 3


@dataclass(frozen=True)
class BatchResult:
    """What one global batch (one optimizer step) cost."""

    step_time_s: float  # latest rank finish + all-reduce
    ideal_step_s: float  # perfectly balanced compute at peak efficiency + all-reduce
    num_sequences: int
    tokens: int
    model_flops: float
    compute_s: float  # summed over ranks
    exposed_comm_s: float  # ring-attention exchange not hidden, summed over ranks
    exposed_offload_s: float  # offload not hidden, summed over ranks
    allreduce_s: float  # once per step (every rank takes part)
    idle_s: float  # summed over ranks: waiting for a group or for the optimizer step
    num_microbatches: int
    mean_degree: float  # token-weighted context-parallel degree


class MeshSimulator(Forkable):
    """Sequences of global batches placed on a mesh.

    Args:
        config: the validated configuration.
        batches: the episode's global batches: a :class:`MeshInstance` (e.g.
            ``MeshGenerator.generate(config, seed)`` or a recorded one, with ``num_batches``
            batches) or the generator's lazy :class:`MeshBatchStream`.
    """

    def __init__(self, config: MeshConfig, batches: MeshInstance | MeshBatchStream) -> None:
        self.config = config
        if batches.num_batches != config.num_batches:
            raise ConfigError(
                f"instance: holds {batches.num_batches} batches, the config's num_batches is "
                f"{config.num_batches}"
            )
        longest = config.longest_sequence_tokens
        if isinstance(batches, MeshInstance) and int(batches.lengths.max()) > longest:
            raise ConfigError(
                f"instance.lengths: a sequence of {int(batches.lengths.max())} tokens is longer "
                f"than the config allows ({longest}, max_seq_tokens or the mesh's capacity)"
            )
        self.batches = batches
        self.cost: TrainingCostModel = get_training_cost_model(
            config.model, config.gpu, config.gpus_per_node
        )
        self.mixture = LengthMixture(
            config.length_mixture, config.min_seq_tokens, config.longest_sequence_tokens
        )
        self.num_ranks = config.num_gpus
        self.padded_ranks = config.padded_ranks
        self.num_degrees = int(math.log2(self.padded_ranks)) + 1
        self.degrees = [1 << k for k in range(self.num_degrees)]
        # Action index of (degree index k, slot 0); slots run to padded_ranks / 2^k.
        self.degree_offsets = [0] * self.num_degrees
        for k in range(1, self.num_degrees):
            self.degree_offsets[k] = self.degree_offsets[k - 1] + self.padded_ranks // (
                1 << (k - 1)
            )
        self.num_actions = 2 * self.padded_ranks - 1
        self.capacity_tokens = float(config.capacity_tokens_per_rank)  # C
        self.rank_capacity_tokens = float(config.rank_capacity_tokens)  # C, or more with offload
        self.gpus_per_node = config.gpus_per_node
        self.num_nodes = max(1, self.num_ranks // self.gpus_per_node)
        self.rank_node = np.arange(self.num_ranks) // self.gpus_per_node
        self.allreduce_s = self.cost.allreduce_s(self.num_ranks)
        self.batch_index = 0
        self.done = False
        self.results: list[BatchResult] = []
        self.last_microbatches: list[tuple[int, int, float, float, int]] = []
        self._masks_by_degree_range: dict[tuple[int, int], np.ndarray] = {}
        self._start_batch()

    # ------------------------------------------------------------------------------ batches
    def _start_batch(self) -> None:
        lengths = self.batches.batch(self.batch_index)
        # Longest first; the stable sort keeps equal lengths in draw order (determinism).
        order = np.argsort(-lengths, kind="stable")
        self.batch_lengths = lengths[order]  # (n,) int64, non-increasing
        n = self.batch_lengths.size
        self.batch_size = n
        self.batch_tokens = int(self.batch_lengths.sum())
        seq = self.batch_lengths.astype(np.float64)
        flops = self.cost.model_flops_per_sequence(seq)
        self.batch_flops = float(flops.sum())
        # Suffix sums (index i: sequences i..n-1 still to place), length n + 1.
        self.suffix_tokens = np.concatenate([np.cumsum(seq[::-1])[::-1], [0.0]])
        self.suffix_flops = np.concatenate([np.cumsum(flops[::-1])[::-1], [0.0]])
        self.num_over_capacity = int(np.count_nonzero(seq > self.capacity_tokens))
        self.ideal_compute_s = self.cost.ideal_compute_s(seq, self.num_ranks)
        self.ideal_step_s = self.ideal_compute_s + self.allreduce_s
        self.cursor = 0
        d = self.num_ranks
        # Per rank, the timeline so far and the rank's last micro-batch (open to more sequences
        # of the same group), stored as rows of two (rows, num_ranks) tables rather than as
        # separate arrays: ``place`` updates a rank group's fields in one numpy call per kind of
        # update (added to, set), where one call per field made it the env's hottest path. The
        # fields are readable by name (``finish_s``, ``open_key``, ...: row views).
        self.rank_values = np.zeros((_NUM_VALUE_ROWS, d))
        # Group key (degree index * padded_ranks + slot, -1 for none), record index of the open
        # micro-batch (-1 for none), micro-batches so far.
        self.rank_counters = np.zeros((_NUM_COUNTER_ROWS, d), np.int64)
        self.rank_counters[_OPEN_KEY] = -1
        self.rank_counters[_OPEN_RECORD] = -1
        # Per micro-batch of this batch: first rank, degree, start, end, sequences, tokens/rank.
        self.mb_first_rank: list[int] = []
        self.mb_degree: list[int] = []
        self.mb_start_s: list[float] = []
        self.mb_end_s: list[float] = []
        self.mb_num_seqs: list[int] = []
        self.mb_tokens_per_rank: list[float] = []
        # Per sequence (in presentation order): chosen degree and first rank, -1 until placed.
        self.seq_degree = np.full(n, -1, np.int64)
        self.seq_first_rank = np.full(n, -1, np.int64)
        self._mask_cache: np.ndarray | None = None
        self._current_degree_range: tuple[int, int] | None = None

    def _finish_batch(self) -> BatchResult:
        latest = float(self.finish_s.max())
        step = latest + self.allreduce_s
        busy = self.compute_s + self.exposed_comm_s + self.exposed_offload_s
        seq = self.batch_lengths.astype(np.float64)
        result = BatchResult(
            step_time_s=step,
            ideal_step_s=self.ideal_step_s,
            num_sequences=self.batch_size,
            tokens=self.batch_tokens,
            model_flops=self.batch_flops,
            compute_s=float(self.compute_s.sum()),
            exposed_comm_s=float(self.exposed_comm_s.sum()),
            exposed_offload_s=float(self.exposed_offload_s.sum()),
            allreduce_s=self.allreduce_s,
            idle_s=float((latest - busy).sum()),
            num_microbatches=len(self.mb_start_s),
            mean_degree=float((seq * self.seq_degree).sum() / seq.sum()),
        )
        self.results.append(result)
        self.last_microbatches = list(
            zip(self.mb_first_rank, self.mb_degree, self.mb_start_s, self.mb_end_s,
                self.mb_num_seqs, strict=True)
        )  # fmt: skip
        return result

    # ------------------------------------------------------------------------------ queries
    @property
    def finish_s(self) -> np.ndarray:
        """``(num_ranks,)``: when each rank finishes what it has been given (a view)."""
        return self.rank_values[_FINISH]

    @property
    def latest_finish_s(self) -> float:
        """When the latest rank finishes (``finish_s.max()``, without its per-call overhead)."""
        return float(np.maximum.reduce(self.rank_values[_FINISH]))

    @property
    def compute_s(self) -> np.ndarray:
        """``(num_ranks,)``: compute time per rank so far (a view)."""
        return self.rank_values[_COMPUTE]

    @property
    def exposed_comm_s(self) -> np.ndarray:
        """``(num_ranks,)``: ring-attention exchange not hidden, per rank (a view)."""
        return self.rank_values[_EXPOSED_COMM]

    @property
    def exposed_offload_s(self) -> np.ndarray:
        """``(num_ranks,)``: activation offload not hidden, per rank (a view)."""
        return self.rank_values[_EXPOSED_OFFLOAD]

    @property
    def idle_s(self) -> np.ndarray:
        """``(num_ranks,)``: time each rank waited for its group members (a view)."""
        return self.rank_values[_IDLE]

    @property
    def tokens_held(self) -> np.ndarray:
        """``(num_ranks,)``: tokens of this batch per rank, over all micro-batches (a view)."""
        return self.rank_values[_TOKENS_HELD]

    @property
    def open_tokens(self) -> np.ndarray:
        """``(num_ranks,)``: tokens per rank of the rank's last micro-batch (a view)."""
        return self.rank_values[_OPEN_TOKENS]

    @property
    def open_shard_sq(self) -> np.ndarray:
        """``(num_ranks,)``: sum of squared shard lengths of the last micro-batch (a view)."""
        return self.rank_values[_OPEN_SHARD_SQ]

    @property
    def open_start_s(self) -> np.ndarray:
        """``(num_ranks,)``: start time of the rank's last micro-batch (a view)."""
        return self.rank_values[_OPEN_START]

    @property
    def open_key(self) -> np.ndarray:
        """``(num_ranks,)`` int64: group key of the rank's last micro-batch, -1 for none."""
        return self.rank_counters[_OPEN_KEY]

    @property
    def num_microbatches(self) -> np.ndarray:
        """``(num_ranks,)`` int64: micro-batches per rank so far (a view)."""
        return self.rank_counters[_MICROBATCHES]

    @property
    def current_tokens(self) -> int:
        """Length of the sequence to place now."""
        return int(self.batch_lengths[self.cursor])

    def degree_range(self, seq_tokens: int | None = None) -> tuple[int, int]:
        """``(k_min, k_max)``: the valid degree indices (degree ``2^k``) for a sequence.

        ``k_min`` is the fewest ranks whose shards fit the per-rank capacity; ``k_max`` the most
        ranks that exist without giving a rank less than one token.
        """
        if seq_tokens is None:
            # The mask and the observation both ask, once per decision.
            if self._current_degree_range is None:
                self._current_degree_range = self.degree_range(self.current_tokens)
            return self._current_degree_range
        s = seq_tokens
        need = math.ceil(s / self.rank_capacity_tokens)
        k_min = max(0, (need - 1).bit_length())
        k_max = min(int(math.log2(self.num_ranks)), s.bit_length() - 1)
        return k_min, k_max

    def decision_mask(self) -> np.ndarray:
        """``(num_actions,)`` bool, read-only: (degree, slot) pairs valid for the current
        sequence."""
        if self._mask_cache is None:
            if self.done:
                self._mask_cache = np.zeros(self.num_actions, bool)
            else:
                self._mask_cache = self._degree_range_mask(*self.degree_range())
        return self._mask_cache

    def _degree_range_mask(self, k_min: int, k_max: int) -> np.ndarray:
        """The (read-only) mask of every group of degrees ``2^k_min .. 2^k_max``: the mask only
        depends on the valid degree range, and a batch's sequences share a few ranges, so each
        is built once per episode rather than once per decision."""
        mask = self._masks_by_degree_range.get((k_min, k_max))
        if mask is None:
            mask = np.zeros(self.num_actions, bool)
            for k in range(k_min, k_max + 1):
                start = self.degree_offsets[k]
                mask[start : start + self.num_ranks // self.degrees[k]] = True
            mask.flags.writeable = False  # shared by every decision with this range
            self._masks_by_degree_range[(k_min, k_max)] = mask
        return mask

    def decode(self, action: int) -> tuple[int, int]:
        """Action index -> (degree index k, slot)."""
        k = 0
        while k + 1 < self.num_degrees and action >= self.degree_offsets[k + 1]:
            k += 1
        return k, action - self.degree_offsets[k]

    def encode(self, k: int, slot: int) -> int:
        """(degree index k, slot) -> action index."""
        return self.degree_offsets[k] + slot

    def spans_nodes(self, degree: int) -> bool:
        """Whether an aligned group of ``degree`` ranks crosses a node boundary."""
        return degree > self.gpus_per_node

    def placement_finish_s(self, k: int, seq_tokens: int | None = None) -> np.ndarray:
        """``(num_ranks // 2^k,)``: when each group of degree ``2^k`` would finish the sequence.

        A what-if used by policies: the same deterministic cost model as :meth:`place`.
        """
        c = self.degrees[k]
        s = float(self.current_tokens if seq_tokens is None else seq_tokens)
        shard = s / c
        spans = self.spans_nodes(c)
        alone = self.cost.microbatch(shard, shard * shard, c, spans, self.capacity_tokens).total_s
        groups = self.finish_s.reshape(-1, c)
        finish = groups.max(axis=1) + alone
        first = np.arange(0, self.num_ranks, c)
        keys = k * self.padded_ranks + np.arange(first.size)
        joinable = (self.open_key[first] == keys) & (
            self.open_tokens[first] + shard <= self.rank_capacity_tokens
        )
        if c > 1 and joinable.any():
            # Every member must still have this group's micro-batch last on its timeline.
            members = self.open_key.reshape(-1, c) == keys[:, None]
            joinable &= members.all(axis=1)
        slots = np.flatnonzero(joinable)
        if slots.size:
            r0 = slots * c
            joined = self.cost.microbatch_totals_s(
                self.open_tokens[r0] + shard,
                self.open_shard_sq[r0] + shard * shard,
                c,
                spans,
                self.capacity_tokens,
            )
            finish[slots] = self.open_start_s[r0] + joined
        return finish

    # ------------------------------------------------------------------------------ actions
    def place(self, action: int) -> BatchResult | None:
        """Place the current sequence by action index; returns the batch result at batch end.

        Raises:
            InvalidActionError: the episode is over or the action is masked out.
        """
        if self.done:
            raise InvalidActionError("action: the episode is over; call reset()")
        if not 0 <= action < self.num_actions:
            raise InvalidActionError(
                f"action: must be in [0, {self.num_actions - 1}], got {action}"
            )
        if not self.decision_mask()[action]:
            raise InvalidActionError(f"action: {action} is masked out (see action_masks())")
        k, slot = self.decode(action)
        c = self.degrees[k]
        r0, r1 = slot * c, slot * c + c
        key = k * self.padded_ranks + slot
        s = float(self.batch_lengths[self.cursor])
        shard = s / c
        spans = self.spans_nodes(c)
        values = self.rank_values
        counters = self.rank_counters
        # The group's first rank as Python floats (one numpy call; members share the open
        # micro-batch's fields).
        first = values[:, r0].tolist()
        open_key = counters[_OPEN_KEY, r0:r1]
        joinable = (
            open_key[0] == key
            and first[_OPEN_TOKENS] + shard <= self.rank_capacity_tokens
            and (c == 1 or bool((open_key == key).all()))
        )
        # Transposed (group ranks, rows) views of the group's columns: a tuple with one value
        # per row broadcasts over the ranks, one numpy call per kind of update.
        added = values[_ADDED:_SET, r0:r1].T
        if joinable:
            tokens = first[_OPEN_TOKENS] + shard
            shard_sq = first[_OPEN_SHARD_SQ] + shard * shard
            cost = self.cost.microbatch(tokens, shard_sq, c, spans, self.capacity_tokens)
            end = first[_OPEN_START] + cost.total_s
            # The micro-batch's cost replaces its previous cost on every member: add the change.
            added += (
                cost.compute_s - first[_OPEN_COMPUTE],
                cost.exposed_comm_s - first[_OPEN_COMM],
                cost.exposed_offload_s - first[_OPEN_OFFLOAD],
                shard,
            )
            values[_FINISH : _OPEN_SHARD_SQ + 1, r0:r1].T[:] = (
                end,
                cost.compute_s,
                cost.exposed_comm_s,
                cost.exposed_offload_s,
                tokens,
                shard_sq,
            )
            record = int(counters[_OPEN_RECORD, r0])
            self.mb_end_s[record] = end
            self.mb_num_seqs[record] += 1
            self.mb_tokens_per_rank[record] = tokens
        else:
            cost = self.cost.microbatch(shard, shard * shard, c, spans, self.capacity_tokens)
            finish = values[_FINISH, r0:r1]
            # np.maximum.reduce is ndarray.max without its Python-level wrapper (per step).
            start = float(np.maximum.reduce(finish))
            values[_IDLE, r0:r1] += start - finish  # before finish is overwritten
            end = start + cost.total_s
            added += (cost.compute_s, cost.exposed_comm_s, cost.exposed_offload_s, shard)
            values[_SET:_IDLE, r0:r1].T[:] = (
                end,
                cost.compute_s,
                cost.exposed_comm_s,
                cost.exposed_offload_s,
                shard,
                shard * shard,
                start,
            )
            counters[_OPEN_KEY : _OPEN_RECORD + 1, r0:r1].T[:] = (key, len(self.mb_start_s))
            counters[_MICROBATCHES, r0:r1] += 1
            self.mb_first_rank.append(r0)
            self.mb_degree.append(c)
            self.mb_start_s.append(start)
            self.mb_end_s.append(end)
            self.mb_num_seqs.append(1)
            self.mb_tokens_per_rank.append(shard)
        self.seq_degree[self.cursor] = c
        self.seq_first_rank[self.cursor] = r0
        self.cursor += 1
        self._mask_cache = None
        self._current_degree_range = None
        if self.cursor < self.batch_size:
            return None
        result = self._finish_batch()
        self.batch_index += 1
        if self.batch_index >= self.config.num_batches:
            self.done = True
        else:
            self._start_batch()
        return result

    # ------------------------------------------------------------------------------ summary
    def summary(self) -> dict[str, float | int]:
        """Episode metrics over the completed batches (``nan`` before the first one ends).

        ``step_time_s`` is the mean step time; ``tokens_per_s`` and ``mfu`` are totals over
        total time. Rank-time fractions (of ``num_gpus`` x total step time) add up to one:
        ``compute_frac`` + ``exposed_comm_frac`` (ring exchange not hidden, plus the gradient
        all-reduce) + ``offload_frac`` + ``idle_frac`` (waiting for a group to assemble or for
        the optimizer step).
        """
        results = self.results
        if not results:
            nan = float("nan")
            return {
                "step_time_s": nan,
                "tokens_per_s": nan,
                "mfu": nan,
                "idle_frac": nan,
                "exposed_comm_frac": nan,
                "batches": 0,
            }
        total_s = sum(r.step_time_s for r in results)
        rank_time = total_s * self.num_ranks
        comm = sum(r.exposed_comm_s + r.allreduce_s * self.num_ranks for r in results)
        tokens = sum(r.tokens for r in results)
        return {
            "step_time_s": total_s / len(results),
            "tokens_per_s": tokens / total_s,
            "mfu": sum(r.model_flops for r in results) / (rank_time * self.cost.gpu.peak_flops),
            "idle_frac": sum(r.idle_s for r in results) / rank_time,
            "exposed_comm_frac": comm / rank_time,
            "compute_frac": sum(r.compute_s for r in results) / rank_time,
            "offload_frac": sum(r.exposed_offload_s for r in results) / rank_time,
            "allreduce_s": self.allreduce_s,
            "ideal_step_time_s": sum(r.ideal_step_s for r in results) / len(results),
            "slowdown_vs_ideal": total_s / sum(r.ideal_step_s for r in results),
            "mean_cp_degree": sum(r.mean_degree * r.tokens for r in results) / tokens,
            "microbatches": sum(r.num_microbatches for r in results),
            "sequences": sum(r.num_sequences for r in results),
            "tokens": tokens,
            "batches": len(results),
        }

    # ---------------------------------------------------------------------------- forking
    def fork_memo(self) -> dict[int, Any]:
        """What a :meth:`fork` shares: the config, the cost model and the length mixture; the
        list of finished batches is copied shallowly (a :class:`BatchResult` is frozen)."""
        memo = shared(self.config, self.cost, self.mixture)
        memo.update(shallow_list(self.results))
        return memo
