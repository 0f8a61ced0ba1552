"""The continuous-batching engine: timing against the cost model, batching policies, preemption,
migration, fast-forward exactness, and conservation properties under hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedgym.core.errors import ConfigError
from schedgym.costmodels.inference import get_cost_model, kv_migration_time_s
from schedgym.serving.cluster import ServingCluster
from schedgym.serving.engine import DecodeTimer, ServingInstance
from schedgym.serving.kv_cache import KVCache, PrefixCache
from schedgym.serving.metrics import request_tbt_s, tbt_samples_s
from schedgym.serving.request import FINISHED, Request
from schedgym.serving.schedulers import SCHEDULERS, SarathiScheduler, make_scheduler

MODEL, GPU = "Llama-2-7B", "A100"
COST = get_cost_model(MODEL, GPU)


def make_cluster(num=2, blocks=400, scheduler="vllm", fast_forward=True, budget=512):
    instances = [
        ServingInstance(
            i, COST, KVCache(blocks), make_scheduler(scheduler, budget), fast_forward=fast_forward
        )
        for i in range(num)
    ]
    return ServingCluster(instances, lambda b, s, d: kv_migration_time_s(MODEL, GPU, b))


def run(cluster, requests, route, migrate_every=0):
    for k, request in enumerate(requests):
        cluster.advance_to(request.arrival_s)
        cluster.dispatch(request, route(k))
        if migrate_every and k % migrate_every == 0:
            for source in cluster.instances:
                candidates = list(source.decoding.values())
                if candidates:
                    cluster.migrate(
                        candidates[-1], (source.instance_id + 1) % len(cluster.instances)
                    )
    cluster.run_to_completion()


@pytest.mark.parametrize("engine", ["none", "sarathi"])
def test_vectorised_decode_times_match_the_cost_model(engine):
    cost = get_cost_model(MODEL, GPU, 1, engine)
    timer = DecodeTimer(cost)
    for n, first in ((1, 100), (7, 5000), (64, 150_000)):
        times = timer.times_s(n, first, 40)
        scalar = [cost.time_from_summary_s(n, first + n * i) for i in range(40)]
        np.testing.assert_allclose(times, scalar, rtol=1e-12)


def test_single_request_timing_is_the_cost_model_sum():
    cluster = make_cluster(num=1)
    request = Request(0, 0.0, 1000, 50)
    run(cluster, [request], lambda k: 0)
    prefill = COST.time_from_summary_s(0, 0, [(1000, 0)])
    assert request.first_token_s == pytest.approx(prefill, rel=1e-12)
    # 49 decode iterations; KV during decode i (after appending) is 1000 + i + 1.
    decode = sum(COST.time_from_summary_s(1, 1000 + i + 1) for i in range(49))
    assert request.finish_s == pytest.approx(prefill + decode, rel=1e-9)
    times = cluster.instances[0].token_times_s(request, cluster.instances)
    assert times.size == 50 and np.all(np.diff(times) > 0)
    assert cluster.instances[0].kv.used_blocks == 0


def test_sarathi_chunks_prompt_with_cached_context():
    cluster = make_cluster(num=1, scheduler="sarathi", budget=512)
    request = Request(0, 0.0, 1200, 2)
    run(cluster, [request], lambda k: 0)
    expected = sum(COST.time_from_summary_s(0, 0, [(c, ctx)]) for c, ctx in
                   ((512, 0), (512, 512), (176, 1024)))  # fmt: skip
    assert request.first_token_s == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ConfigError, match="token_budget"):
        SarathiScheduler(-1)
    with pytest.raises(ConfigError, match="scheduler"):
        make_scheduler("tgi")


def test_vllm_pauses_decodes_for_prefills_orca_does_not():
    gaps = {}
    for name in ("vllm", "orca"):
        cluster = make_cluster(num=1, scheduler=name)
        first = Request(0, 0.0, 100, 40)
        second = Request(1, 0.2, 2000, 5)
        run(cluster, [first, second], lambda k: 0)
        gaps[name] = request_tbt_s(first, cluster.instances).max()
    # vLLM: the 2000-token prefill runs alone; the decode waits for it and the next decode.
    prefill = COST.time_from_summary_s(0, 0, [(2000, 0)])
    assert gaps["vllm"] > prefill
    assert gaps["orca"] < gaps["vllm"]


def test_fastertransformer_admits_only_into_an_empty_instance():
    cluster = make_cluster(num=1, scheduler="fastertransformer")
    first = Request(0, 0.0, 100, 200)
    second = Request(1, 0.01, 100, 2)
    run(cluster, [first, second], lambda k: 0)
    assert second.first_token_s > first.finish_s


def test_preemption_recomputes_the_newest_and_loses_no_token():
    # 20 blocks = 320 tokens: two requests growing to 300 tokens each cannot both fit.
    cluster = make_cluster(num=1, blocks=20)
    old = Request(0, 0.0, 100, 150)
    new = Request(1, 0.001, 100, 150)
    run(cluster, [old, new], lambda k: 0)
    assert new.num_preemptions >= 1 and old.num_preemptions == 0
    for request in (old, new):
        times = cluster.instances[0].token_times_s(request, cluster.instances)
        assert times.size == request.output_tokens and np.all(np.diff(times) > 0)
    assert cluster.instances[0].kv.peak_used_blocks <= 20


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_fast_forward_is_exact(scheduler):
    rng = np.random.default_rng(5)
    arrivals = np.cumsum(rng.exponential(0.05, 60))
    lengths = rng.integers(1, 600, (60, 2))
    results = []
    for fast in (True, False):
        requests = [
            Request(k, float(arrivals[k]), int(lengths[k, 0]), int(lengths[k, 1]))
            for k in range(60)
        ]
        cluster = make_cluster(num=2, blocks=200, scheduler=scheduler, fast_forward=fast)
        run(cluster, requests, lambda k: k % 2)
        results.append([(r.first_token_s, r.finish_s, r.num_preemptions) for r in requests])
    np.testing.assert_allclose(np.array(results[0]), np.array(results[1]), rtol=1e-9)


def test_migration_moves_a_request_without_losing_tokens():
    cluster = make_cluster(num=2, blocks=400)
    request = Request(0, 0.0, 900, 300)
    cluster.dispatch(request, 0)
    cluster.advance_to(1.0)
    assert cluster.migrate(request, 1)
    cluster.run_to_completion()
    assert request.num_migrations == 1 and request.state == FINISHED
    times = cluster.instances[0].token_times_s(request, cluster.instances)
    assert times.size == 300 and np.all(np.diff(times) > 0)
    assert {span[0] for span in request.spans} == {0, 1}
    # Only the last stage stalls: the pause is far below one stage-1 copy plus an iteration.
    assert cluster.migration_stall_s[0] < 0.01
    assert [i.kv.used_blocks for i in cluster.instances] == [0, 0]


def test_migration_that_does_not_fit_changes_nothing():
    cluster = make_cluster(num=2, blocks=100)
    big = Request(0, 0.0, 1000, 200)
    blocker = Request(1, 0.0, 1400, 200)
    cluster.dispatch(big, 0)
    cluster.dispatch(blocker, 1)
    cluster.advance_to(0.5)
    cluster.sync()
    used = [i.kv.used_blocks for i in cluster.instances]
    assert not cluster.migrate(big, 1)
    assert [i.kv.used_blocks for i in cluster.instances] == used
    cluster.run_to_completion()
    assert big.num_migrations == 0 and big.state == FINISHED


def test_prefix_cache_refcounts_and_lru_eviction():
    cache = PrefixCache(16)
    path_a = ((1, 32), (2, 16))
    path_b = ((1, 32), (3, 48))
    assert cache.acquire(path_a, 0.0) == (0, 3)
    assert cache.acquire(path_b, 1.0) == (32, 3)
    assert cache.resident_blocks == 6 and cache.evictable_blocks == 0
    cache.release(path_a, 2.0)
    assert cache.evictable_blocks == 1  # node 2 only; node 1 is still used by b
    cache.release(path_b, 3.0)
    assert cache.evictable_blocks == 6
    assert cache.evict(1) == 1 and 2 not in cache.nodes  # least recently used leaf first
    with pytest.raises(ConfigError, match="prefix_path"):
        cache.acquire(((9, 10),), 4.0)


def test_prefix_sharing_in_the_engine_skips_cached_prefill():
    instance = ServingInstance(0, COST, KVCache(200, prefix_caching=True), make_scheduler("vllm"))
    cluster = ServingCluster([instance], lambda b, s, d: 0.0)
    path = ((10, 512),)
    first = Request(0, 0.0, 600, 5, prefix_path=path)
    second = Request(1, 5.0, 600, 5, prefix_path=path)
    run(cluster, [first, second], lambda k: 0)
    ttft_first = first.first_token_s - first.arrival_s
    ttft_second = second.first_token_s - second.arrival_s
    assert ttft_second < 0.5 * ttft_first
    assert ttft_second == pytest.approx(COST.time_from_summary_s(0, 0, [(88, 512)]), rel=1e-12)
    # Only the evictable prefix stays resident.
    assert instance.kv.used_blocks == 32 == instance.kv.prefix.evictable_blocks


def test_admission_never_evicts_the_requests_own_cached_prefix():
    # 100 blocks; two finished requests leave prefixes 10 (older) and 20 resident, unreferenced
    # (32 blocks each). The third reuses prefix 10 and needs 50 more blocks with 36 free: the
    # allocation must evict prefix 20, not the least recently used node 10 it is about to
    # reference (dropping it would re-create it without blocks, and the count would drift).
    instance = ServingInstance(0, COST, KVCache(100, prefix_caching=True), make_scheduler("vllm"))
    cluster = ServingCluster([instance], lambda b, s, d: 0.0)
    first = Request(0, 0.0, 600, 5, prefix_path=((10, 512),))
    second = Request(1, 5.0, 600, 5, prefix_path=((20, 512),))
    third = Request(2, 10.0, 512 + 16 * 50, 5, prefix_path=((10, 512),))
    run(cluster, [first, second], lambda k: 0)
    prefix = instance.kv.prefix
    assert instance.own_evictable_blocks(third) == 32
    assert prefix.unreferenced_blocks(((10, 512), (20, 512))) == 64
    run(cluster, [third], lambda k: 0)
    assert third.state == FINISHED and third.prefilled == 1312
    assert sorted(prefix.nodes) == [10]
    assert prefix.hit_tokens == 512  # the third request's prefill skipped the cached prefix
    assert instance.kv.used_blocks == prefix.resident_blocks == prefix.evictable_blocks == 32


request_lists = st.lists(
    st.tuples(
        st.floats(0.0, 0.3),  # gap to previous arrival, s
        st.integers(1, 700),  # prompt
        st.integers(1, 120),  # output
        st.integers(0, 1),  # priority
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request_lists,
    st.sampled_from(SCHEDULERS),
    st.integers(0, 5),
    st.integers(60, 300),
    st.booleans(),
)
def test_conservation(spec, scheduler, migrate_every, blocks, priority_first):
    """Every request completes with exactly its output tokens, in order; KV never exceeds
    capacity and is all returned; the pooled TBT equals the per-request gaps."""
    instances = [
        ServingInstance(
            i, COST, KVCache(blocks), make_scheduler(scheduler), priority_first=priority_first
        )
        for i in range(3)
    ]
    cluster = ServingCluster(instances, lambda b, s, d: kv_migration_time_s(MODEL, GPU, b))
    requests, t = [], 0.0
    for k, (gap, prompt, output, priority) in enumerate(spec):
        t += gap
        # Prompts fit an empty instance (the engine cannot serve a larger one).
        requests.append(Request(k, t, min(prompt, blocks * 16 // 2), output, priority))
    run(cluster, requests, lambda k: (k * 7) % 3, migrate_every=migrate_every)
    assert len(cluster.completed) == len(requests)
    for request in requests:
        assert request.state == FINISHED
        times = instances[0].token_times_s(request, instances)
        assert times.size == request.output_tokens
        assert np.all(np.diff(times) > 0)
        assert request.first_token_s >= request.arrival_s
    for instance in instances:
        assert instance.kv.peak_used_blocks <= blocks
        assert instance.kv.used_blocks == 0
    pooled = np.sort(tbt_samples_s(instances))
    per_request = np.sort(np.concatenate([request_tbt_s(r, instances) for r in requests]))
    np.testing.assert_allclose(pooled, per_request, rtol=1e-12, atol=1e-12)
    assert cluster.in_system == 0
