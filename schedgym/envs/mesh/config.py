"""Configuration of MeshAssign-v0: every knob, validated, with named presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schedgym.core.config import require_choice, require_number
from schedgym.core.errors import ConfigError
from schedgym.core.spaces import INVALID_ACTION_MODES
from schedgym.costmodels.hardware import get_gpu, get_model
from schedgym.workloads.lengths import MAX_CONTEXT_TOKENS, Component, validate_components

MAX_GPUS = 1024

# Default mixture (github-like): most files short, a Pareto tail of whole repositories.
GITHUB_LIKE: tuple[Component, ...] = (
    ("lognormal", 0.85, 3000.0, 1.3),
    ("pareto", 0.15, 16384.0, 1.5),
)


def _is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def _require_power_of_two(name: str, value: Any, low: int, high: int) -> None:
    require_number(name, value, low, high, integer=True)
    if not _is_power_of_two(value):
        raise ConfigError(f"{name}: must be a power of two in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class MeshConfig:
    """Every knob of MeshAssign-v0. Lengths and capacities in tokens, times in seconds.

    Attributes:
        num_gpus: ranks of the mesh ``D`` (a power of two, 8-1024): rank groups are aligned
            blocks of a power-of-two size, as context-parallel groups are.
        gpus_per_node: GPUs sharing NVLink (a power of two); a group that crosses a node boundary
            exchanges ring-attention KV over the network.
        gpu: GPU type from the hardware catalogue (aliases such as ``H100`` allowed).
        model: model from the catalogue (``Llama-2-7B`` ... ``Llama-3-70B``).
        capacity_tokens_per_rank: ``C``, the tokens of one micro-batch a rank can hold in memory.
        global_batch_tokens: tokens per global batch (one optimizer step): sequences are drawn
            until the next would overflow it.
        num_batches: global batches per episode.
        length_mixture: ``(kind, weight, a, b)`` components, see
            :mod:`schedgym.workloads.lengths` (lognormal, Pareto, uniform).
        min_seq_tokens: shortest sequence.
        max_seq_tokens: longest sequence (the context window, at most 2,097,152). Draws longer
            than what the whole mesh can hold (``num_gpus * C``, times the offload factor when
            offload is allowed) are truncated to it, as a trainer truncates to its window.
        allow_offload: whether a rank may hold more than ``C`` tokens by offloading activations
            to host memory over PCIe (ByteScale's selective offloading).
        offload_capacity_factor: with offload, a rank holds at most this many times ``C`` tokens.
        max_ranks: padding of the rank features and the action space (a power of two >=
            ``num_gpus``), so one policy can serve meshes of several sizes; None means
            ``num_gpus``.
        invalid_action: ``raise`` (an action outside ``action_masks()`` raises
            InvalidActionError) or ``substitute`` (it is replaced by the lowest valid action and
            ``info["action_substituted"]`` is True).
    """

    num_gpus: int = 64
    gpus_per_node: int = 8
    gpu: str = "H100-SXM-80GB"
    model: str = "Llama-2-7B"
    capacity_tokens_per_rank: int = 65536
    global_batch_tokens: int = 8_388_608
    num_batches: int = 1
    length_mixture: tuple[Component, ...] = field(default=GITHUB_LIKE)
    min_seq_tokens: int = 128
    max_seq_tokens: int = MAX_CONTEXT_TOKENS
    allow_offload: bool = False
    offload_capacity_factor: float = 2.0
    max_ranks: int | None = None
    invalid_action: str = "raise"

    def __post_init__(self) -> None:
        _require_power_of_two("num_gpus", self.num_gpus, 8, MAX_GPUS)
        _require_power_of_two("gpus_per_node", self.gpus_per_node, 1, 64)
        if not isinstance(self.gpu, str):
            raise ConfigError(f"gpu: must be a GPU name, got {self.gpu!r}")
        get_gpu(self.gpu)  # raises ConfigError("gpu: unknown gpu ...")
        if not isinstance(self.model, str):
            raise ConfigError(f"model: must be a model name, got {self.model!r}")
        get_model(self.model)
        require_number(
            "capacity_tokens_per_rank", self.capacity_tokens_per_rank, 256, 4_194_304, integer=True
        )
        require_number(
            "global_batch_tokens", self.global_batch_tokens, 1024, 10_000_000_000, integer=True
        )
        require_number("num_batches", self.num_batches, 1, 100_000, integer=True)
        object.__setattr__(
            self, "length_mixture", validate_components("length_mixture", self.length_mixture)
        )
        require_number("min_seq_tokens", self.min_seq_tokens, 1, MAX_CONTEXT_TOKENS, integer=True)
        require_number(
            "max_seq_tokens", self.max_seq_tokens, self.min_seq_tokens, MAX_CONTEXT_TOKENS,
            integer=True,
        )  # fmt: skip
        if self.max_seq_tokens > self.global_batch_tokens:
            raise ConfigError(
                f"max_seq_tokens: must be <= global_batch_tokens ({self.global_batch_tokens}), "
                f"got {self.max_seq_tokens}"
            )
        if not isinstance(self.allow_offload, bool):
            raise ConfigError(f"allow_offload: must be true or false, got {self.allow_offload!r}")
        require_number("offload_capacity_factor", self.offload_capacity_factor, 1.0, 16.0)
        if self.max_ranks is not None:
            _require_power_of_two("max_ranks", self.max_ranks, self.num_gpus, MAX_GPUS)
        require_choice("invalid_action", self.invalid_action, INVALID_ACTION_MODES)

    @property
    def padded_ranks(self) -> int:
        """Rank slots in observations and actions."""
        return self.max_ranks if self.max_ranks is not None else self.num_gpus

    @property
    def rank_capacity_tokens(self) -> float:
        """Most tokens a rank may hold in one micro-batch (with offload when allowed)."""
        factor = self.offload_capacity_factor if self.allow_offload else 1.0
        return self.capacity_tokens_per_rank * factor

    @property
    def longest_sequence_tokens(self) -> int:
        """Longest sequence a batch can hold: the window, capped by what the mesh can hold."""
        return int(min(self.max_seq_tokens, self.num_gpus * self.rank_capacity_tokens))


# Length mixtures (tokens). The shapes follow ByteScale's description of its corpora: web text
# (CommonCrawl) is overwhelmingly short, code (GitHub) has a fatter tail, and long-context data
# puts a large share of tokens in sequences longer than one rank's capacity.
PRESETS: dict[str, dict[str, Any]] = {
    "github-like": {"length_mixture": GITHUB_LIKE},
    "commoncrawl-like": {
        "length_mixture": (("lognormal", 0.97, 1200.0, 1.0), ("pareto", 0.03, 8192.0, 1.5)),
    },
    "long-tail-heavy": {
        "length_mixture": (("lognormal", 0.7, 2048.0, 1.0), ("pareto", 0.3, 32768.0, 2.0)),
    },
    # Control: every sequence short and similar, so no placement can gain much.
    "uniform-short": {
        "length_mixture": (("uniform", 1.0, 1024.0, 8192.0),),
        "max_seq_tokens": 8192,
    },
    # A small, fast instance for smoke tests and the all-envs test suite.
    "tiny": {
        "num_gpus": 8,
        "capacity_tokens_per_rank": 8192,
        "global_batch_tokens": 65536,
        "max_seq_tokens": 32768,
        "num_batches": 6,
    },
}
