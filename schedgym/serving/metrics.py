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

from schedgym.core.metrics import percentile, percentile_of_counts
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


def latency_summary(
    requests: Sequence[Request],
    instances: Sequence[ServingInstance] | None = None,
    suffix: str = "",
) -> dict[str, float]:
    """``ttft_p50_s``, ``ttft_p99_s``, ``e2e_p50_s``, ``e2e_p99_s`` (and the ``tbt`` pair when
    ``instances`` is given) of ``requests``, each key with ``suffix`` appended; nan when empty."""
    ttft = np.array([r.first_token_s - r.arrival_s for r in requests], np.float64)
    e2e = np.array([r.finish_s - r.arrival_s for r in requests], np.float64)
    out = {
        f"ttft_p50_s{suffix}": percentile(ttft, 50),
        f"ttft_p99_s{suffix}": percentile(ttft, 99),
        f"e2e_p50_s{suffix}": percentile(e2e, 50),
        f"e2e_p99_s{suffix}": percentile(e2e, 99),
    }
    if instances is not None:
        # The pooled sample has one entry per output token: percentiles from counts instead.
        gaps, counts = tbt_counts_s(instances)
        out[f"tbt_p50_s{suffix}"] = percentile_of_counts(gaps, counts, 50)
        out[f"tbt_p99_s{suffix}"] = percentile_of_counts(gaps, counts, 99)
    return out


def request_tbt_s(request: Request, instances: Sequence[ServingInstance]) -> np.ndarray:
    """The gaps (s) between consecutive output tokens of one request."""
    return np.diff(instances[0].token_times_s(request, list(instances)))
