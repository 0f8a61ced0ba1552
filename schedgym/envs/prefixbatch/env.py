"""Gymnasium facade of the PrefixBatch simulator."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym.core.env import SchedulingEnv
from schedgym.core.errors import InvalidActionError
from schedgym.core.generator import recorded_instance
from schedgym.core.rng import spawn_streams
from schedgym.core.spaces import MaskedDiscrete
from schedgym.envs.prefixbatch.config import PRESETS, PrefixBatchConfig
from schedgym.envs.prefixbatch.generator import PrefixBatchGenerator
from schedgym.envs.prefixbatch.simulator import PrefixBatchSimulator
from schedgym.workloads.prefix_tree import PrefixBatch

STREAMS = PrefixBatchGenerator.streams
GROUP_FEATURES = 7
NUM_GLOBAL_FEATURES = 8
TOKEN_SCALE = 1024.0  # brings token counts in observations to order one


class PrefixBatchEnv(SchedulingEnv[PrefixBatchConfig, PrefixBatchSimulator]):
    """A large offline batch whose prompts share prefixes, on one LLM replica (BatchLLM).

    ## Description
    A batch of requests (prompt and output lengths from the ShareGPT statistics) whose prompts
    share prefixes organised as a tree: system prompts, few-shot templates, task contexts,
    multi-turn histories. It runs on one replica of the shared continuous-batching engine with
    vLLM-style automatic prefix caching: a request whose prefix is resident in KV memory reuses
    it instead of recomputing it, and unreferenced prefixes are evicted LRU when memory runs
    short. The agent orders the batch: which prefix group's next request enters the engine.
    Grouping requests that share a prefix, and ordering them well, is what BatchLLM does.

    ## Action Space
    ``Discrete(G + 1)`` with ``G = config.max_groups``: action ``g`` releases the earliest
    pending request (in submission order) of prefix group ``g`` into the engine; action ``G``
    lets the engine run on to its next event (an iteration with prefills, or the next completion
    of a decode stretch). A group is valid when its next request's blocks (prompt minus resident
    prefix) fit the free and evictable KV blocks left after the requests already queued and the
    watermark, and a seat is free; running on is valid while the engine has work.

    ## Observation Space
    A ``Dict``:

    - ``groups`` ``(G, 7)`` float32 per group: pending requests / its size, mean pending prompt
      tokens / 1024, mean pending output tokens / 1024 (the batch declares output lengths, as
      BatchLLM assumes), shared prefix tokens / 1024, whether that prefix is resident, requests
      of the group running, and the blocks its next request needs / capacity (zero rows pad).
    - ``group_mask`` ``(G,)``: 1 for real groups.
    - ``global_features`` ``(8,)`` float32: free blocks / capacity, evictable prefix blocks /
      capacity, running requests / seat limit, queued requests / seat limit, decoding
      requests / seat limit, requests finished / batch, requests released / batch, time / 100 s.

    ## Rewards
    Minus the simulated time elapsed during the step, over ``reward_scale_s``: the return is
    minus the batch's completion time, so maximising it maximises throughput.

    ## Starting State
    The whole batch is pending at time 0, nothing is cached. The batch (prefix forest, request
    lengths, groups, submission order) is drawn at ``reset`` into a frozen
    :class:`~schedgym.workloads.prefix_tree.PrefixBatch` by
    :class:`~schedgym.envs.prefixbatch.generator.PrefixBatchGenerator`, so every policy serves
    the same batch for a seed. ``reset(options={"instance": batch})`` serves a given batch
    instead (e.g. ``PrefixBatchGenerator.generate(config, seed)`` or a recorded one, with at most
    ``max_groups`` groups); ``env.unwrapped.simulator.episode`` is the one being served.
    ``fork()`` (for look-ahead policies) copies the env at its present state, random generators
    included, so that the copy evolves identically; it shares (``fork_memo()``) the config, the
    generated batch, the cost model and the finished requests.

    ## Episode End
    Terminates when every request has finished. The final ``info`` holds the summary:
    ``completion_time_s``, ``throughput_tok_s`` (prompt and output tokens per second),
    ``output_tok_s``, ``kv_reuse_ratio`` (share of prompt tokens served from the prefix cache),
    ``peak_kv_blocks``, ``requests_completed``, ``preemptions``, ``prefill_tokens_computed``.

    ## Arguments
    ``config`` (a :class:`PrefixBatchConfig`) or ``preset`` (``prefix-heavy``, ``no-sharing``,
    ``mixed``, ``tiny``), plus any config field as a keyword override, and ``render_mode``
    (``ansi`` or ``rgb_array``).

    ## Version History
    - v0: initial version. The deployment fields became the shared
      :class:`~schedgym.costmodels.deployment.DeploymentFields` (same dynamics): renamed
      ``kv_memory_utilization`` -> ``gpu_memory_utilization`` (the old name is a deprecated
      alias for one version), and ``gqa_decode_attention`` added (default ``False``, as
      before).

    Example:
        >>> import gymnasium as gym
        >>> import schedgym
        >>> env = gym.make("schedgym/PrefixBatch-v0", preset="tiny")
        >>> obs, info = env.reset(seed=0)
        >>> action = int(env.unwrapped.action_masks().nonzero()[0][0])
        >>> obs, reward, terminated, truncated, info = env.step(action)
    """

    config_class = PrefixBatchConfig
    presets = PRESETS
    render_module = "schedgym.envs.prefixbatch.render"

    # release() and run() check what the mask encodes; building the mask costs O(groups).
    simulator_validates_actions = True

    def __init__(
        self,
        config: PrefixBatchConfig | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, preset, render_mode, **overrides)
        self.max_groups = self.config.max_groups
        self.run_action = self.max_groups
        # The group features, encoded incrementally (see _group_features): the table, the
        # simulator it describes, its release and completion counts then, the admission needs it
        # holds, and the groups released through _apply since.
        self._group_table: np.ndarray | None = None
        self._table_simulator: PrefixBatchSimulator | None = None
        self._table_released = 0
        self._table_finished = 0
        self._table_needs: tuple[np.ndarray, ...] | None = None
        self._released_groups: list[int] = []
        self.action_space = MaskedDiscrete(self.max_groups + 1, self.action_masks)
        self.observation_space = spaces.Dict(
            {
                "groups": spaces.Box(
                    -np.inf, np.inf, (self.max_groups, GROUP_FEATURES), np.float32
                ),
                "group_mask": spaces.MultiBinary(self.max_groups),
                "global_features": spaces.Box(-np.inf, np.inf, (NUM_GLOBAL_FEATURES,), np.float32),
            }
        )

    # ------------------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # Spawned even for a given instance, so the seed's generator advances the same way.
        streams = spawn_streams(self.np_random, STREAMS)
        instance = recorded_instance(options, PrefixBatch)
        if instance is None:
            instance = PrefixBatchGenerator.from_streams(self.config, streams)
        self.simulator = PrefixBatchSimulator(self.config, instance)
        return self._observation(), self._info()

    def _substitute_fallback(self) -> int | None:
        return self.run_action

    def _apply(self, action: int) -> tuple[float, bool, bool]:
        sim = self._sim()
        before = sim.now_s
        if action == self.run_action:
            sim.run()
        elif 0 <= action < self.max_groups:
            if action >= sim.num_groups:
                raise InvalidActionError(f"action: group slot {action} holds no group")
            sim.release(action)
            self._released_groups.append(action)
        else:
            raise InvalidActionError(f"action: must be in [0, {self.run_action}], got {action}")
        reward = -(sim.now_s - before) / self.config.reward_scale_s
        return reward, sim.done, False

    def action_masks(self) -> np.ndarray:
        """``(max_groups + 1,)`` bool: the valid actions now."""
        mask = np.zeros(self.max_groups + 1, bool)
        sim = self.simulator
        if sim is None or sim.done:
            return mask
        mask[: sim.num_groups] = sim.releasable_mask()
        mask[-1] = sim.can_run()
        return mask

    # -------------------------------------------------------------------------- helpers
    def _info(self) -> dict[str, Any]:
        sim = self._sim()
        return {
            "time_s": sim.now_s,
            "requests_released": sim.released,
            "requests_completed": sim.requests_completed,
        }

    def _observation(self) -> dict[str, np.ndarray]:
        sim = self._sim()
        g = sim.num_groups
        capacity = sim.capacity_blocks
        groups = self._group_features(sim)
        prefix = sim.instance.kv.prefix
        group_mask = np.zeros(self.max_groups, np.int8)
        group_mask[:g] = 1
        inst = sim.instance
        seats = sim.config.max_batch_requests
        n = len(sim.requests)
        global_features = np.array(
            [
                inst.free_blocks / capacity,
                (prefix.evictable_blocks if prefix is not None else 0) / capacity,
                inst.num_running() / seats,
                len(inst.waiting) / seats,
                inst.num_decoding / seats,
                sim.requests_completed / n,
                sim.released / n,
                sim.now_s / 100.0,
            ],
            np.float32,
        )
        return {"groups": groups, "group_mask": group_mask, "global_features": global_features}

    def _group_features(self, sim: PrefixBatchSimulator) -> np.ndarray:
        """``(max_groups, 7)`` float32: the group features, a fresh copy.

        There are thousands of groups and a decision changes few of them, so the features are
        kept in a table and updated in place: the counts of the groups released since (through
        ``_apply``) and of the groups whose requests finished since, and the admission columns
        when the simulator's admission needs changed. Anything else (a new simulator, a release
        not made through this env) re-encodes the whole table. Every entry is computed by the
        same arithmetic either way.
        """
        g = sim.num_groups
        table = self._group_table
        needs = sim.group_admission_needs()
        if (
            table is None
            or self._table_simulator is not sim
            or sim.released != self._table_released + len(self._released_groups)
        ):
            table = np.zeros((self.max_groups, GROUP_FEATURES), np.float32)
            table[:g, 3] = sim.batch.group_prefix_tokens / TOKEN_SCALE
            self._encode_group_counts(sim, table, slice(0, g))
            self._encode_group_needs(sim, table, needs)
        else:
            finished = sim.finished[self._table_finished :]
            changed = self._released_groups + [sim.request_group[r.request_id] for r in finished]
            if changed:
                self._encode_group_counts(sim, table, np.array(changed, np.int64))
            if needs is not self._table_needs:
                self._encode_group_needs(sim, table, needs)
        self._group_table = table
        self._table_simulator = sim
        self._table_released = sim.released
        self._table_finished = len(sim.finished)
        self._table_needs = needs
        self._released_groups = []
        return table.copy()  # the table changes in place at later steps

    @staticmethod
    def _encode_group_counts(
        sim: PrefixBatchSimulator, table: np.ndarray, rows: slice | np.ndarray
    ) -> None:
        """The pending-request and running-request features of ``rows`` (groups)."""
        pending = sim.group_pending[rows].astype(np.float32)
        safe = np.maximum(pending, 1.0)
        table[rows, 0] = pending / sim.group_sizes[rows].astype(np.float32)
        table[rows, 1] = sim.group_pending_prompt[rows] / safe / TOKEN_SCALE
        table[rows, 2] = sim.group_pending_output[rows] / safe / TOKEN_SCALE
        table[rows, 5] = sim.group_running[rows] / sim.config.max_batch_requests

    @staticmethod
    def _encode_group_needs(
        sim: PrefixBatchSimulator, table: np.ndarray, needs: tuple[np.ndarray, ...]
    ) -> None:
        """The next-request features of every group (zeros for groups with none)."""
        g = sim.num_groups
        has_next, admission, _, resident = needs
        table[:g, 4] = resident & has_next
        table[:g, 6] = np.where(has_next, admission / sim.capacity_blocks, 0.0)
