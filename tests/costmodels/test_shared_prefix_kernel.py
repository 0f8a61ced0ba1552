"""The cascade (shared-prefix) attention kernel: its fit to published measurements and its error,
the cost model's choice between cascade and plain kernels, and the engine's group bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.costmodels.calibration.shared_prefix_fit import (
    fit_shared_prefix_kernel,
    kernel_points,
    kernel_report,
)
from schedgym.costmodels.inference import get_cost_model, shipped_shared_prefix_kernel
from schedgym.serving.engine import DecodeTimer, ServingInstance
from schedgym.serving.kv_cache import KVCache
from schedgym.serving.request import Request
from schedgym.serving.schedulers import make_scheduler

COST = get_cost_model("Mistral-7B", "A100")


def test_table_has_provenance_and_both_kernels():
    points = kernel_points()
    kinds = {p.kernel for p in points}
    assert kinds == {"cascade", "no_cascade", "speedup_claim"}
    assert all(p.source for p in points)
    timed = [p for p in points if p.kernel != "speedup_claim"]
    assert all(p.time_s > 0 for p in timed)


def test_shipped_coefficients_are_the_fit():
    fitted, _ = fit_shared_prefix_kernel()
    shipped = shipped_shared_prefix_kernel()
    assert fitted.fixed_s == pytest.approx(shipped.fixed_s, rel=1e-3)
    assert fitted.overlap_sharpness == pytest.approx(shipped.overlap_sharpness, rel=1e-2)


def test_kernel_error_on_published_measurements():
    report = kernel_report()
    rows = report["rows"]
    # Fitted cascade rows: within 10% on average, every row within 60% (the 4,096-token row is
    # predicted slow: the measured kernel's multi-query pass beats the calibrated prefill rate).
    assert report["cascade_mape_pct"] < 10.0
    assert all(abs(r["error"]) < 0.6 for r in rows if r["kernel"] == "cascade")
    # Unfitted: the calibrated decode law prices the plain kernel re-reading a shared prefix
    # per request within 11% from 256 tokens on (the 128-token row runs from cache).
    assert report["no_cascade_mape_pct_prefix_ge_256"] < 10.0
    assert all(
        abs(r["error"]) < 0.11
        for r in rows
        if r["kernel"] == "no_cascade" and r["prefix_tokens"] >= 256
    )
    # Out of sample: the 2024 blog's 26x on H100 comes out within a factor of two (higher).
    (claim,) = [r for r in rows if r["kernel"] == "speedup_claim"]
    assert 1.0 < claim["predicted"] / claim["published"] < 2.0


def test_cascade_reads_a_shared_prefix_once_and_is_used_only_when_faster():
    n, prefix, suffix = 64, 3000, 200
    total = n * (prefix + suffix)
    plain = COST.decode_attention_s(n, total)
    work = COST.shared_prefix_group_layer_s(n, prefix)
    shared = COST.decode_attention_shared_s(n, total, n * prefix, work)
    # Roughly the suffixes' share of the KV, plus the fixed cost.
    assert shared < 0.25 * plain
    # Two requests sharing a short prefix: the fixed cost outweighs the saving; plain kernel.
    small = COST.decode_attention_shared_s(
        2, 2 * 80, 2 * 32, COST.shared_prefix_group_layer_s(2, 32)
    )
    assert small == COST.decode_attention_s(2, 160)


def test_vectorised_decode_times_with_sharing_match_the_cost_model():
    timer = DecodeTimer(COST)
    for n, first, shared in ((4, 9000, 8000), (64, 250_000, 192_000), (3, 500, 96)):
        work = COST.shared_prefix_group_layer_s(n, shared // n)
        times = timer.times_s(n, first, 40, shared, work)
        scalar = [COST.time_from_summary_s(n, first + n * i, (), shared, work) for i in range(40)]
        np.testing.assert_allclose(times, scalar, rtol=1e-12)
        short = timer.times_s(n, first, 5, shared, work)
        np.testing.assert_allclose(short, scalar[:5], rtol=1e-12)


def _run_group(sharing: bool, members: int, paths) -> tuple[float, ServingInstance]:
    kv = KVCache(4000, prefix_caching=True)
    instance = ServingInstance(
        0, COST, kv, make_scheduler("sarathi", 2048), prefix_sharing_attention=sharing
    )
    requests = [
        Request(i, 0.0, 2048 + 64, 200, prefix_path=paths[i % len(paths)]) for i in range(members)
    ]
    for request in requests:
        instance.add_request(request, 0.0)
    while instance.next_event_s < float("inf"):
        instance.on_event(instance.next_event_s)
    assert len(instance.finished) == members
    return max(r.finish_s for r in requests), instance


def test_engine_reads_a_group_prefix_once_per_iteration():
    same = [((1, 1024), (2, 1024))]
    plain_s, _ = _run_group(False, 16, same)
    shared_s, instance = _run_group(True, 16, same)
    assert shared_s < 0.8 * plain_s
    # Bookkeeping returns to empty once every request has left the decode batch.
    assert instance.shared_decode_kv_tokens == 0
    assert instance.shared_group_work_layer_s == 0.0
    # Requests with distinct prefixes share nothing: identical timing with the option on.
    distinct = [((10 + i, 1024), (100 + i, 1024)) for i in range(16)]
    assert _run_group(True, 16, distinct)[0] == _run_group(False, 16, distinct)[0]
