"""Finished requests as compact columns: what an episode's metrics need, in bounded memory.

A :class:`~schedgym.serving.request.Request` costs about a kilobyte (its slots, token-time lists
and spans); a long episode (the Azure hour: 19,366 requests) cannot keep every finished one.
:class:`CompletedRequests` keeps, per finished request, its id, instance, priority, lengths and
three times in two numpy column blocks (64 bytes a request), the gaps between the tokens of
the requests of each priority class asked for (high priority by default; exact up to
:data:`TBT_EXACT_VALUES` values per class, then a :class:`~schedgym.core.metrics.QuantileSketch`),
and the last ``recent_limit`` request objects for rendering and inspection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from schedgym.core.buffers import GrowingArray
from schedgym.core.metrics import BoundedSample
from schedgym.serving.engine import ServingInstance
from schedgym.serving.metrics import request_tbt_s
from schedgym.serving.request import Request

# 2**17 float64 token gaps (1 MiB) per priority class are kept exactly.
TBT_EXACT_VALUES = 1 << 17
RECENT_REQUESTS = 512

_ID, _INSTANCE, _PRIORITY, _PROMPT, _OUTPUT = range(5)
_ARRIVAL, _FIRST_TOKEN, _FINISH = range(3)


class FinishedRequest(NamedTuple):
    """One finished request's record (what learners of output lengths read)."""

    request_id: int
    instance: int
    priority: int
    prompt_tokens: int
    output_tokens: int
    arrival_s: float
    first_token_s: float
    finish_s: float


class CompletedRequests:
    """Finished requests in completion order (see the module docstring).

    Args:
        instances: the engines the requests ran on (for the high-priority token gaps).
        recent_limit: finished request objects kept (the most recent ones).
    """

    def __init__(
        self, instances: Sequence[ServingInstance], recent_limit: int = RECENT_REQUESTS
    ) -> None:
        self.instances = list(instances)
        self._ints = GrowingArray(np.int64, width=5)
        self._times = GrowingArray(np.float64, width=3)
        # Token gaps per priority class (0 normal, 1 high), for the classes recorded.
        self.tbt_by_priority: dict[int, BoundedSample] = {}
        self.record_tbt(1)
        self.recent: deque[Request] = deque(maxlen=recent_limit)

    def __len__(self) -> int:
        return len(self._ints)

    def add(self, request: Request) -> None:
        """Record ``request``, which has just finished."""
        self._ints.append(
            (
                request.request_id,
                request.instance,
                request.priority,
                request.prompt_tokens,
                request.output_tokens,
            )
        )
        self._times.append((request.arrival_s, request.first_token_s, request.finish_s))
        sample = self.tbt_by_priority.get(1 if request.priority else 0)
        if sample is not None:
            sample.extend(request_tbt_s(request, self.instances))
        self.recent.append(request)

    def record_tbt(self, priority: int) -> None:
        """Also record the token gaps of priority class ``priority`` (0 or 1) from now on."""
        if priority not in (0, 1):
            raise ValueError(f"priority: must be 0 (normal) or 1 (high), got {priority}")
        self.tbt_by_priority.setdefault(priority, BoundedSample(TBT_EXACT_VALUES))

    @property
    def high_priority_tbt(self) -> BoundedSample:
        """Gaps between consecutive tokens of the finished high-priority requests."""
        return self.tbt_by_priority[1]

    # ------------------------------------------------------------------ columns
    def _int_column(self, index: int) -> np.ndarray:
        return self._ints.view()[:, index]

    def _time_column(self, index: int) -> np.ndarray:
        return self._times.view()[:, index]

    @property
    def request_ids(self) -> np.ndarray:
        return self._int_column(_ID)

    @property
    def instance(self) -> np.ndarray:
        """The instance each request finished on."""
        return self._int_column(_INSTANCE)

    @property
    def priority(self) -> np.ndarray:
        return self._int_column(_PRIORITY)

    @property
    def prompt_tokens(self) -> np.ndarray:
        return self._int_column(_PROMPT)

    @property
    def output_tokens(self) -> np.ndarray:
        return self._int_column(_OUTPUT)

    @property
    def arrival_s(self) -> np.ndarray:
        return self._time_column(_ARRIVAL)

    @property
    def first_token_s(self) -> np.ndarray:
        return self._time_column(_FIRST_TOKEN)

    @property
    def finish_s(self) -> np.ndarray:
        return self._time_column(_FINISH)

    def rows(self, start: int = 0) -> list[FinishedRequest]:
        """Records ``start`` onwards, in completion order."""
        ints = self._ints.view()[start:].tolist()
        times = self._times.view()[start:].tolist()
        return [FinishedRequest(*i, *t) for i, t in zip(ints, times, strict=True)]

    def copy_memo(self) -> dict[int, Any]:
        """``copy.deepcopy`` memo entries for a clone: the recent request objects are shared
        (a finished request never changes again), the deque itself copied shallowly."""
        memo: dict[int, Any] = {id(self.recent): deque(self.recent, maxlen=self.recent.maxlen)}
        for request in self.recent:
            memo[id(request)] = request
        return memo
