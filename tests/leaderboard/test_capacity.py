"""Capacity search (Sarathi-Serve's definition) on synthetic rate-to-metrics functions; the
search on PrefillChunk itself is in tests/envs/test_prefillchunk.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schedgym.leaderboard.capacity import search_capacity


@settings(max_examples=40, deadline=None)
@given(threshold=st.floats(0.05, 50.0), start=st.floats(0.05, 50.0))
def test_capacity_search_finds_a_monotone_threshold(threshold, start):
    def run(qps, seed):
        over = qps > threshold
        return {"tbt_p99_s": 0.2 if over else 0.05, "sched_delay_p50_s": 0.1}

    result = search_capacity(run, 0.1, start_qps=start, min_qps=0.01, tolerance=0.01)
    assert result.capacity_qps <= threshold
    assert result.capacity_qps >= threshold / 1.0101 - 1e-9
    assert all(p.feasible == (p.qps <= threshold) for p in result.probes)


def test_capacity_search_respects_the_scheduling_delay_bound():
    def run(qps, seed):
        return {"tbt_p99_s": 0.01, "sched_delay_p50_s": qps}  # delay 2 s at 2 QPS

    result = search_capacity(run, 0.1, tolerance=0.005)
    assert 1.98 <= result.capacity_qps <= 2.0
