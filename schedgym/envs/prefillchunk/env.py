"""Gymnasium facade of the PrefillChunk simulator."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym.core.env import SchedulingEnv
from schedgym.core.errors import ConfigError
from schedgym.core.generator import recorded_instance
from schedgym.core.rng import spawn_streams
from schedgym.core.spaces import MaskedDiscrete
from schedgym.envs.prefillchunk.config import PRESETS, PrefillChunkConfig
from schedgym.envs.prefillchunk.generator import PrefillChunkGenerator
from schedgym.envs.prefillchunk.simulator import MODE_NAMES, PrefillChunkSimulator
from schedgym.workloads.requests import RequestStream

STREAMS = PrefillChunkGenerator.streams
NUM_MODES = len(MODE_NAMES)
NUM_STATE_FEATURES = 14
QUEUE_FEATURES = 3
TOKEN_SCALE = 1024.0  # brings token counts in observations to order one


class PrefillChunkEnv(SchedulingEnv[PrefillChunkConfig, PrefillChunkSimulator]):
    """Per-iteration batch composition on one LLM replica (Sarathi-Serve).

    ## Description
    Requests (ShareGPT prompt and output lengths, Poisson arrivals) reach one replica of a
    continuous-batching engine (Mistral-7B on one A100 by default: paged KV cache in 16-token
    blocks, preemption by recompute, iteration times from the calibrated cost model). Before
    every iteration the agent decides what it runs: how many prefill tokens ride with the
    running decodes, and how prompts are batched. Large budgets finish prompts sooner (lower
    TTFT, less queueing) but make the iteration long, so every running request waits longer for
    its next token (TBT); Sarathi-Serve's stall-free chunking with a fixed budget is the
    reference point.

    ## Action Space
    ``Discrete(3 * B)`` for the ``B`` budgets of ``token_budgets`` (default 0, 128, 256, 512,
    1024, 2048, 4096): action ``mode * B + i`` composes the iteration with budget
    ``token_budgets[i]`` prefill tokens and mode

    - 0 ``stall-free`` (Sarathi-Serve): every running decode, then ongoing partial prefills,
      then new requests, each chunk ``min(remaining prompt, budget left)``; budget 0 (action
      0) is a decode-only iteration;
    - 1 ``whole-mixed`` (Orca): every running decode plus whole prompts while they fit the
      budget (the first always goes);
    - 2 ``prefill-only`` (vLLM): whole prompts as in mode 1 while the decodes pause, when a
      prompt can be admitted; otherwise a decode-only iteration.

    Budget 0 is valid only in mode 0 and only while some request decodes. ``action_masks()``
    gives the valid actions; an invalid one raises
    :class:`~schedgym.core.errors.InvalidActionError`.

    ## Observation Space
    A ``Dict``:

    - ``queue`` ``(queue_slots, 3)`` float32: the oldest requests with prefill work, partly
      prefilled ones first: remaining prompt tokens / 1024, time since arrival / SLO, and a
      partly-prefilled flag (zero rows pad).
    - ``state`` ``(14,)`` float32: running decodes / ``max_batch_requests``, their mean KV
      length / 1024, queued requests / ``max_batch_requests``, prompt tokens still to prefill
      (queued and partial) / 1024, partial prefills / ``max_batch_requests``, free KV blocks /
      capacity, the last decode gap / SLO, the time since the last decode iteration / SLO,
      the last iteration's time / SLO, the share of the last iteration's tokens that violated
      the SLO, a running average of that share (weight 0.1), the SLO in seconds, and the
      fractions of the episode's requests arrived and completed.

    ## Rewards
    Per iteration: ``(tokens generated - slo_penalty * tokens whose gap exceeded slo_tbt_s) /
    reward_scale_tokens``. A token's gap is the time since the same request's previous token
    (the first token, whose delay is TTFT, has none); every decode paused by a long prefill
    pays once its next token comes. The default penalty (10) makes one late token cost ten
    tokens of throughput.

    ## Starting State
    The first request arrives at time 0; the episode starts at the first decision point. The
    requests (arrival times, prompt and output lengths) are drawn at ``reset`` into a frozen
    :class:`~schedgym.workloads.requests.RequestStream` by
    :class:`~schedgym.envs.prefillchunk.generator.PrefillChunkGenerator`, so every policy serves
    the same requests for a seed. ``reset(options={"instance": stream})`` serves a given stream
    of ``num_requests`` requests instead (e.g. ``PrefillChunkGenerator.generate(config, seed)``
    or a recorded one); ``env.unwrapped.simulator.episode`` is the one being served.
    ``fork()`` (for look-ahead policies) copies the env at its present state, random generators
    included, so that the copy evolves identically; it shares (``fork_memo()``) the config, the cost
    model and the finished requests.

    ## Episode End
    Terminates when all ``num_requests`` requests have arrived and finished; truncates at
    ``horizon_s`` if set. The final ``info`` holds the summary: ``tbt_p50_s``, ``tbt_p99_s``,
    ``ttft_p50_s``, ``ttft_p99_s``, ``sched_delay_p50_s`` (arrival to first scheduled chunk),
    ``throughput_tok_s``, ``requests_arrived``, ``requests_completed``, ``slo_violation_frac``
    (share of token gaps above the SLO), ``slo_excess_ratio`` (max of p99 TBT / SLO and median
    scheduling delay / 2 s: at most 1 when the run meets Sarathi-Serve's capacity criterion),
    ``preemptions`` and ``iterations``.

    ## Arguments
    ``config`` (a :class:`PrefillChunkConfig`) or ``preset`` (``sarathi-strict``,
    ``sarathi-relaxed``, ``high-load``, ``tiny``), plus any config field as a keyword override,
    and ``render_mode`` (``ansi`` or ``rgb_array``).

    ## Version History
    - v0: initial version. The deployment fields became the shared
      :class:`~schedgym.costmodels.deployment.DeploymentFields` (same dynamics): renamed
      ``kv_memory_utilization`` -> ``gpu_memory_utilization``, ``qps`` ->
      ``request_rate_per_s`` (the old names are deprecated aliases for one version), and
      ``kv_capacity_blocks`` added (default ``None``: derived from GPU memory, as before).

    Example:
        >>> import gymnasium as gym
        >>> import schedgym
        >>> env = gym.make("schedgym/PrefillChunk-v0", preset="tiny")
        >>> obs, info = env.reset(seed=0)
        >>> action = 3  # stall-free, budget 512
        >>> obs, reward, terminated, truncated, info = env.step(action)
    """

    config_class = PrefillChunkConfig
    presets = PRESETS
    render_module = "schedgym.envs.prefillchunk.render"

    def __init__(
        self,
        config: PrefillChunkConfig | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, preset, render_mode, **overrides)
        self.budgets = self.config.token_budgets
        self.num_budgets = len(self.budgets)
        self.action_space = MaskedDiscrete(NUM_MODES * self.num_budgets, self.action_masks)
        self.observation_space = spaces.Dict(
            {
                "queue": spaces.Box(
                    -np.inf, np.inf, (self.config.queue_slots, QUEUE_FEATURES), np.float32
                ),
                "state": spaces.Box(-np.inf, np.inf, (NUM_STATE_FEATURES,), np.float32),
            }
        )

    def action_index(self, mode: int, budget: int) -> int:
        """The action composing with ``mode`` and the configured budget ``budget`` (tokens)."""
        if budget not in self.budgets:
            raise ConfigError(f"budget: must be one of {list(self.budgets)}, got {budget}")
        return mode * self.num_budgets + self.budgets.index(budget)

    # ------------------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # Spawned even for a given instance, so the seed's generator advances the same way.
        streams = spawn_streams(self.np_random, STREAMS)
        instance = recorded_instance(options, RequestStream)
        if instance is None:
            instance = PrefillChunkGenerator.from_streams(self.config, streams)
        self.simulator = PrefillChunkSimulator(self.config, instance)
        return self._observation(), self._info()

    def _apply(self, action: int) -> tuple[float, bool, bool]:
        sim = self._sim()
        mode, index = divmod(action, self.num_budgets)
        sim.step(mode, self.budgets[index])
        config = self.config
        reward = (sim.last_tokens - config.slo_penalty * sim.last_violations) / (
            config.reward_scale_tokens
        )
        return reward, sim.done and not sim.truncated, sim.truncated

    def action_masks(self) -> np.ndarray:
        """``(3 * len(token_budgets),)`` bool: the valid actions now."""
        mask = np.zeros(NUM_MODES * self.num_budgets, bool)
        sim = self.simulator
        if sim is None or sim.done:
            return mask
        mask[:] = True
        mask[:: self.num_budgets] = False  # budget 0 outside mode 0 means nothing
        mask[0] = sim.instance.num_decoding > 0
        return mask

    # -------------------------------------------------------------------------- helpers
    def _info(self) -> dict[str, Any]:
        sim = self._sim()
        return {
            "time_s": sim.now_s,
            "requests_arrived": sim.requests_arrived,
            "requests_completed": sim.requests_completed,
            "iteration_tokens": sim.last_tokens,
            "iteration_slo_violations": sim.last_violations,
        }

    def _observation(self) -> dict[str, np.ndarray]:
        sim = self._sim()
        config = self.config
        slo = config.slo_tbt_s
        now = sim.now_s
        queue = np.zeros((config.queue_slots, QUEUE_FEATURES), np.float32)
        for row, request in enumerate(sim.queue_view(config.queue_slots)):
            queue[row, 0] = request.remaining_prefill / TOKEN_SCALE
            queue[row, 1] = (now - request.arrival_s) / slo
            queue[row, 2] = request.prefilled > 0
        inst = sim.instance
        decoding = inst.num_decoding
        batch = config.max_batch_requests
        last_decode = inst.last_decode_end_s
        since_decode = now - last_decode if decoding and last_decode == last_decode else 0.0
        state = np.array(
            [
                decoding / batch,
                inst.sum_decode_kv_tokens() / decoding / TOKEN_SCALE if decoding else 0.0,
                len(inst.waiting) / batch,
                inst.waiting_prefill_tokens / TOKEN_SCALE,
                len(inst.prefilling) / batch,
                inst.free_blocks / inst.kv.capacity_blocks,
                sim.last_decode_gap_s / slo,
                since_decode / slo,
                sim.last_iteration_s / slo,
                sim.last_violations / sim.last_tokens if sim.last_tokens else 0.0,
                sim.recent_violation_frac,
                slo,
                sim.requests_arrived / config.num_requests,
                sim.requests_completed / config.num_requests,
            ],
            np.float32,
        )
        return {"queue": queue, "state": state}
