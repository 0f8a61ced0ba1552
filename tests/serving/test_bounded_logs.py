"""Bounded memory for long serving runs: the quantile sketch, the exact-then-sketched sample, the
engine's bounded decode logs, and the compact records of finished requests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedgym.core.buffers import GrowingArray
from schedgym.core.metrics import BoundedSample, QuantileSketch
from schedgym.costmodels.inference import get_cost_model, kv_migration_time_s
from schedgym.serving.cluster import ServingCluster
from schedgym.serving.engine import ServingInstance
from schedgym.serving.kv_cache import KVCache
from schedgym.serving.metrics import latency_summary, pooled_tbt_percentiles
from schedgym.serving.request import Request
from schedgym.serving.schedulers import make_scheduler

MODEL, GPU = "Llama-2-7B", "A100"
COST = get_cost_model(MODEL, GPU)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(1e-5, 1e3), min_size=1, max_size=300),
    weights=st.lists(st.integers(0, 50), min_size=300, max_size=300),
    q=st.floats(0, 100),
)
def test_sketch_percentile_is_within_its_relative_error(values, weights, q):
    counts = np.array(weights[: len(values)])
    if counts.sum() == 0:
        counts[0] = 1
    sketch = QuantileSketch(relative_accuracy=1e-3)
    sketch.add(values, counts)
    exact = np.percentile(np.repeat(values, counts), q)
    assert sketch.count == counts.sum()
    assert abs(sketch.percentile(q) - exact) <= 1e-3 * exact * (1 + 1e-9)


def test_sketch_zero_nan_clamp_merge_and_errors():
    sketch = QuantileSketch()
    sketch.add([0.0, 0.0, 1.0])
    assert sketch.percentile(0) == 0.0 and sketch.zero_count == 2
    other = QuantileSketch()
    other.add([2e6])  # above max_value: clamped and counted
    sketch.merge(other)
    assert sketch.clamped == 1 and sketch.count == 4
    assert sketch.percentile(100) == pytest.approx(1e6, rel=1e-3)
    sketch.add([float("nan")])
    assert np.isnan(sketch.percentile(50))
    assert np.isnan(QuantileSketch().percentile(50))
    with pytest.raises(ValueError, match="values"):
        QuantileSketch().add([-1.0])
    with pytest.raises(ValueError, match="relative_accuracy"):
        QuantileSketch(relative_accuracy=0.7)
    with pytest.raises(ValueError, match="merge"):
        QuantileSketch().merge(QuantileSketch(relative_accuracy=1e-2))


def test_bounded_sample_is_exact_until_its_limit_then_sketched():
    rng = np.random.default_rng(0)
    values = rng.lognormal(-3.0, 1.0, 5000)
    small = BoundedSample(exact_limit=5000)
    small.extend(values[:2500])
    small.extend(values[2500:])
    assert small.exact and small.percentile(99) == np.percentile(values, 99)
    bounded = BoundedSample(exact_limit=1000)
    for chunk in np.split(values, 10):
        bounded.extend(chunk)
    assert not bounded.exact and len(bounded) == 5000
    for q in (50, 99):
        assert bounded.percentile(q) == pytest.approx(np.percentile(values, q), rel=1e-3)


def test_growing_array_discard_first():
    buffer = GrowingArray(np.float64)
    buffer.extend(np.arange(1000.0))
    buffer.discard_first(990)
    np.testing.assert_array_equal(buffer.view(), np.arange(990.0, 1000.0))
    buffer.append(1000.0)
    assert buffer.view()[-1] == 1000.0 and len(buffer) == 11
    assert buffer.nbytes < 1000 * 8


def _run(exact_log_iterations, seed=0, num=3, requests_count=150, migrate=True):
    instances = [
        ServingInstance(
            i,
            COST,
            KVCache(300),
            make_scheduler("vllm"),
            exact_log_iterations=exact_log_iterations,
        )
        for i in range(num)
    ]
    cluster = ServingCluster(instances, lambda b, s, d: kv_migration_time_s(MODEL, GPU, b))
    rng = np.random.default_rng(seed)
    t = 0.0
    for k in range(requests_count):
        t += rng.exponential(0.05)
        request = Request(k, t, int(rng.integers(16, 1200)), int(rng.integers(2, 300)), k % 4 == 0)
        cluster.advance_to(t)
        cluster.dispatch(request, k % num)
        if migrate and k % 7 == 0:
            for source in instances:
                moving = [r for r in source.decoding.values() if cluster.can_migrate(r, 0)]
                if moving and source.instance_id != 0:
                    cluster.migrate(moving[0], 0)
    cluster.run_to_completion()
    return cluster


def test_bounded_logs_keep_metrics_and_drop_what_no_request_needs():
    exact = _run(None)
    bounded = _run(50)
    assert exact.migrations_completed > 0
    assert all(instance.tbt_exact for instance in exact.instances)
    assert not any(instance.tbt_exact for instance in bounded.instances)
    # The dynamics do not depend on the logs: the same requests finish at the same times.
    for column in ("request_ids", "arrival_s", "first_token_s", "finish_s", "output_tokens"):
        np.testing.assert_array_equal(
            getattr(exact.completed, column), getattr(bounded.completed, column)
        )
    # Pooled TBT from the sketches is within its relative error of the exact one.
    for got, want in zip(
        pooled_tbt_percentiles(bounded.instances, (50, 99)),
        pooled_tbt_percentiles(exact.instances, (50, 99)),
        strict=True,
    ):
        assert got == pytest.approx(want, rel=1e-3)
    # High-priority token gaps were taken at completion, before any trim: identical.
    assert exact.completed.high_priority_tbt.percentile(99) == (
        bounded.completed.high_priority_tbt.percentile(99)
    )
    # Nothing is in flight at the end: the bounded logs keep far fewer iterations.
    for kept, full in zip(bounded.instances, exact.instances, strict=True):
        assert kept.token_log_offset > 0
        assert len(kept.decode_end_times_s()) < len(full.decode_end_times_s())
        np.testing.assert_array_equal(
            kept.decode_end_times_s(), full.decode_end_times_s()[kept.token_log_offset :]
        )
        with pytest.raises(RuntimeError, match="dropped"):
            kept.decode_end_times_between(0, 1)
        with pytest.raises(RuntimeError, match="sketch"):
            kept.tbt_weights()


def test_latency_summary_reads_compact_records():
    cluster = _run(None, migrate=False)
    completed = cluster.completed
    assert len(completed) == 150 and len(completed.recent) == 150
    ttft = completed.first_token_s - completed.arrival_s
    summary = latency_summary(ttft, completed.finish_s - completed.arrival_s, cluster.instances)
    assert summary["ttft_p99_s"] == np.percentile([r.first_token_s - r.arrival_s
                                                   for r in completed.recent], 99)  # fmt: skip
    rows = completed.rows(140)
    assert [row.request_id for row in rows] == completed.request_ids[140:].tolist()
    assert all(row.finish_s >= row.first_token_s >= row.arrival_s for row in rows)
    with pytest.raises(ValueError, match="priority"):
        completed.record_tbt(2)


def test_engine_rejects_a_bad_log_limit():
    with pytest.raises(ValueError, match="exact_log_iterations"):
        ServingInstance(0, COST, KVCache(100), make_scheduler("vllm"), exact_log_iterations=0)
