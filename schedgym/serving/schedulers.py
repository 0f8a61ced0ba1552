"""Batch composition policies: what one engine iteration runs.

Every iteration the engine asks its scheduler for a :class:`BatchPlan`: whether the running
decodes take part, and which prefill chunks ride along. Schedulers use the instance's helpers:
:meth:`~schedgym.serving.engine.ServingInstance.prepare_decode` (make room for one more token of
every decode, preempting the newest running request when blocks run out),
:meth:`~schedgym.serving.engine.ServingInstance.can_admit` and
:meth:`~schedgym.serving.engine.ServingInstance.admit_next` (move the head of the queue in, its
prompt's blocks allocated), and read ``prefilling`` (admitted, partly prefilled requests).

Contract: a plan without prefills must stay the plan while the instance only decodes, i.e. until
a request arrives, completes, is preempted or migrates. All four policies here satisfy it
(admission depends on the queue and free blocks, and decoding only consumes blocks), which lets
the engine fast-forward decode-only stretches. A policy that changes its mind on its own (a
learning agent picking a budget every iteration) runs the engine with ``fast_forward=False``.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from schedgym.core.errors import ConfigError
from schedgym.serving.request import Request

DEFAULT_MAX_BATCH_TOKENS = 4096


class BatchPlan:
    """One iteration's batch: every running decode (if ``decode``) plus ``prefills``, a list of
    ``(request, chunk tokens)``; a chunk's cached context is the request's ``prefilled`` count."""

    __slots__ = ("decode", "prefills")

    def __init__(self, decode: bool, prefills: list[tuple[Request, int]] | None = None) -> None:
        self.decode = decode
        self.prefills: list[tuple[Request, int]] = prefills if prefills is not None else []

    @property
    def empty(self) -> bool:
        return not self.decode and not self.prefills

    def prefill_tokens(self) -> int:
        return sum(chunk for _, chunk in self.prefills)


class BatchScheduler(Protocol):
    """Decides each iteration's batch on a :class:`~schedgym.serving.engine.ServingInstance`."""

    name: str

    def plan(self, instance: ServingInstanceView) -> BatchPlan: ...


class ServingInstanceView(Protocol):
    """The part of the engine a scheduler uses."""

    waiting: deque[Request]
    prefilling: list[Request]
    num_decoding: int
    max_batch_tokens: int

    def prepare_decode(self) -> bool: ...

    def can_admit(self) -> bool: ...

    def admit_next(self) -> Request: ...

    def num_running(self) -> int: ...


class VLLMScheduler:
    """vLLM (Kwon et al., SOSP 2023): prefill-first. When queued requests fit, an iteration
    prefills whole prompts (up to ``max_batch_tokens``, at least one) and the decodes pause;
    otherwise every running request decodes."""

    name = "vllm"

    def plan(self, instance: ServingInstanceView) -> BatchPlan:
        prefills: list[tuple[Request, int]] = []
        tokens = 0
        while instance.can_admit():
            head = instance.admit_next()
            chunk = head.remaining_prefill
            prefills.append((head, chunk))
            tokens += chunk
            if tokens >= instance.max_batch_tokens or not _head_fits_tokens(instance, tokens):
                break
        if prefills:
            return BatchPlan(False, prefills)
        return BatchPlan(instance.prepare_decode())


def _head_fits_tokens(instance: ServingInstanceView, tokens: int) -> bool:
    waiting = instance.waiting
    return bool(waiting) and tokens + waiting[0].remaining_prefill <= instance.max_batch_tokens


class OrcaScheduler:
    """Orca (Yu et al., OSDI 2022): iteration-level scheduling; whole prefills of newly
    admitted requests run in the same iteration as every running decode (up to
    ``max_batch_tokens`` tokens in all, at least one prefill)."""

    name = "orca"

    def plan(self, instance: ServingInstanceView) -> BatchPlan:
        decode = instance.prepare_decode()
        tokens = instance.num_decoding if decode else 0
        return BatchPlan(decode, _admit_whole_prompts(instance, tokens))


def _admit_whole_prompts(instance: ServingInstanceView, tokens: int) -> list[tuple[Request, int]]:
    """Admit queued requests, whole prompts, while the iteration's ``tokens`` plus theirs stay
    within ``max_batch_tokens`` (at least one is admitted when any can be): Orca's and
    FasterTransformer's batch formation."""
    prefills: list[tuple[Request, int]] = []
    while instance.can_admit():
        if prefills and tokens + instance.waiting[0].remaining_prefill > instance.max_batch_tokens:
            break
        head = instance.admit_next()
        prefills.append((head, head.remaining_prefill))
        tokens += head.remaining_prefill
    return prefills


class FasterTransformerScheduler:
    """FasterTransformer: request-level batching. A batch is admitted only when the instance is
    empty (whole prompts prefilled together), then decodes until every request in it is done."""

    name = "fastertransformer"

    def plan(self, instance: ServingInstanceView) -> BatchPlan:
        if instance.num_running() == 0:
            prefills = _admit_whole_prompts(instance, 0)
            if prefills:
                return BatchPlan(False, prefills)
        return BatchPlan(instance.prepare_decode())


class SarathiScheduler:
    """Sarathi-Serve (Agrawal et al., OSDI 2024): stall-free batching with a token budget.

    Every running decode (one token each) comes first, then the ongoing partial prefills, then
    new requests; each prefill chunk is ``min(remaining prompt, budget left)``. ``token_budget``
    may be changed between iterations (0: decode-only); set it at construction for a fixed one.
    """

    name = "sarathi"

    def __init__(self, token_budget: int = 512) -> None:
        self.token_budget = token_budget
        self._check()

    def _check(self) -> None:
        budget = self.token_budget
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ConfigError(f"token_budget: must be an integer >= 0, got {budget!r}")

    def plan(self, instance: ServingInstanceView) -> BatchPlan:
        decode = instance.prepare_decode()
        left = self.token_budget - (instance.num_decoding if decode else 0)
        prefills: list[tuple[Request, int]] = []
        for request in instance.prefilling:
            if left <= 0:
                break
            chunk = min(request.remaining_prefill, left)
            prefills.append((request, chunk))
            left -= chunk
        while left > 0 and instance.can_admit():
            head = instance.admit_next()
            chunk = min(head.remaining_prefill, left)
            prefills.append((head, chunk))
            left -= chunk
        return BatchPlan(decode, prefills)


SCHEDULERS = ("vllm", "orca", "fastertransformer", "sarathi")


def make_scheduler(name: str, token_budget: int = 512) -> BatchScheduler:
    """A scheduler by name (``vllm``, ``orca``, ``fastertransformer``, ``sarathi``)."""
    if name == "vllm":
        return VLLMScheduler()
    if name == "orca":
        return OrcaScheduler()
    if name == "fastertransformer":
        return FasterTransformerScheduler()
    if name == "sarathi":
        return SarathiScheduler(token_budget)
    raise ConfigError(f"scheduler: must be one of {list(SCHEDULERS)}, got {name!r}")
