"""A request as the serving engine tracks it.

Token arithmetic (vLLM's): a request with ``P`` prompt tokens that has generated ``g`` output
tokens holds KV for ``kv = P + g - 1`` tokens (the last generated token's KV is written by the
next decode step), in ``ceil(kv / block_tokens)`` blocks. A decode step appends one token of KV,
so it needs a fresh block exactly when ``kv % block_tokens == 0``. A prefill of a request's whole
context produces its next token. Preemption by recompute drops the KV; the request re-queues and
later prefills ``P + g`` tokens (prompt and everything generated so far) to produce token
``g + 1``, so no generated token is lost or produced twice.
"""

from __future__ import annotations

# Request states.
WAITING = 0  # queued on an instance, no KV
PREFILL = 1  # admitted: KV blocks allocated, prompt (partly) prefilled
DECODE = 2  # generating one token per decode iteration
FINISHED = 3
DETACHED = 4  # paused for the last stage of a live migration (KV still held on the source)
PENDING = 5  # arrived, not yet dispatched to an instance

STATE_NAMES = ("waiting", "prefill", "decode", "finished", "detached", "pending")


class Request:
    """One inference request and its bookkeeping. Times in seconds, lengths in tokens.

    While a request decodes on an instance its counters advance implicitly with the instance's
    decode counter ``E`` (``generated = gen_offset + E``), so the engine never loops over its
    decoding requests per iteration; :meth:`ServingInstance.generated` reads the current value.
    """

    __slots__ = (
        "admitted_s",
        "arrival_s",
        "finish_s",
        "first_token_s",
        "gen_offset",
        "generated",
        "instance",
        "join_decode_index",
        "last_token_s",
        "migration",
        "num_migrations",
        "num_preemptions",
        "output_tokens",
        "prefill_emit_s",
        "prefill_target",
        "prefilled",
        "prefix_path",
        "priority",
        "prompt_tokens",
        "request_id",
        "shared_prefix_tokens",
        "spans",
        "state",
        "version",
    )

    def __init__(
        self,
        request_id: int,
        arrival_s: float,
        prompt_tokens: int,
        output_tokens: int,
        priority: int = 0,
        prefix_path: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.request_id = request_id
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.priority = priority
        # ((prefix node id, tokens), ...) from the root of a shared-prefix tree; see kv_cache.
        self.prefix_path = prefix_path
        self.state = PENDING
        self.instance = -1
        self.generated = 0  # output tokens so far (when not decoding; see gen_offset)
        self.gen_offset = 0  # generated - instance decode counter, while decoding
        self.join_decode_index = 0  # instance decode counter when it joined the decode batch
        self.prefill_target = prompt_tokens  # tokens the next (re)prefill must cover
        self.prefilled = 0  # of prefill_target, tokens whose KV is computed or cached
        self.shared_prefix_tokens = 0  # of the KV, tokens held in shared prefix blocks
        self.admitted_s = float("nan")  # first admission (scheduling delay = admitted - arrival)
        self.first_token_s = float("nan")
        self.last_token_s = float("nan")
        self.finish_s = float("nan")
        self.num_preemptions = 0
        self.num_migrations = 0
        # Tokens emitted by prefills (first token, and the token after each recompute).
        self.prefill_emit_s: list[float] = []
        # (instance id, first decode index, end decode index): the request emitted one token at
        # each of those decode iterations of that instance (ServingInstance.decode_end_times_s).
        self.spans: list[tuple[int, int, int]] = []
        self.migration: object | None = None  # the live migration moving it, if any
        self.version = 0  # bumped whenever it leaves a decode batch (lazy heap deletion)

    @property
    def remaining_prefill(self) -> int:
        """Tokens still to prefill before the request produces its next token."""
        return self.prefill_target - self.prefilled

    def __repr__(self) -> str:
        from schedgym.serving.request import STATE_NAMES

        return (
            f"Request(id={self.request_id}, {STATE_NAMES[self.state]}, prompt={self.prompt_tokens},"
            f" output={self.output_tokens}, instance={self.instance})"
        )
