"""Admission that keeps a request's own cached prefix safe from eviction (an engine extension).

:meth:`ServingInstance.admit_next` allocates a request's blocks *before* it references the
request's resident prefix nodes, and :meth:`~ServingInstance.can_admit` counts those nodes'
blocks as evictable room. When the allocation has to evict, the LRU victim can be a node of the
very prefix the request was about to reuse: the node is dropped, then re-created by the prefix
cache without its blocks being allocated, and the block count drifts (a later release raises
"KV cache released more blocks than it holds"). This subclass, used by PrefixBatch, pins the
request's resident path before allocating and leaves its blocks out of the admission room. The
fix belongs in the engine itself; this module keeps it separate until it moves there.
"""

from __future__ import annotations

from schedgym.serving.engine import ServingInstance
from schedgym.serving.kv_cache import PrefixNode
from schedgym.serving.request import Request


class PrefixSafeInstance(ServingInstance):
    """A :class:`ServingInstance` whose admissions never evict their own prefix."""

    def own_evictable_blocks(self, request: Request) -> int:
        """Blocks of ``request``'s resident, unreferenced prefix nodes (room it cannot use)."""
        prefix = self.kv.prefix
        if prefix is None or not request.prefix_path:
            return 0
        nodes = prefix.nodes
        blocks = 0
        for node_id, _ in request.prefix_path:
            node = nodes.get(node_id)
            if node is not None and node.refcount == 0:
                blocks += node.blocks
        return blocks

    def can_admit(self) -> bool:
        if not self.waiting or self.num_running() >= self.max_num_seqs:
            return False
        head = self.waiting[0]
        need = self.admission_blocks(head) + self.watermark_blocks
        return need <= self.kv.available_blocks() - self.own_evictable_blocks(head)

    def admit_next(self) -> Request:
        request = self.waiting[0]
        prefix = self.kv.prefix
        pinned: list[PrefixNode] = []
        if prefix is not None and request.prefix_path:
            for node_id, _ in request.prefix_path:
                node = prefix.nodes.get(node_id)
                if node is not None and node.refcount == 0:
                    node.refcount = 1  # not evictable while the allocation runs
                    prefix.evictable_blocks -= node.blocks
                    pinned.append(node)
        try:
            return super().admit_next()
        finally:
            # The prefix cache's acquire has referenced every path node by now (or, on an
            # error, nothing changed): drop the temporary pin, keeping the evictable count.
            for node in pinned:
                node.refcount -= 1
                if node.refcount == 0:
                    prefix.evictable_blocks += node.blocks  # type: ignore[union-attr]
