"""A discrete-event queue: a binary heap ordered by (time, insertion order).

Ties in time are broken by a per-instance counter, never a global one, so two simulators in one
process (or a pickled copy) never influence each other's order and a run is reproducible.
"""

from __future__ import annotations

import heapq
from typing import Any


class EventQueue:
    """Min-heap of ``(time, seq, kind, payload)`` entries.

    ``kind`` is a small int chosen by the simulator; ``payload`` is anything. Events at equal time
    pop in insertion order (FIFO), which makes the simulation deterministic.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0

    def push(self, time: float, kind: int, payload: Any = None) -> None:
        """Schedule an event at ``time`` (any unit the simulator uses consistently)."""
        heapq.heappush(self._heap, (time, self._seq, kind, payload))
        self._seq += 1

    def pop(self) -> tuple[float, int, Any]:
        """Remove and return the earliest ``(time, kind, payload)``; raises IndexError if empty."""
        time, _, kind, payload = heapq.heappop(self._heap)
        return time, kind, payload

    def pop_due(self, time: float) -> tuple[float, int, Any] | None:
        """:meth:`pop` if the earliest event is at or before ``time``, else None (one call for
        a driver's "while the next event is due" loop)."""
        heap = self._heap
        if heap and heap[0][0] <= time:
            at, _, kind, payload = heapq.heappop(heap)
            return at, kind, payload
        return None

    def peek_time(self) -> float:
        """Time of the earliest event, or ``inf`` when the queue is empty."""
        return self._heap[0][0] if self._heap else float("inf")

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def clear(self) -> None:
        """Drop every pending event (the counter keeps counting, which is harmless)."""
        self._heap.clear()
