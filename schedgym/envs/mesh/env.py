"""Gymnasium facade of the MeshAssign simulator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym.core.env import SchedulingEnv
from schedgym.core.generator import recorded_instance
from schedgym.core.rng import spawn_streams
from schedgym.core.spaces import MaskedDiscrete
from schedgym.envs.mesh.config import PRESETS, MeshConfig
from schedgym.envs.mesh.generator import MeshGenerator, MeshInstance
from schedgym.envs.mesh.simulator import MeshSimulator

STREAMS = MeshGenerator.streams
NUM_RANK_FEATURES = 6
NUM_CURRENT_FEATURES = 8
NUM_REMAINING_FEATURES = 6
NUM_PROGRESS_FEATURES = 3
# log2 of the longest context (2M tokens): scales log-lengths to [0, 1].
_LOG2_MAX_CONTEXT = 21.0
# Micro-batches per rank at which the count feature reaches 1.
_MICROBATCH_SCALE = 16.0


class MeshAssignEnv(SchedulingEnv[MeshConfig, MeshSimulator]):
    """Variable-length sequences assigned to a device mesh for long-context training (ByteScale).

    ## Description
    One training step (global batch) of an LLM on ``D`` GPUs: the batch's sequences, drawn from a
    long-tailed length mixture (up to 2M tokens), must each be given a context-parallel degree
    ``c`` (ring attention over ``c`` ranks) and a rank group. Short sequences can run on one rank,
    many of them packed and in sequence (micro-batches); long ones must be split because a rank
    holds at most ``C`` tokens. Ranks in a group run its micro-batch together, ring-attention
    KV exchange is hidden behind attention only when shards are long, and all ranks wait for the
    slowest at the optimizer step. The cost model is
    :class:`~schedgym.costmodels.training.TrainingCostModel` (calibrated MFU, measured NCCL).

    ## Action Space
    ``Discrete(2P - 1)`` (``P`` = ``max_ranks``, default ``D``): action ``offset(k) + slot``
    puts the current sequence on degree ``c = 2^k`` and ranks ``[slot*c, (slot+1)*c)``, where
    ``offset(k) = sum_{j<k} P / 2^j``. ``action_masks()`` allows the degrees whose shard fits the
    per-rank capacity (``ceil(s/c) <= C``, or the offload capacity), that exist (``c <= D``) and
    give each rank at least one token, and only groups of existing ranks.

    ## Observation Space
    A ``Dict`` of fixed-shape float32 arrays (times are divided by the batch's ideal compute
    time, the perfectly balanced compute at peak efficiency):

    - ``rank_features`` ``(P, 6)``: per rank, finish time so far, tokens held / ``C``, free room
      in its open micro-batch / ``C``, node / nodes, micro-batches / 16, time spent waiting for
      group members. Padding rows are zero.
    - ``rank_mask`` ``(P,)`` int8: 1 for existing ranks.
    - ``current`` ``(8,)``: the sequence to place: length / ``C``, log2(length) / 21, smallest and
      largest valid degree index / log2(P), its compute time alone on the smallest degree, its
      attention share of FLOPs, whether it needs offload, the fraction of the batch placed.
    - ``remaining`` ``(6,)``: the sequences still to place after it: count / batch size, tokens /
      batch tokens, longest / ``C``, mean / ``C``, FLOPs / batch FLOPs, count longer than ``C`` /
      batch size.
    - ``progress`` ``(3,)``: batch index / batches, latest and mean rank finish time.

    Sequences are presented longest first (so long sequences are placed on an empty mesh).

    ## Rewards
    Zero while a batch is being placed; at its last sequence, minus the step time divided by the
    ideal step (the batch's model FLOPs spread perfectly evenly at the calibrated peak MFU with
    nothing exposed, plus the gradient all-reduce). A perfect placement would earn -1; there is no
    shaping. The return is minus the sum of normalised step times over the episode's batches.

    ## Starting State
    The first global batch is drawn and no sequence is placed. The batches come from
    :class:`~schedgym.envs.mesh.generator.MeshGenerator`'s ``lengths`` stream, one per batch in
    order, so every policy places the same batches for a seed (drawn lazily, batch by batch, to
    keep long episodes small). ``reset(options={"instance": instance})`` places a given
    :class:`~schedgym.envs.mesh.generator.MeshInstance` instead (e.g.
    ``MeshGenerator.generate(config, seed)``, the seed's batches materialised, or
    ``MeshInstance.from_batches([...])`` with ``num_batches`` recorded batches);
    ``env.unwrapped.simulator.batches`` is what is being placed.
    ``fork()`` (for look-ahead policies) copies the env at its present state, random generators
    included, so that the copy evolves identically; it shares (``fork_memo()``) the config, the cost
    model and the length mixture.

    ## Episode End
    Terminates after ``num_batches`` batches are placed. The final ``info`` holds the episode
    summary: ``step_time_s`` (mean), ``tokens_per_s``, ``mfu``, ``idle_frac``,
    ``exposed_comm_frac`` (ring exchange not hidden plus the all-reduce, as a fraction of
    rank-time), ``compute_frac``, ``offload_frac``, ``slowdown_vs_ideal``, ``mean_cp_degree``,
    ``microbatches``, ``sequences``, ``tokens``, ``batches``, ``allreduce_s``,
    ``ideal_step_time_s``.

    ## Arguments
    ``config`` (a :class:`MeshConfig`) or ``preset`` (``github-like``, ``commoncrawl-like``,
    ``long-tail-heavy``, ``uniform-short``, ``tiny``), plus any config field as a keyword override,
    and ``render_mode`` (``ansi`` or ``rgb_array``).

    ## Version History
    - v0: initial version.

    Example:
        >>> import gymnasium as gym
        >>> import schedgym
        >>> env = gym.make("schedgym/MeshAssign-v0", preset="tiny")
        >>> obs, info = env.reset(seed=0)
        >>> mask = env.unwrapped.action_masks()
        >>> obs, reward, terminated, truncated, info = env.step(int(mask.nonzero()[0][0]))
    """

    config_class = MeshConfig
    presets = PRESETS
    render_module = "schedgym.envs.mesh.render"
    # MeshSimulator.place raises InvalidActionError for every masked-out action.
    simulator_validates_actions = True

    def __init__(
        self,
        config: MeshConfig | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, preset, render_mode, **overrides)
        self.padded_ranks = self.config.padded_ranks
        self.num_ranks = self.config.num_gpus
        self.num_actions = 2 * self.padded_ranks - 1
        self._log2_ranks = max(1.0, math.log2(self.padded_ranks))
        self.action_space = MaskedDiscrete(self.num_actions, self.action_masks)
        box = spaces.Box
        self.observation_space = spaces.Dict(
            {
                "rank_features": box(
                    -np.inf, np.inf, (self.padded_ranks, NUM_RANK_FEATURES), np.float32
                ),
                "rank_mask": spaces.MultiBinary(self.padded_ranks),
                "current": box(-np.inf, np.inf, (NUM_CURRENT_FEATURES,), np.float32),
                "remaining": box(-np.inf, np.inf, (NUM_REMAINING_FEATURES,), np.float32),
                "progress": box(-np.inf, np.inf, (NUM_PROGRESS_FEATURES,), np.float32),
            }
        )
        self._rank_mask = np.zeros(self.padded_ranks, np.int8)
        self._rank_mask[: self.num_ranks] = 1

    # ------------------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._last_batch_step_time_s: float | None = None
        streams = spawn_streams(self.np_random, STREAMS)
        instance = recorded_instance(options, MeshInstance)
        batches = (
            instance if instance is not None else MeshGenerator.batch_stream(self.config, streams)
        )
        self.simulator = MeshSimulator(self.config, batches)
        sim = self.simulator
        self._node_feature = (sim.rank_node / sim.num_nodes).astype(np.float32)
        return self._observation(), self._info()

    def _apply(self, action: int) -> tuple[float, bool, bool]:
        sim = self._sim()
        result = sim.place(action)
        self._last_batch_step_time_s = None if result is None else result.step_time_s
        reward = 0.0 if result is None else -result.step_time_s / result.ideal_step_s
        return reward, sim.done, False

    def action_masks(self) -> np.ndarray:
        """``(2 * max_ranks - 1,)`` bool: the valid (degree, group) actions now."""
        if self.simulator is None:  # before reset nothing is valid
            return np.zeros(self.num_actions, bool)
        return self.simulator.decision_mask().copy()

    # -------------------------------------------------------------------------- helpers
    def _info(self) -> dict[str, Any]:
        sim = self._sim()
        info = {
            "batch": sim.batch_index,
            "sequences_placed": sim.cursor,
            "batch_sequences": sim.batch_size,
            "latest_finish_s": sim.latest_finish_s,
        }
        if self._last_batch_step_time_s is not None:
            info["batch_step_time_s"] = self._last_batch_step_time_s
        return info

    def _observation(self) -> dict[str, np.ndarray]:
        sim = self._sim()
        d = self.num_ranks
        scale = 1.0 / sim.ideal_compute_s
        cap = sim.capacity_tokens
        finish_s = sim.finish_s
        # The features are computed in float64 into contiguous rows (ufuncs with ``out``, no
        # temporaries), then rounded to float32 in one transposing copy: per-column float32
        # writes cost a strided, casting numpy call each, and this runs at every step.
        features = np.empty((NUM_RANK_FEATURES, d))
        np.multiply(finish_s, scale, out=features[0])
        np.divide(sim.tokens_held, cap, out=features[1])
        # Free room in the open micro-batch; 0 for ranks without one.
        room = features[2]
        np.subtract(sim.rank_capacity_tokens, sim.open_tokens, out=room)
        np.divide(room, cap, out=room)
        room[sim.open_key < 0] = 0.0
        features[3] = self._node_feature
        np.divide(sim.num_microbatches, _MICROBATCH_SCALE, out=features[4])
        np.multiply(sim.idle_s, scale, out=features[5])
        ranks = np.zeros((self.padded_ranks, NUM_RANK_FEATURES), np.float32)
        ranks[:d] = features.T
        current = np.zeros(NUM_CURRENT_FEATURES, np.float32)
        remaining = np.zeros(NUM_REMAINING_FEATURES, np.float32)
        n = sim.batch_size
        if not sim.done:
            i = sim.cursor
            s = sim.current_tokens
            k_min, k_max = sim.degree_range()
            c = sim.degrees[k_min]
            alone = sim.cost.sequence(s, c, sim.spans_nodes(c), cap)
            linear = 6.0 * sim.cost.params_nonembedding * s
            flops = linear + 6.0 * sim.cost.model.layers * sim.cost.model.hidden * s * s
            current[:] = (
                s / cap,
                math.log2(s) / _LOG2_MAX_CONTEXT,
                k_min / self._log2_ranks,
                k_max / self._log2_ranks,
                alone.total_s * scale,
                1.0 - linear / flops,
                float(s > cap),
                i / n,
            )
            left = n - i - 1
            if left > 0:
                tokens_left = float(sim.suffix_tokens[i + 1])
                remaining[:] = (
                    left / n,
                    tokens_left / sim.batch_tokens,
                    float(sim.batch_lengths[i + 1]) / cap,
                    tokens_left / left / cap,
                    float(sim.suffix_flops[i + 1]) / sim.batch_flops,
                    max(0, sim.num_over_capacity - i - 1) / n,
                )
        progress = np.array(
            [
                sim.batch_index / self.config.num_batches,
                sim.latest_finish_s * scale,
                # The mean as ndarray.mean computes it (pairwise sum / count), without its
                # per-call overhead.
                float(np.add.reduce(finish_s)) / d * scale,
            ],
            np.float32,
        )
        return {
            "rank_features": ranks,
            "rank_mask": self._rank_mask.copy(),
            "current": current,
            "remaining": remaining,
            "progress": progress,
        }
