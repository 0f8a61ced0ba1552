"""Groupwise-regret machinery shared by the LLM-serving environments.

Used by the PrefillChunk policies (``regret_prefill``) and meant for every environment built on
the shared engine (:mod:`schedgym.serving.engine`):

- :class:`OutputLengthPredictor`: a request's output length (decode tokens) predicted by a
  :class:`~schedgym.baselines.online_learning.GroupwiseOnlineRegressor` learned online from
  *completed*
  requests only (their output length is known once they finish; nothing else is read). Groups:
  everyone, one per prompt-length band (powers of two), and optional extra families (e.g. a
  request's priority). Feeds the shortest-predicted-job-first policies (``regret-sjf``).
- :class:`CompletedLengths` and :func:`redact_requests`: what a counterfactual snapshot may keep
  of the requests. At the knowledge cutoff (the moment feedback is computed) a policy knows the
  requests that have arrived (arrival time, prompt length), how many tokens each has produced,
  and the output length of those that have finished. A request that has not finished gets its
  conditional expected output length given what it has produced so far, estimated from the
  lengths of the completed ones; requests that have not arrived are dropped.
- :func:`rebuild_finish_heap`: after output lengths change in a snapshot, the engine's queue of
  decode completions is rebuilt (the engine keys it by output length when a request joins).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

import numpy as np

from schedgym.baselines.online_learning import Group, GroupFamily, GroupwiseOnlineRegressor
from schedgym.serving.engine import ServingInstance
from schedgym.serving.request import DECODE, Request

# Prior output length (tokens) before any request has completed: ShareGPT's median order.
PRIOR_OUTPUT_TOKENS = 256.0
# Squared errors are divided by this before the aggregator sees them (a 256-token error -> 1).
LENGTH_LOSS_SCALE = 256.0**2
TOKEN_SCALE = 1024.0


# ------------------------------------------------------------------ output-length prediction
def prompt_band(prompt_tokens: int) -> int:
    """The prompt-length band: ``floor(log2(prompt))`` capped to [5, 13] (32 .. 8192 tokens)."""
    return min(max(int(math.log2(max(prompt_tokens, 1))), 5), 13)


class RequestLengths(Protocol):
    """What output-length learning reads of a request: a live
    :class:`~schedgym.serving.request.Request` or a finished one's record
    (:class:`~schedgym.serving.records.FinishedRequest`)."""

    @property
    def request_id(self) -> int: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def finish_s(self) -> float: ...


def length_features(request: RequestLengths) -> np.ndarray:
    """``[1, prompt / 1024]``: each group's ridge learner fits a line in the prompt length."""
    return np.array([1.0, request.prompt_tokens / TOKEN_SCALE])


# A request's value in a group family (None: in no group of it).
RequestKey = Callable[[RequestLengths], Hashable | None]
# Default clip of predicted output lengths, tokens.
DEFAULT_MAX_OUTPUT_TOKENS = 8192.0


def _key_of_request(key: RequestKey, context: Mapping[str, Any]) -> Hashable | None:
    return key(context["request"])


class OutputLengthPredictor:
    """Output length of a request, learned online from completed requests only.

    Each completed request is one round of a :class:`GroupwiseOnlineRegressor` whose groups
    are everyone, one per prompt-length band (:func:`prompt_band`), and ``families`` (over the
    request: e.g. ``("priority", lambda r: r.priority)``). Before any round the
    prediction is :data:`PRIOR_OUTPUT_TOKENS`.

    Args:
        families: extra group families, ``(name, key)`` with ``key(request)`` the group value
            (None: in no group of the family).
        max_tokens: predictions are clipped to ``[1, max_tokens]``.
    """

    def __init__(
        self,
        families: Sequence[tuple[str, RequestKey]] = (),
        max_tokens: float = DEFAULT_MAX_OUTPUT_TOKENS,
    ) -> None:
        self.max_tokens = max_tokens
        self.regressor = GroupwiseOnlineRegressor(
            [Group("all", lambda c: True)],
            num_features=2,
            families=[
                GroupFamily("prompt_band", lambda c: prompt_band(c["request"].prompt_tokens)),
                *(GroupFamily(name, partial(_key_of_request, key)) for name, key in families),
            ],
            reg=1.0,
            bound=max_tokens,
            loss_scale=LENGTH_LOSS_SCALE,
        )
        self.seen: set[int] = set()

    @property
    def rounds(self) -> int:
        return self.regressor.rounds

    def learn(self, completed: Iterable[RequestLengths]) -> None:
        """One round per completed request not seen before (in the given order)."""
        for request in completed:
            if request.request_id in self.seen:
                continue
            if request.finish_s != request.finish_s:  # nan: not finished, never learnt from
                raise ValueError(f"learn: {request!r} has not finished")
            self.seen.add(request.request_id)
            self.regressor.update(
                {"request": request}, length_features(request), float(request.output_tokens)
            )

    def predict(self, request: RequestLengths) -> float:
        """Predicted output tokens of ``request`` (reads its prompt and priority only)."""
        if self.regressor.rounds == 0:
            return PRIOR_OUTPUT_TOKENS
        value = self.regressor.predict({"request": request}, length_features(request))
        return min(max(value, 1.0), self.max_tokens)


def sjf_key(
    predictor: OutputLengthPredictor, generated: Callable[[Request], int], prefill_chunk: int
) -> Callable[[Request], tuple[float, float, int]]:
    """Sort key of shortest predicted job first, in engine iterations.

    A request's job: ``ceil(remaining prompt / prefill_chunk)`` iterations of prefill (a chunk
    per iteration) plus its predicted remaining decode tokens (one per iteration; at least one
    for a request that has already produced more than predicted). Ties by arrival, then id.
    """

    def key(request: Request) -> tuple[float, float, int]:
        prefill = -(-request.remaining_prefill // max(prefill_chunk, 1))
        decode = max(predictor.predict(request) - generated(request), 1.0)
        return (prefill + decode, request.arrival_s, request.request_id)

    return key


# ------------------------------------------------------------------- snapshot redaction
class CompletedLengths:
    """Output lengths of the completed requests: conditional expectations for the others.

    ``expected_total(g)`` is ``E[output | output > g]`` over the completed requests (an
    empirical mean residual life); with no completed request above ``g``, ``g`` plus the mean
    completed length (or :data:`PRIOR_OUTPUT_TOKENS` before any completion).
    """

    def __init__(self, outputs: Iterable[int]) -> None:
        values = np.sort(np.fromiter(outputs, np.float64))
        self._sorted = values
        # _tail[i] = sum(values[i:]); _tail[n] = 0.
        self._tail = np.concatenate([np.cumsum(values[::-1])[::-1], [0.0]])
        self.mean = float(values.mean()) if values.size else PRIOR_OUTPUT_TOKENS

    def expected_total(self, generated: int) -> int:
        values = self._sorted
        index = bisect_right(values, generated)  # first completed length above generated
        count = values.size - index
        if count == 0:
            return round(generated + max(self.mean, 1.0))
        return max(round(self._tail[index] / count), generated + 1)


def redact_requests(
    requests: Iterable[Request],
    finished_ids: set[int],
    generated_at_cutoff: Callable[[int], int],
    lengths: CompletedLengths,
) -> None:
    """Give every request of a snapshot that had not finished by the cutoff its conditional
    expected output length (``generated_at_cutoff(id)``: tokens it had produced by then)."""
    for request in requests:
        if request.request_id in finished_ids:
            continue
        request.output_tokens = lengths.expected_total(generated_at_cutoff(request.request_id))


def rebuild_finish_heap(instance: ServingInstance, now_s: float) -> None:
    """Re-key ``instance``'s decode completions after output lengths changed in a snapshot
    (see :meth:`ServingInstance.rekey_decode_completions`)."""
    instance.rekey_decode_completions(now_s)


def decoding_generated(instance: ServingInstance, request: Request) -> int:
    """Tokens ``request`` has produced (decoding ones advance with the instance's counter)."""
    if request.state == DECODE:
        return instance.generated(request)
    return request.generated


def band(value: float, edges: Sequence[float]) -> int:
    """Index of the band of ``value`` for increasing ``edges`` (``value < edges[0]`` -> 0)."""
    return bisect_right(edges, value)
