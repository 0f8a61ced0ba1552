"""Paged KV-cache accounting (vLLM's PagedAttention blocks) and a shared-prefix cache.

:class:`KVCache` counts an instance's blocks: ``capacity_blocks`` in all, ``used_blocks`` held by
requests, reserved for incoming migrations, or resident in the prefix cache. The engine never
tracks individual block ids: a request's private blocks follow from its KV length
(``ceil(kv / block_tokens)`` minus its shared prefix blocks), which is exact for paged
allocation and keeps the hot path free of per-block work.

Prefix sharing (the extension point PrefixBatch builds on): a request may carry a
``prefix_path``, the chain ``((node id, tokens), ...)`` of a prefix tree from its root (a shared
system prompt, then a few-shot template, ...). Every node's tokens are a multiple of the block
size, so shared blocks are whole blocks. :class:`PrefixCache` keeps the nodes' KV resident with a
reference count per node: a request admitted while a prefix of its path is resident reuses it (its
prefill starts after the cached tokens) and references the nodes; the missing nodes are allocated
as new shared blocks. When the last referencing request leaves, a node stays resident but
evictable; :meth:`KVCache.allocate` evicts unreferenced leaves, least recently used first, when it
needs room (vLLM's automatic prefix caching with LRU eviction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schedgym.core.errors import ConfigError

BLOCK_TOKENS = 16


@dataclass
class PrefixNode:
    """A resident prefix-tree node: ``blocks`` of KV shared by ``refcount`` requests."""

    node_id: int
    parent: int  # -1 for a child of the root
    blocks: int
    depth: int
    refcount: int = 0
    last_used_s: float = 0.0
    children: int = 0  # resident children


class PrefixCache:
    """Resident prefix-tree nodes with reference counts and LRU eviction of unreferenced leaves."""

    def __init__(self, block_tokens: int = BLOCK_TOKENS) -> None:
        self.block_tokens = block_tokens
        self.nodes: dict[int, PrefixNode] = {}
        self.resident_blocks = 0
        self.evictable_blocks = 0  # resident blocks of nodes nobody references
        self.hit_tokens = 0  # prefill tokens served from the cache, cumulative
        self.miss_tokens = 0  # prefix tokens that had to be computed, cumulative

    def _check_path(self, path: Sequence[tuple[int, int]]) -> None:
        for node_id, tokens in path:
            if tokens <= 0 or tokens % self.block_tokens:
                raise ConfigError(
                    f"prefix_path: node {node_id} has {tokens} tokens; prefix nodes must be a "
                    f"positive multiple of the block size {self.block_tokens}"
                )

    def lookup_tokens(self, path: Sequence[tuple[int, int]]) -> int:
        """Tokens of ``path``'s longest resident prefix (no reference taken)."""
        cached = 0
        for node_id, tokens in path:
            if node_id not in self.nodes:
                break
            cached += tokens
        return cached

    def new_blocks_for(self, path: Sequence[tuple[int, int]]) -> int:
        """Blocks :meth:`acquire` would allocate for ``path``'s nodes that are not resident."""
        return sum(t for n, t in path if n not in self.nodes) // self.block_tokens

    def unreferenced_blocks(self, path: Sequence[tuple[int, int]]) -> int:
        """Blocks of ``path``'s resident nodes that nobody references: evictable room that a
        request on ``path`` cannot use, since admitting it references them."""
        nodes = self.nodes
        blocks = 0
        for node_id, _ in path:
            node = nodes.get(node_id)
            if node is not None and node.refcount == 0:
                blocks += node.blocks
        return blocks

    def acquire(self, path: Sequence[tuple[int, int]], now_s: float) -> tuple[int, int]:
        """Reference every node of ``path``, creating the missing ones.

        Returns:
            ``(cached_tokens, new_blocks)``: tokens of the longest prefix that was already
            resident (their prefill is skipped) and blocks the new nodes occupy (the caller
            must have made room for them in the :class:`KVCache`).
        """
        self._check_path(path)
        cached = 0
        still_cached = True
        new_blocks = 0
        parent = -1
        for depth, (node_id, tokens) in enumerate(path):
            node = self.nodes.get(node_id)
            if node is None:
                still_cached = False
                node = PrefixNode(node_id, parent, tokens // self.block_tokens, depth)
                self.nodes[node_id] = node
                self.resident_blocks += node.blocks
                new_blocks += node.blocks
                if parent >= 0:
                    self.nodes[parent].children += 1
            else:
                if still_cached:
                    cached += tokens
                if node.refcount == 0:
                    self.evictable_blocks -= node.blocks
            node.refcount += 1
            node.last_used_s = now_s
            parent = node_id
        total = sum(tokens for _, tokens in path)
        self.hit_tokens += cached
        self.miss_tokens += total - cached
        return cached, new_blocks

    def release(self, path: Sequence[tuple[int, int]], now_s: float) -> None:
        """Drop one reference from every node of ``path`` (nodes stay resident, evictable)."""
        for node_id, _ in path:
            node = self.nodes[node_id]
            node.refcount -= 1
            node.last_used_s = now_s
            if node.refcount == 0:
                self.evictable_blocks += node.blocks

    def evict(self, blocks_needed: int) -> int:
        """Evict unreferenced leaves, least recently used first, until ``blocks_needed`` blocks
        are freed or none is left; returns the blocks freed."""
        freed = 0
        while freed < blocks_needed:
            leaves = [n for n in self.nodes.values() if n.refcount == 0 and n.children == 0]
            if not leaves:
                break
            victim = min(leaves, key=lambda n: (n.last_used_s, -n.depth, n.node_id))
            del self.nodes[victim.node_id]
            if victim.parent >= 0 and victim.parent in self.nodes:
                self.nodes[victim.parent].children -= 1
            self.resident_blocks -= victim.blocks
            self.evictable_blocks -= victim.blocks
            freed += victim.blocks
        return freed


class KVCache:
    """Block accounting of one instance's paged KV cache.

    Args:
        capacity_blocks: blocks that fit in GPU memory after weights and activations (from
            :func:`schedgym.costmodels.inference.kv_blocks_capacity`).
        block_tokens: tokens per block (vLLM's 16).
        prefix_caching: keep a :class:`PrefixCache` of shared prefix blocks.
    """

    __slots__ = ("block_tokens", "capacity_blocks", "peak_used_blocks", "prefix", "used_blocks")

    def __init__(
        self, capacity_blocks: int, block_tokens: int = BLOCK_TOKENS, prefix_caching: bool = False
    ) -> None:
        if isinstance(capacity_blocks, bool) or not isinstance(capacity_blocks, int):
            raise ConfigError(f"capacity_blocks: must be an integer, got {capacity_blocks!r}")
        if capacity_blocks < 1:
            raise ConfigError(f"capacity_blocks: must be >= 1, got {capacity_blocks}")
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.used_blocks = 0
        self.peak_used_blocks = 0
        self.prefix: PrefixCache | None = PrefixCache(block_tokens) if prefix_caching else None

    @property
    def free_blocks(self) -> int:
        """Blocks not held by anything (evictable prefix blocks count as used)."""
        return self.capacity_blocks - self.used_blocks

    def available_blocks(self) -> int:
        """Free blocks plus the evictable prefix-cache blocks."""
        extra = self.prefix.evictable_blocks if self.prefix is not None else 0
        return self.capacity_blocks - self.used_blocks + extra

    def blocks_for_tokens(self, tokens: int) -> int:
        """Blocks ``tokens`` of KV occupy."""
        return -(-tokens // self.block_tokens)

    def allocate(self, blocks: int) -> bool:
        """Take ``blocks`` (evicting unreferenced prefix blocks if needed); False if they do not
        fit, in which case nothing changes."""
        if blocks > self.capacity_blocks - self.used_blocks:
            if self.prefix is None or blocks > self.available_blocks():
                return False
            freed = self.prefix.evict(blocks - (self.capacity_blocks - self.used_blocks))
            self.used_blocks -= freed
        self.used_blocks += blocks
        if self.used_blocks > self.peak_used_blocks:
            self.peak_used_blocks = self.used_blocks
        return True

    def release(self, blocks: int) -> None:
        """Return ``blocks`` to the free pool."""
        self.used_blocks -= blocks
        if self.used_blocks < 0:
            raise AssertionError("KV cache released more blocks than it holds")


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative integers."""
    return -(-a // b)
