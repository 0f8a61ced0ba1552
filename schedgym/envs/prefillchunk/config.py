"""Configuration of PrefillChunk-v0: every knob, validated, with named presets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from schedgym.core.config import require_choice, require_number
from schedgym.core.errors import ConfigError
from schedgym.core.spaces import INVALID_ACTION_MODES
from schedgym.costmodels.deployment import DeploymentFields, ResolvedDeployment
from schedgym.serving.engine import min_kv_capacity_blocks

# Sarathi-Serve's budgets: 0 is a decode-only iteration.
DEFAULT_TOKEN_BUDGETS = (0, 128, 256, 512, 1024, 2048, 4096)
LENGTH_DISTRIBUTIONS = ("sharegpt", "fixed")
ARRIVAL_PROCESSES = ("poisson", "gamma")


# Highest arrival rate accepted, requests per second (also bounds `schedgym capacity`).
MAX_QPS = 10_000.0


@dataclass(frozen=True)
class PrefillChunkConfig(DeploymentFields):
    """Every knob of PrefillChunk-v0. Times in seconds, lengths in tokens.

    The defaults are Sarathi-Serve's Mistral-7B setting: one A100 (tensor parallel 1), ShareGPT
    lengths, Poisson arrivals, Sarathi's token-budget semantics (decodes count) and its default
    GQA-aware decode kernel (FlashInfer). With both, sarathi-512's capacity at a 0.1 s p99 TBT SLO
    is 2.3x vLLM's (the paper reports 2.6x); with per-query-head decode reads and prefill-only
    budgets it is 1.8x (benchmarks/bench_prefill.py prints all three settings).

    Attributes:
        model / gpu / tp / engine_overhead / gpu_memory_utilization / kv_capacity_blocks: what
            the replica runs on (see :class:`~schedgym.costmodels.deployment.DeploymentFields`).
            The KV capacity left after weights and activations, or ``kv_capacity_blocks``,
            which must hold one request of ``max_total_tokens`` past the engine's watermark.
        gqa_decode_attention: ``True`` (the default here): the decode-attention kernel reads
            each KV head once per group of query heads (FlashInfer's, Sarathi-Serve's default
            backend; the bandwidth efficiency fitted to the profiled kernel is carried over, an
            assumption). ``False`` charges the reads per query head as the calibration
            profile's kernel behaves. Matters for GQA models such as Mistral-7B (4 query heads
            per KV head).
        request_rate_per_s: mean arrival rate, requests per second.
        arrival_process / arrival_cv: ``poisson``, or ``gamma`` with the gaps' coefficient of
            variation.
        num_requests: requests per episode; the episode ends when every one has finished.
        lengths: ``sharegpt`` (joint (prompt, output) pairs of the ShareGPT statistics) or
            ``fixed`` (``prompt_tokens`` and ``output_tokens`` for all).
        max_total_tokens: ShareGPT conversations longer than this (prompt + output) are not
            drawn: the model's context window.
        token_budgets: the prefill token budgets the agent picks from; must include 0.
        budget_counts_decodes: ``True`` (default): Sarathi-Serve's semantics, where the budget
            (its ``chunk_size``) bounds the iteration's tokens and each running decode takes
            one, so the prefill chunks get the budget minus the decodes (none when the decodes
            fill it; a budget of 0 is still decode-only). ``False``: a budget counts prefill
            tokens only and the running decodes ride on top.
        max_batch_requests: requests admitted at once (vLLM's ``max_num_seqs``).
        slo_tbt_s: the time-between-tokens SLO, seconds (Sarathi-Serve's strict SLO for
            Mistral-7B is 0.1 s).
        slo_penalty: reward lost per output token whose gap exceeded ``slo_tbt_s``, in units
            of one completed token.
        reward_scale_tokens: divisor of the reward (tokens per unit of reward).
        queue_slots: waiting requests shown in the observation (oldest first).
        horizon_s: optional simulated-time limit; at the limit the episode is truncated.
        invalid_action: ``raise`` or ``substitute`` (see :func:`schedgym.core.spaces.check_action`).
    """

    # Field names of earlier versions, still accepted (with a FutureWarning) for one version.
    renamed_fields: ClassVar[Mapping[str, str]] = {
        "kv_memory_utilization": "gpu_memory_utilization",
        "qps": "request_rate_per_s",
    }

    gqa_decode_attention: bool = True
    request_rate_per_s: float = 1.0
    arrival_process: str = "poisson"
    arrival_cv: float = 1.0
    num_requests: int = 512
    lengths: str = "sharegpt"
    prompt_tokens: int = 1024
    output_tokens: int = 256
    max_total_tokens: int = 8192
    token_budgets: tuple[int, ...] = DEFAULT_TOKEN_BUDGETS
    budget_counts_decodes: bool = True
    max_batch_requests: int = 256
    slo_tbt_s: float = 0.1
    slo_penalty: float = 10.0
    reward_scale_tokens: float = 100.0
    queue_slots: int = 8
    horizon_s: float | None = None
    invalid_action: str = "raise"

    def __post_init__(self) -> None:
        super().__post_init__()  # the deployment fields
        require_number(
            "request_rate_per_s", self.request_rate_per_s, 0.0, MAX_QPS, low_inclusive=False
        )
        require_choice("arrival_process", self.arrival_process, ARRIVAL_PROCESSES)
        require_number("arrival_cv", self.arrival_cv, 0.0, 100.0, low_inclusive=False)
        require_number("num_requests", self.num_requests, 1, 10_000_000, integer=True)
        require_choice("lengths", self.lengths, LENGTH_DISTRIBUTIONS)
        require_number("max_total_tokens", self.max_total_tokens, 64, 1_000_000, integer=True)
        require_number(
            "prompt_tokens", self.prompt_tokens, 1, self.max_total_tokens - 1, integer=True
        )
        require_number(
            "output_tokens",
            self.output_tokens,
            1,
            self.max_total_tokens - self.prompt_tokens,
            integer=True,
        )
        budgets = tuple(self.token_budgets) if isinstance(self.token_budgets, (list, tuple)) else ()
        if not budgets:
            raise ConfigError(
                "token_budgets: must be a non-empty list of token counts, got "
                f"{self.token_budgets!r}"
            )
        for index, budget in enumerate(budgets):
            require_number(f"token_budgets[{index}]", budget, 0, 65_536, integer=True)
        if (
            0 not in budgets
            or len(set(budgets)) != len(budgets)
            or list(budgets) != sorted(budgets)
        ):
            raise ConfigError(
                f"token_budgets: must be strictly increasing and start with 0, got {list(budgets)}"
            )
        if len(budgets) < 2:
            raise ConfigError("token_budgets: needs at least one budget above 0")
        object.__setattr__(self, "token_budgets", budgets)
        if not isinstance(self.budget_counts_decodes, bool):
            raise ConfigError(
                f"budget_counts_decodes: must be true or false, got {self.budget_counts_decodes!r}"
            )
        require_number("max_batch_requests", self.max_batch_requests, 1, 4096, integer=True)
        if self.kv_capacity_blocks is not None:
            # One request of max_total_tokens must be admissible alone, or it would wait forever.
            need = min_kv_capacity_blocks(self.max_total_tokens)
            require_number("kv_capacity_blocks", self.kv_capacity_blocks, need, 10**9, integer=True)
        require_number("slo_tbt_s", self.slo_tbt_s, 0.0, 1000.0, low_inclusive=False)
        require_number("slo_penalty", self.slo_penalty, 0.0, 1e6)
        require_number("reward_scale_tokens", self.reward_scale_tokens, 0.0, low_inclusive=False)
        require_number("queue_slots", self.queue_slots, 1, 1024, integer=True)
        if self.horizon_s is not None:
            require_number("horizon_s", self.horizon_s, 0.0, low_inclusive=False)
        require_choice("invalid_action", self.invalid_action, INVALID_ACTION_MODES)

    def resolved_deployment(self) -> ResolvedDeployment:
        """The replica's cost model and KV capacity; activations are reserved for the largest
        iteration: the largest prefill budget plus one token per seat."""
        return self.deployment.resolve(max(self.token_budgets) + self.max_batch_requests)


PRESETS: dict[str, dict[str, Any]] = {
    # Sarathi-Serve's Mistral-7B / A100 / ShareGPT setting at a moderate load and the relaxed
    # SLO variant (the paper relaxes the TBT SLO 5x).
    "sarathi-strict": {"request_rate_per_s": 1.0, "slo_tbt_s": 0.1},
    "sarathi-relaxed": {"request_rate_per_s": 1.0, "slo_tbt_s": 0.5},
    # Heavier load: prefills arrive often enough that how they mix with decodes dominates.
    "high-load": {"request_rate_per_s": 2.0, "slo_tbt_s": 0.1},
    # A small, fast instance for smoke tests and the all-envs test suite.
    "tiny": {
        "request_rate_per_s": 4.0,
        "num_requests": 12,
        "lengths": "fixed",
        "prompt_tokens": 300,
        "output_tokens": 12,
        "max_batch_requests": 8,
        "queue_slots": 4,
    },
}
