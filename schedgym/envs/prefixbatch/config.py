"""Configuration of PrefixBatch-v0: every knob, validated, with named presets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from schedgym.core.config import require_choice, require_number
from schedgym.core.errors import ConfigError
from schedgym.core.spaces import INVALID_ACTION_MODES
from schedgym.costmodels.deployment import DeploymentFields, ResolvedDeployment
from schedgym.workloads.prefix_tree import PrefixTreeShape, PrefixTreeSpec


@dataclass(frozen=True)
class PrefixBatchConfig(DeploymentFields, PrefixTreeShape):
    """Every knob of PrefixBatch-v0. Times in seconds, lengths in tokens.

    Attributes:
        model / gpu / tp / engine_overhead / gqa_decode_attention / gpu_memory_utilization /
        kv_capacity_blocks: what the replica runs on (see
            :class:`~schedgym.costmodels.deployment.DeploymentFields`): the KV capacity left
            after weights and activations, or ``kv_capacity_blocks`` (e.g. to study a
            memory-bound batch at a small scale), which must hold a whole request.
        num_requests: requests in the batch (all submitted at time 0).
        sharing_depth / num_roots / fanout / shared_tokens / shared_tokens_cv /
        turns_per_conversation / user_tokens_scale / output_tokens_scale: the prefix tree (see
            :class:`~schedgym.workloads.prefix_tree.PrefixTreeShape`): shared levels (system
            prompts, few-shot templates, contexts), distinct roots, children per shared node,
            mean tokens per level, their spread, multi-turn chains, and the scales of the user
            messages and answers drawn from ShareGPT.
        max_total_tokens: ShareGPT conversations longer than this are not drawn, and prompts
            are cut to it (the context window).
        token_budget: tokens per iteration of the engine's stall-free batching (decodes
            included, Sarathi-Serve's chunked prefill): how the engine batches what is admitted.
        max_batch_requests: most requests running at once (the engine's seat limit).
        prefix_sharing_attention: the engine's decode attention reads a prefix that two or
            more decoding requests share once per iteration for all of them (a cascade kernel,
            as BatchLLM's prefix-shared attention; see
            :class:`~schedgym.serving.engine.ServingInstance`). ``False``: each request
            re-reads its prefix (vLLM's PagedAttention of BatchLLM's baseline).
        reward_scale_s: the reward is minus the elapsed simulated time over this scale, so the
            return is minus the batch's completion time in these units.
        invalid_action: ``raise`` or ``substitute``.
    """

    # Field names of earlier versions, still accepted (with a FutureWarning) for one version.
    renamed_fields: ClassVar[Mapping[str, str]] = {
        "kv_memory_utilization": "gpu_memory_utilization",
    }

    num_requests: int = 2000
    max_total_tokens: int = 8192
    token_budget: int = 2048
    max_batch_requests: int = 1024
    prefix_sharing_attention: bool = False
    reward_scale_s: float = 1.0
    invalid_action: str = "raise"

    def __post_init__(self) -> None:
        super().__post_init__()  # the deployment fields
        if self.kv_capacity_blocks is not None:
            # A whole prompt and its output must fit alone, or the batch could never finish.
            need = -(-self.max_total_tokens // 16) + 2
            require_number("kv_capacity_blocks", self.kv_capacity_blocks, need, 10**9, integer=True)
        require_number("max_total_tokens", self.max_total_tokens, 64, 1_000_000, integer=True)
        self.check_tree_shape()  # names each field; shared_tokens becomes a tuple
        self.tree_spec()  # num_requests, and the shared prefix against the context window
        require_number("token_budget", self.token_budget, 16, 65_536, integer=True)
        require_number("max_batch_requests", self.max_batch_requests, 1, 65_536, integer=True)
        if not isinstance(self.prefix_sharing_attention, bool):
            raise ConfigError(
                "prefix_sharing_attention: must be True or False, got "
                f"{self.prefix_sharing_attention!r}"
            )
        require_number("reward_scale_s", self.reward_scale_s, 0.0, low_inclusive=False)
        require_choice("invalid_action", self.invalid_action, INVALID_ACTION_MODES)

    def resolved_deployment(self) -> ResolvedDeployment:
        """The replica's cost model and KV capacity; activations are reserved for one
        iteration of ``token_budget`` tokens."""
        return self.deployment.resolve(self.token_budget)

    def tree_spec(self) -> PrefixTreeSpec:
        """The generator's spec of this batch."""
        return PrefixTreeSpec(
            num_requests=self.num_requests,
            **self.tree_shape(),
            max_prompt_tokens=self.max_total_tokens - 1,
            max_output_tokens=self.max_total_tokens,
            max_total_tokens=self.max_total_tokens,
        )

    @property
    def max_groups(self) -> int:
        """Most prefix groups a batch of this config can have (the action and observation
        padding): the last shared level's nodes, else conversations, else requests."""
        spec = self.tree_spec()
        if spec.sharing_depth:
            return min(spec.num_shared_leaves, self.num_requests)
        return -(-self.num_requests // spec.turns_per_conversation)


PRESETS: dict[str, dict[str, Any]] = {
    # Deep shared prefixes with a large fan-out (BatchLLM's prefix-heavy batches): 8 system
    # prompts of ~1k tokens, 8 few-shot templates each (~1.5k), 8 task contexts each (~1k);
    # the user's own part is short (a quarter of ShareGPT's), the answers ShareGPT's own. The
    # engine has BatchLLM's prefix-shared attention kernel (a shared prefix's KV read once per
    # group and iteration): BatchLLM's setting, and every policy runs on the same engine.
    "prefix-heavy": {
        "num_requests": 4000,
        "sharing_depth": 3,
        "num_roots": 8,
        "fanout": 8,
        "shared_tokens": (1024, 1536, 1024),
        "shared_tokens_cv": 0.2,
        "user_tokens_scale": 0.25,
        "prefix_sharing_attention": True,
    },
    # The control: distinct ShareGPT prompts, nothing shared, the same (ShareGPT) answers.
    "no-sharing": {"num_requests": 4000},
    # Shallow sharing plus three-turn conversations.
    "mixed": {
        "num_requests": 3000,
        "sharing_depth": 1,
        "num_roots": 16,
        "shared_tokens": (768,),
        "shared_tokens_cv": 0.3,
        "turns_per_conversation": 3,
        "user_tokens_scale": 0.5,
    },
    # A small, fast instance for smoke tests and the all-envs test suite.
    "tiny": {
        "num_requests": 16,
        "sharing_depth": 2,
        "num_roots": 2,
        "fanout": 2,
        "shared_tokens": (128, 64),
        "user_tokens_scale": 0.1,
        "max_total_tokens": 1024,
        "kv_capacity_blocks": 200,
    },
}
