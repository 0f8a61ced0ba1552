"""Offline batches whose prompts share prefixes: a prefix-tree generator (BatchLLM's workloads).

A batch is a forest of prompt *segments* (nodes). A request's prompt is the concatenation of the
segments on the path from a root to its terminal node; two requests share exactly the tokens of
their common path. Three kinds of sharing are generated, outermost first:

- shared levels (``sharing_depth`` of them): level 1 holds ``num_roots`` system prompts, and every
  shared node below has ``fanout`` children (few-shot templates, then task contexts, ...); a
  level's segments have ``shared_tokens[level]`` tokens on average;
- multi-turn conversations: ``turns_per_conversation`` successive requests whose prompts nest
  (turn ``t + 1`` = turn ``t``'s prompt + its answer + a new user message);
- a unique tail per request: the user message.

User-message and answer lengths are drawn as pairs from the ShareGPT statistics (or any sample of
(prompt, output) lengths passed in), so a no-sharing batch has exactly ShareGPT's lengths.
Requests are listed in a shuffled submission order, as an offline batch job receives them: the
requests of one prefix group are scattered through the list.

Shared segments and conversation turns are whole KV blocks (``align_tokens``, vLLM's 16): the
engine's prefix cache (:mod:`schedgym.serving.kv_cache`) shares whole blocks only, and rounding a
system prompt up by at most 15 tokens changes nothing measurable. :meth:`PrefixBatch.prefix_path`
gives a request's shareable nodes in the engine's ``((node id, tokens), ...)`` form.

A request's *group* is its deepest shared-level node (with ``sharing_depth = 0``, its
conversation; single-turn: itself): the requests of a group share their whole shared prefix.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schedgym.core.config import require_number
from schedgym.core.errors import ConfigError
from schedgym.core.generator import FrozenInstance, frozen_array

MAX_SHARING_DEPTH = 6


@dataclass(frozen=True)
class PrefixTreeShape:
    """The prefix tree's shape, for :class:`PrefixTreeSpec` and environment configs to inherit
    (one set of names, defaults and checks).

    Attributes:
        sharing_depth: shared levels above the requests' own segments; 0 = no shared prefix.
        num_roots: distinct level-1 segments (system prompts); needs ``sharing_depth >= 1``.
        fanout: children of every shared node above the last shared level.
        shared_tokens: mean tokens of a segment at each shared level (length ``sharing_depth``).
        shared_tokens_cv: coefficient of variation of those lengths (lognormal); 0 = exact.
        turns_per_conversation: requests per conversation; 1 = single-turn requests.
        user_tokens_scale: factor on the sampled user-message lengths (rounded, at least 1):
            below 1 for workloads whose unique part is shorter than a ShareGPT prompt (batch
            classification, retrieval prompts), as in BatchLLM's prefix-heavy sets.
        output_tokens_scale: the same for the sampled answer lengths (offline batch tasks such
            as extraction or labelling answer briefly).
    """

    sharing_depth: int = 0
    num_roots: int = 1
    fanout: int = 1
    shared_tokens: tuple[int, ...] = ()
    shared_tokens_cv: float = 0.0
    turns_per_conversation: int = 1
    user_tokens_scale: float = 1.0
    output_tokens_scale: float = 1.0

    def check_tree_shape(self) -> None:
        """Validate the shape fields (``shared_tokens`` becomes a tuple).

        Raises:
            ConfigError: naming the field and its allowed range.
        """
        require_number("sharing_depth", self.sharing_depth, 0, MAX_SHARING_DEPTH, integer=True)
        require_number("num_roots", self.num_roots, 1, 1_000_000, integer=True)
        require_number("fanout", self.fanout, 1, 10_000, integer=True)
        if not isinstance(self.shared_tokens, list | tuple):
            raise ConfigError(
                f"shared_tokens: must be a list of mean token counts, got {self.shared_tokens!r}"
            )
        shared = tuple(self.shared_tokens)
        if len(shared) != self.sharing_depth:
            raise ConfigError(
                f"shared_tokens: needs one mean length per shared level ({self.sharing_depth}), "
                f"got {len(shared)}"
            )
        for level, tokens in enumerate(shared):
            require_number(f"shared_tokens[{level}]", tokens, 1, 1_000_000, integer=True)
        object.__setattr__(self, "shared_tokens", shared)
        require_number("shared_tokens_cv", self.shared_tokens_cv, 0.0, 4.0)
        require_number("turns_per_conversation", self.turns_per_conversation, 1, 64, integer=True)
        require_number("user_tokens_scale", self.user_tokens_scale, 0.0, 1.0, low_inclusive=False)
        require_number(
            "output_tokens_scale", self.output_tokens_scale, 0.0, 1.0, low_inclusive=False
        )

    def tree_shape(self) -> dict[str, Any]:
        """The shape fields by name (to build a :class:`PrefixTreeSpec` from a config)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(PrefixTreeShape)}


@dataclass(frozen=True)
class PrefixTreeSpec(PrefixTreeShape):
    """Shape of a shared-prefix batch: the tree (:class:`PrefixTreeShape`'s fields) and the
    requests.

    Attributes:
        num_requests: requests in the batch (keyword only).
        max_prompt_tokens: a prompt (prefix included) is cut to this many tokens by shortening
            its own segment (the model's context window); at least one own token remains.
        max_output_tokens: output lengths are capped here.
        max_total_tokens: if set, outputs are also cut so that prompt + output fits (the
            context window); must exceed ``max_prompt_tokens``.
        align_tokens: shared segments and conversation turns are rounded up to a multiple of
            this (the KV block size), so that they are whole blocks.
    """

    num_requests: int = field(kw_only=True)
    max_prompt_tokens: int = 8192
    max_output_tokens: int = 4096
    max_total_tokens: int | None = None
    align_tokens: int = 16

    def __post_init__(self) -> None:
        require_number("num_requests", self.num_requests, 1, 10_000_000, integer=True)
        self.check_tree_shape()
        require_number("max_prompt_tokens", self.max_prompt_tokens, 2, 1_000_000, integer=True)
        require_number("max_output_tokens", self.max_output_tokens, 1, 1_000_000, integer=True)
        if self.max_total_tokens is not None:
            require_number(
                "max_total_tokens",
                self.max_total_tokens,
                self.max_prompt_tokens + 1,
                10_000_000,
                integer=True,
            )
        require_number("align_tokens", self.align_tokens, 1, 4096, integer=True)
        if self.turns_per_conversation > 1 and self.max_prompt_tokens < 2 * self.align_tokens:
            raise ConfigError(
                f"max_prompt_tokens: multi-turn prompts need at least 2 * align_tokens "
                f"({2 * self.align_tokens}), got {self.max_prompt_tokens}"
            )
        if self.shared_prefix_tokens + self.align_tokens > self.max_prompt_tokens:
            raise ConfigError(
                f"shared_tokens: the shared prefix ({self.shared_prefix_tokens} tokens once "
                f"aligned) plus one block must fit in max_prompt_tokens ({self.max_prompt_tokens})"
            )

    @property
    def shared_prefix_tokens(self) -> int:
        """Mean tokens of a whole shared path, each level rounded up to ``align_tokens``."""
        return sum(_round_up(t, self.align_tokens) for t in self.shared_tokens)

    @property
    def num_shared_leaves(self) -> int:
        """Nodes at the last shared level (0 without sharing)."""
        if self.sharing_depth == 0:
            return 0
        return self.num_roots * self.fanout ** (self.sharing_depth - 1)


@dataclass(frozen=True, eq=False)
class PrefixBatch(FrozenInstance):
    """A generated batch: the segment forest and the requests, in submission order.

    Node arrays have shape ``(num_nodes,)``; nodes are numbered parents before children.
    Request arrays have shape ``(num_requests,)`` and are in submission order. The episode
    instance of PrefixBatch-v0: immutable, its arrays read-only, shared by copies.
    """

    node_parent: np.ndarray  # int64, -1 for a root
    node_tokens: np.ndarray  # int64, tokens of the segment
    node_start: np.ndarray  # int64, tokens on the path before the segment
    node_shared: np.ndarray  # bool, True for the shared-level nodes
    node_aligned: np.ndarray  # bool, whole blocks: shared levels and conversation turns
    request_node: np.ndarray  # int64, terminal node of each request's prompt
    request_prompt_tokens: np.ndarray  # int64, = node_start + node_tokens of request_node
    request_output_tokens: np.ndarray  # int64
    request_group: np.ndarray  # int64, group index in [0, num_groups)
    group_prefix_tokens: np.ndarray  # int64, (num_groups,) tokens every member shares

    def __post_init__(self) -> None:
        nodes = len(self.node_parent)
        requests = len(self.request_node)
        shapes: dict[str, tuple[Any, int | None]] = {
            "node_parent": (np.int64, nodes),
            "node_tokens": (np.int64, nodes),
            "node_start": (np.int64, nodes),
            "node_shared": (np.bool_, nodes),
            "node_aligned": (np.bool_, nodes),
            "request_node": (np.int64, requests),
            "request_prompt_tokens": (np.int64, requests),
            "request_output_tokens": (np.int64, requests),
            "request_group": (np.int64, requests),
            "group_prefix_tokens": (np.int64, None),
        }
        arrays = {
            name: frozen_array(getattr(self, name), dtype, f"instance.{name}", (size,))
            for name, (dtype, size) in shapes.items()
        }
        parent = arrays["node_parent"]
        if ((parent < -1) | (parent >= np.arange(nodes))).any():
            raise ConfigError("instance.node_parent: a parent must be -1 or an earlier node")
        if requests and not (
            0 <= arrays["request_node"].min() <= arrays["request_node"].max() < nodes
        ):
            raise ConfigError(f"instance.request_node: must be node indices in [0, {nodes})")
        groups = len(arrays["group_prefix_tokens"])
        if requests and not (
            0 <= arrays["request_group"].min() <= arrays["request_group"].max() < groups
        ):
            raise ConfigError(f"instance.request_group: must be group indices in [0, {groups})")
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    @property
    def num_requests(self) -> int:
        return int(self.request_node.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.node_parent.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.group_prefix_tokens.shape[0])

    def prefix_path(self, request: int) -> tuple[tuple[int, int], ...]:
        """The shareable (block-aligned) nodes of ``request``'s prompt as ``((node, tokens), ...)``,
        root first: its shared levels and, in a conversation, its turns (its own included, as
        the next turn reuses it); a single-turn request's own segment is private."""
        path = self.path(request)
        if not self.node_aligned[path[-1]]:
            path = path[:-1]
        return tuple((node, int(self.node_tokens[node])) for node in path)

    def path(self, request: int) -> list[int]:
        """Nodes of ``request``'s prompt, root first."""
        nodes = []
        node = int(self.request_node[request])
        while node >= 0:
            nodes.append(node)
            node = int(self.node_parent[node])
        nodes.reverse()
        return nodes

    def unique_prompt_tokens(self) -> int:
        """Prompt tokens of the batch counted once per distinct prefix (a perfect cache's work)."""
        used = np.zeros(self.num_nodes, bool)
        for request in range(self.num_requests):
            for node in self.path(request):
                used[node] = True
        return int(self.node_tokens[used].sum())


def _round_up(tokens: int | np.ndarray, align: int) -> Any:
    return -(-tokens // align) * align


def _lognormal_lengths(rng: np.random.Generator, mean: int, cv: float, size: int) -> np.ndarray:
    if cv == 0.0:
        return np.full(size, mean, np.int64)
    sigma = math.sqrt(math.log1p(cv * cv))
    draws = mean * np.exp(sigma * rng.standard_normal(size) - 0.5 * sigma * sigma)
    return np.maximum(np.rint(draws), 1).astype(np.int64)


def generate_prefix_batch(
    spec: PrefixTreeSpec,
    length_pairs: np.ndarray,
    rng_tree: np.random.Generator,
    rng_lengths: np.random.Generator,
) -> PrefixBatch:
    """Build a batch.

    Args:
        spec: the tree shape.
        length_pairs: ``(n, 2)`` integer (prompt tokens, output tokens) sample, e.g. ShareGPT's;
            user messages and answers are drawn from it as pairs.
        rng_tree: draws the shared-segment lengths, the group of each conversation and the
            submission order.
        rng_lengths: draws the (user message, answer) pairs.

    Raises:
        ConfigError: an empty or malformed ``length_pairs``.
    """
    pairs = np.asarray(length_pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] == 0:
        raise ConfigError(f"length_pairs: must be a non-empty (n, 2) array, got {pairs.shape}")
    if (pairs < 1).any():
        raise ConfigError("length_pairs: every prompt and output length must be >= 1")
    parents: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    shared_flags: list[np.ndarray] = []
    num_nodes = 0
    level_first = 0
    previous_count = 0
    align = spec.align_tokens
    # Each level keeps at most its share of the window less one block, so that a whole shared
    # path leaves room for an own block whatever the spread drew (validation makes cap >= mean).
    room_shared = spec.max_prompt_tokens - align
    total_shared = max(1, spec.shared_prefix_tokens)
    # Shared levels, parents before children: level l's nodes are [level_first, +count).
    for level in range(spec.sharing_depth):
        if level == 0:
            count = spec.num_roots
            parent = np.full(count, -1, np.int64)
        else:
            count = previous_count * spec.fanout
            parent = level_first + np.arange(count, dtype=np.int64) // spec.fanout
        level_first = num_nodes
        parents.append(parent)
        mean = _round_up(spec.shared_tokens[level], align)
        lengths = _round_up(_lognormal_lengths(rng_tree, mean, spec.shared_tokens_cv, count), align)
        cap = max(align, room_shared * mean // total_shared // align * align)
        tokens.append(np.minimum(lengths, cap))
        shared_flags.append(np.ones(count, bool))
        num_nodes += count
        previous_count = count
    num_leaves = spec.num_shared_leaves
    turns = spec.turns_per_conversation
    num_conversations = -(-spec.num_requests // turns)
    if num_leaves:
        conversation_leaf = level_first + rng_tree.integers(0, num_leaves, num_conversations)
    else:
        conversation_leaf = np.full(num_conversations, -1, np.int64)
    draws = rng_lengths.integers(0, pairs.shape[0], spec.num_requests)
    user_tokens = pairs[draws, 0].astype(np.int64)
    if spec.user_tokens_scale != 1.0:
        user_tokens = np.maximum(np.rint(user_tokens * spec.user_tokens_scale), 1).astype(np.int64)
    answer_tokens = pairs[draws, 1].astype(np.int64)
    if spec.output_tokens_scale != 1.0:
        answer_tokens = np.maximum(np.rint(answer_tokens * spec.output_tokens_scale), 1)
    answer_tokens = np.minimum(answer_tokens, spec.max_output_tokens).astype(np.int64)
    # Turn t of a conversation: a node holding the previous answer and the new user message,
    # child of turn t - 1's node (turn 0's parent is the conversation's shared leaf).
    request_conversation = np.arange(spec.num_requests, dtype=np.int64) // turns
    request_turn = np.arange(spec.num_requests, dtype=np.int64) % turns
    own_tokens = user_tokens.copy()
    own_tokens[1:] += np.where(request_turn[1:] > 0, answer_tokens[:-1], 0)
    multi_turn = turns > 1
    if multi_turn:
        own_tokens = _round_up(own_tokens, align)
    own_parent = np.where(
        request_turn > 0,
        num_nodes + np.arange(spec.num_requests, dtype=np.int64) - 1,
        conversation_leaf[request_conversation],
    )
    all_parent = np.concatenate([*parents, own_parent]) if parents else own_parent
    all_tokens = np.concatenate([*tokens, own_tokens]) if tokens else own_tokens
    node_shared = (
        np.concatenate([*shared_flags, np.zeros(spec.num_requests, bool)])
        if shared_flags
        else np.zeros(spec.num_requests, bool)
    )
    # Starts follow parents (numbered first); then cut over-long prompts in their own segment.
    parent_list: list[int] = all_parent.tolist()
    token_list: list[int] = all_tokens.tolist()
    start_list: list[int] = [0] * len(parent_list)
    window = spec.max_prompt_tokens
    for node in range(len(parent_list)):
        up = parent_list[node]
        start = start_list[up] + token_list[up] if up >= 0 else 0
        if node >= num_nodes:
            room = window - start
            if multi_turn:
                room = room // align * align
                if room < align:
                    # A late turn whose history fills the window: the conversation is cut here
                    # and the request starts a fresh context under the shared prefix.
                    up = int(conversation_leaf[request_conversation[node - num_nodes]])
                    parent_list[node] = up
                    start = start_list[up] + token_list[up] if up >= 0 else 0
                    room = (window - start) // align * align
            token_list[node] = min(token_list[node], room)
        start_list[node] = start
    all_parent = np.asarray(parent_list, np.int64)
    all_tokens = np.asarray(token_list, np.int64)
    node_start = np.asarray(start_list, np.int64)
    node_aligned = node_shared | (multi_turn & (np.arange(all_parent.shape[0]) >= num_nodes))
    request_node = num_nodes + np.arange(spec.num_requests, dtype=np.int64)
    prompt = node_start[request_node] + all_tokens[request_node]
    outputs = answer_tokens
    if spec.max_total_tokens is not None:
        outputs = np.minimum(answer_tokens, spec.max_total_tokens - prompt)
    if num_leaves:
        group_of_request = conversation_leaf[request_conversation] - level_first
        group_prefix = (
            node_start[level_first : level_first + num_leaves]
            + all_tokens[level_first : level_first + num_leaves]
        )
    elif turns > 1:
        group_of_request = request_conversation
        group_prefix = np.zeros(num_conversations, np.int64)
    else:
        group_of_request = np.arange(spec.num_requests, dtype=np.int64)
        group_prefix = np.zeros(spec.num_requests, np.int64)
    # Renumber groups densely in order of first use, so that empty leaves leave no holes.
    used, dense = np.unique(group_of_request, return_inverse=True)
    order = rng_tree.permutation(spec.num_requests)
    return PrefixBatch(
        node_parent=all_parent,
        node_tokens=all_tokens,
        node_start=node_start,
        node_shared=node_shared,
        node_aligned=node_aligned,
        request_node=request_node[order],
        request_prompt_tokens=prompt[order],
        request_output_tokens=outputs[order],
        request_group=dense.astype(np.int64)[order],
        group_prefix_tokens=group_prefix[used].astype(np.int64),
    )
