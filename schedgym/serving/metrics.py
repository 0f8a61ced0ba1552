"""Latency summaries of served requests: TTFT, TBT and end-to-end, at p50 and p99.

TTFT (time to first token) is first token minus arrival; end-to-end latency is the last token
minus arrival; TBT (time between tokens) is every gap between two consecutive output tokens of a
request, pooled over requests (so a request with many tokens weighs more, as in Sarathi-Serve and
Llumnix). TBT is assembled from each instance's decode-iteration log, weighted by how many
requests emitted a token in two consecutive decode iterations, plus the individual gaps of
requests resuming a decode stream (after a prefill, a migration or a recompute).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schedgym.core.metrics import QuantileSketch, percentile, percentile_of_counts
from schedgym.serving.engine import ServingInstance
from schedgym.serving.request import Request


def tbt_samples_s(instances: Sequence[ServingInstance]) -> np.ndarray:
    """Every time-between-tokens gap (s) of every request on ``instances``, unordered."""
    parts = []
    for instance in instances:
        gaps, counts = instance.tbt_weights()
        parts.append(np.repeat(gaps, counts))
        parts.append(np.asarray(instance.tbt_individual_s, np.float64))
    return np.concatenate(parts) if parts else np.zeros(0)


def tbt_counts_s(instances: Sequence[ServingInstance]) -> tuple[np.ndarray, np.ndarray]:
    """``(gaps_s, counts)``: :func:`tbt_samples_s` as distinct gaps and how many samples each
    stands for (O(decode iterations) memory instead of O(tokens))."""
    values, counts = [], []
    for instance in instances:
        gaps, weights = instance.tbt_weights()
        values.append(gaps)
        counts.append(weights)
        individual = np.asarray(instance.tbt_individual_s, np.float64)
        values.append(individual)
        counts.append(np.ones(individual.size, np.int64))
    if not values:
        return np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(values), np.concatenate(counts).astype(np.int64)


def pooled_tbt_percentiles(
    instances: Sequence[ServingInstance], qs: Sequence[float]
) -> list[float]:
    """Percentiles ``qs`` of the TBT gaps pooled over ``instances``: exact (numpy's, bit for
    bit) while every instance keeps its exact logs, else from their merged sketches (relative
    error 0.1%; see ``ServingInstance``'s ``exact_log_iterations``)."""
    if all(instance.tbt_exact for instance in instances):
        gaps, counts = tbt_counts_s(instances)
        return [percentile_of_counts(gaps, counts, q) for q in qs]
    sketch = QuantileSketch()
    for instance in instances:
        sketch.merge(instance.tbt_sketch())
    return [sketch.percentile(q) for q in qs]


def latency_summary(
    ttft_s: np.ndarray,
    e2e_s: np.ndarray,
    instances: Sequence[ServingInstance] | None = None,
    suffix: str = "",
) -> dict[str, float]:
    """``ttft_p50_s``, ``ttft_p99_s``, ``e2e_p50_s``, ``e2e_p99_s`` (and the ``tbt`` pair when
    ``instances`` is given, see :func:`pooled_tbt_percentiles`) of the requests whose times to
    first token and end-to-end latencies are ``ttft_s`` and ``e2e_s``, each key with
    ``suffix`` appended; nan when empty."""
    out = {
        f"ttft_p50_s{suffix}": percentile(ttft_s, 50),
        f"ttft_p99_s{suffix}": percentile(ttft_s, 99),
        f"e2e_p50_s{suffix}": percentile(e2e_s, 50),
        f"e2e_p99_s{suffix}": percentile(e2e_s, 99),
    }
    if instances is not None:
        # The pooled sample has one entry per output token: percentiles from counts instead.
        p50, p99 = pooled_tbt_percentiles(instances, (50, 99))
        out[f"tbt_p50_s{suffix}"] = p50
        out[f"tbt_p99_s{suffix}"] = p99
    return out


def request_tbt_s(request: Request, instances: Sequence[ServingInstance]) -> np.ndarray:
    """The gaps (s) between consecutive output tokens of one request."""
    return np.diff(instances[0].token_times_s(request, list(instances)))
