"""Groupwise regret on PrefillChunk, PrefixBatch, OnlineDataGen and LLMCluster: registration,
determinism, never reading the future, and reduced-scale portfolio effects."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines.regret_datagen import DataGenPortfolioAdapter
from schedgym.baselines.regret_llm import LLMPortfolioAdapter
from schedgym.baselines.regret_prefill import PrefillPortfolioAdapter
from schedgym.baselines.regret_serving import CompletedLengths, OutputLengthPredictor, sjf_key
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.serving.request import Request

PREFILL = "schedgym/PrefillChunk-v0"
PREFIX = "schedgym/PrefixBatch-v0"
DATAGEN = "schedgym/OnlineDataGen-v0"
CLUSTER = "schedgym/LLMCluster-v0"
# Prefill-only budgets and per-query-head decode reads: slower decodes, so the redaction test
# sees several feedback rounds before the first request finishes.
PREFILL_SMALL = {
    "preset": "high-load",
    "num_requests": 60,
    "budget_counts_decodes": False,
    "gqa_decode_attention": False,
}


def test_registered_everywhere():
    for env_id in (PREFILL, PREFIX, DATAGEN, CLUSTER):
        assert "regret-portfolio" in policy_names(env_id)
    assert "regret-sjf" in policy_names(PREFILL)
    assert "regret-sjf" in policy_names(CLUSTER)


@pytest.mark.parametrize(
    ("env_id", "name", "kwargs"),
    [
        (PREFILL, "regret-portfolio", PREFILL_SMALL),
        (PREFILL, "regret-sjf", PREFILL_SMALL),
        (PREFIX, "regret-portfolio", {"preset": "tiny"}),
        (DATAGEN, "regret-portfolio", {"preset": "tiny"}),
        (CLUSTER, "regret-portfolio", {"preset": "tiny"}),
        (CLUSTER, "regret-sjf", {"preset": "tiny"}),
    ],
)
def test_same_seed_same_result(env_id, name, kwargs):
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    first = run_episode(env, make_policy(env_id, name), seed=5, record_actions=True)
    second = run_episode(env, make_policy(env_id, name), seed=5, record_actions=True)
    assert first.actions == second.actions and first.metrics == second.metrics
    assert len(first.actions) > 0


# ----------------------------------------------------------------- never reads the future
def test_completed_lengths_conditional_mean():
    lengths = CompletedLengths([10, 20, 30, 100])
    assert lengths.expected_total(0) == 40
    assert lengths.expected_total(25) == 65  # mean of 30 and 100
    assert lengths.expected_total(100) == 100 + 40  # none above: produced + mean
    assert CompletedLengths([]).expected_total(5) > 5


def test_output_predictor_learns_only_finished_requests_and_bands():
    predictor = OutputLengthPredictor()
    unfinished = Request(0, 0.0, 100, 50)
    with pytest.raises(ValueError, match="not finished"):
        predictor.learn([unfinished])
    rng = np.random.default_rng(0)
    done = []
    for i in range(400):
        prompt = int(rng.choice([64, 4000]))
        request = Request(i, 0.0, prompt, 40 if prompt == 64 else 900)
        request.finish_s = 1.0
        done.append(request)
    predictor.learn(done)
    assert abs(predictor.predict(Request(999, 0.0, 70, 1)) - 40) < 40
    assert abs(predictor.predict(Request(998, 0.0, 3900, 1)) - 900) < 100


def _run_recording(env, policy, horizon_s):
    """Decisions (time, action, feedback rounds so far, raw losses) up to ``horizon_s``."""
    env.reset(seed=3)
    policy.reset(env)
    rows = []
    sim = env.unwrapped.simulator
    while not sim.done and sim.now_s < horizon_s:
        action = policy.act(None, env)
        rows.append((sim.now_s, int(action), len(policy.stats.losses)))
        env.unwrapped.advance(action)
    return rows, [loss.tolist() for loss in policy.stats.losses]


@pytest.mark.parametrize(
    "feedback",
    # to-end rolls every expert out to the episode's end at each round (minutes here; its
    # redaction is checked fast below); whole-policy shares the window variant's machinery.
    [
        "window",
        pytest.param("whole-policy", marks=pytest.mark.slow),
        pytest.param("to-end", marks=pytest.mark.slow),
    ],
)
def test_prefill_portfolio_never_reads_unrevealed_output_lengths(monkeypatch, feedback):
    """Two worlds that differ only in output lengths not yet revealed at time ``t``: the
    portfolio's decisions and every loss it computed before ``t`` are the same. With the
    redaction disabled the losses differ, so the check can fail. Whole-policy feedback's
    shadows learn what is revealed at every round (``catch_up``), so both are disabled."""
    horizon_s = 3.0 if feedback == "window" else 1.0

    def run(perturb, redact=True):
        env = gym.make(PREFILL, disable_env_checker=True, **PREFILL_SMALL)
        policy = make_policy(
            PREFILL,
            "regret-portfolio",
            window_s=1.0,
            horizon_s=horizon_s,
            feedback=feedback,
            min_tbt_gaps=0,
        )
        if not redact:
            monkeypatch.setattr(PrefillPortfolioAdapter, "redact", lambda self, c, r: None)
            monkeypatch.setattr(PrefillPortfolioAdapter, "catch_up", lambda self, s, b, r: None)
        original_reset = env.unwrapped.reset

        def reset(**kwargs):
            out = original_reset(**kwargs)
            if perturb:
                for request in env.unwrapped.simulator.requests:
                    request.output_tokens += 37  # every length differs from the other world
            return out

        env.unwrapped.reset = reset
        rows, losses = _run_recording(env, policy, horizon_s=60.0)
        monkeypatch.undo()
        return rows, losses, env.unwrapped.simulator

    base_rows, base_losses, base_sim = run(False)
    # The worlds diverge when the first request finishes in the reference world.
    first_finish = min(r.finish_s for r in base_sim.finished)
    other_rows, other_losses, _ = run(True)
    before = [row for row in base_rows if row[0] < first_finish]
    assert len(before) > 20 and before[-1][2] >= 3  # several feedback rounds happened
    assert other_rows[: len(before)] == before
    rounds = before[-1][2]
    assert other_losses[:rounds] == base_losses[:rounds]
    # Without redaction the rollouts read the (different) future lengths.
    leaky_base = run(False, redact=False)[1]
    leaky_other = run(True, redact=False)[1]
    assert leaky_base[:rounds] != leaky_other[:rounds]


@pytest.mark.parametrize("feedback", ["window", "to-end"])
def test_prefill_snapshot_redaction_drops_arrivals_and_lengths(feedback):
    """Arrivals not seen yet are dropped (``to-end``: replaced by fresh draws from the
    configured workload, after the present, none equal to the episode's own); lengths of the
    requests not finished are their conditional expectations."""
    env = gym.make(PREFILL, disable_env_checker=True, **PREFILL_SMALL)
    env.reset(seed=4)
    adapter = PrefillPortfolioAdapter(feedback=feedback)
    sim = env.unwrapped.simulator
    snapshot = None
    while not sim.done:
        if snapshot is None and sim.now_s > 2.0:
            snapshot = copy.deepcopy(env.unwrapped, adapter.share(env.unwrapped))
        if sim.now_s > 6.0 and sim.finished:
            break
        env.unwrapped.advance(3)  # stall-free, 512
    assert snapshot is not None
    adapter.redact(snapshot, env.unwrapped)
    clone = snapshot.simulator
    known = sim.requests_arrived
    assert known < len(sim.requests)
    if feedback == "to-end":
        synthetic = clone.requests[known:]
        assert len(clone.requests) == len(sim.requests)
        assert all(r.arrival_s > sim.now_s for r in synthetic)
        real_future = {(r.arrival_s, r.prompt_tokens) for r in sim.requests[known:]}
        assert not real_future & {(r.arrival_s, r.prompt_tokens) for r in synthetic}
        # The same knowledge gives the same draws (rollouts replay).
        again = copy.deepcopy(snapshot)
        adapter.redact(again, env.unwrapped)
        assert [r.arrival_s for r in again.simulator.requests[known:]] == [
            r.arrival_s for r in synthetic
        ]
        clone.requests = clone.requests[:known]
    assert len(clone.requests) == known
    finished = {r.request_id for r in sim.finished}
    unfinished = [r for r in clone.requests if r.request_id not in finished]
    assert unfinished
    lengths = CompletedLengths(r.output_tokens for r in sim.finished)
    for request in unfinished:
        real = sim.requests[request.request_id]
        assert request.output_tokens == lengths.expected_total(sim.instance.generated(real))
    for request in clone.requests:
        if request.request_id in finished:
            assert request.output_tokens == sim.requests[request.request_id].output_tokens


def test_regret_sjf_orders_the_queue_by_prediction_and_learns_only_completed():
    env = gym.make(PREFILL, disable_env_checker=True, **PREFILL_SMALL)
    policy = make_policy(PREFILL, "regret-sjf")
    env.reset(seed=2)
    policy.reset(env)
    sim = env.unwrapped.simulator
    reordered = 0
    while not sim.done:
        action = policy.act(None, env)
        finished = {r.request_id for r in sim.finished}
        assert policy.predictor.seen <= finished
        waiting = list(sim.instance.waiting)
        if len(waiting) > 1:
            key = sjf_key(policy.predictor, sim.instance.generated, 512)
            keys = [key(r) for r in waiting]
            assert keys == sorted(keys)
            reordered += 1
        env.unwrapped.advance(action)
    assert reordered > 0 and 0 < policy.predictor.rounds <= len(sim.finished)


def test_cluster_snapshot_redaction():
    env = gym.make(CLUSTER, preset="high-load", num_requests=200, disable_env_checker=True)
    env.reset(seed=1)
    policy = make_policy(CLUSTER, "llumnix")
    policy.reset(env)
    adapter = LLMPortfolioAdapter()
    sim = env.unwrapped.simulator
    snapshot = None
    while not sim.done and sim.requests_completed < 30:
        if snapshot is None and sim.requests_completed >= 5:
            snapshot = copy.deepcopy(env.unwrapped, adapter.share(env.unwrapped))
        env.unwrapped.advance(policy.act(None, env))
    assert snapshot is not None
    adapter.redact(snapshot, env.unwrapped)
    clone = snapshot.simulator
    assert clone.num_requests == sim.requests_arrived < sim.num_requests
    finished = set(sim.cluster.completed.request_ids.tolist())
    assert clone.stream.output_tokens.size == sim.requests_arrived
    changed = [r for r in clone.live_requests() if r.request_id not in finished]
    assert changed
    lengths = CompletedLengths(sim.cluster.completed.output_tokens.tolist())
    for request in changed:
        assert request.output_tokens >= 1
        real = sim.cluster.live.get(request.request_id)
        if real is not None:
            generated = sim.instances[real.instance].generated(real)
            assert sim.generated_tokens(request.request_id) == generated
        assert request.output_tokens == lengths.expected_total(
            sim.generated_tokens(request.request_id)
        )
    # The redacted snapshot still runs to its end.
    while not clone.done:
        snapshot.advance(make_policy(CLUSTER, "lor").act(None, snapshot))
    assert clone.requests_completed + clone.requests_rejected == clone.num_requests


def test_datagen_redaction_replaces_future_draws():
    env = gym.make(DATAGEN, preset="tiny", disable_env_checker=True)
    env.reset(seed=0)
    env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))
    adapter = DataGenPortfolioAdapter()
    clone = copy.deepcopy(env.unwrapped, adapter.share(env.unwrapped))
    adapter.redact(clone, env.unwrapped)
    real = env.unwrapped.simulator
    assert clone.simulator.buffer._rng is clone.simulator._rng_buffer
    for name in ("_rng_params", "_rng_acquisition", "_rng_buffer"):
        assert getattr(clone.simulator, name).random() != getattr(real, name).random()


# --------------------------------------------------------------------- effects (reduced)
def _mean(env_id, name, seeds, metric, **kwargs):
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    return float(
        np.mean([run_episode(env, make_policy(env_id, name), s).metrics[metric] for s in seeds])
    )


@pytest.mark.parametrize(
    ("env_id", "experts", "metric", "kwargs"),
    [
        (
            PREFILL,
            ("vllm", "orca", "fastertransformer", "sarathi-512", "sarathi-2048"),
            "slo_excess_ratio",
            # Not sarathi-strict: at 1 req/s vLLM's rare prefill stalls stay under the episode's
            # p99 TBT only if vLLM plays throughout; the to-end loss sees that, but over one
            # 100-request episode its rounds are too few for a reduced-scale check (benchmark:
            # bench_regret.py --part portfolio --envs PrefillChunk --portfolio-seeds 1002 ...).
            {"preset": "high-load", "num_requests": 100},
        ),
        (
            PREFIX,
            ("fcfs-lru", "batchllm"),
            "completion_time_s",
            {"preset": "prefix-heavy", "num_requests": 400, "kv_capacity_blocks": 4000},
        ),
        (
            CLUSTER,
            ("round-robin", "lor", "llumnix", "llumnix-no-migration"),
            "ttft_p99_s",
            {"preset": "high-load", "num_requests": 300},
        ),
    ],
)
def test_portfolio_close_to_best_heuristic(env_id, experts, metric, kwargs):
    seeds = (1, 2)
    best = min(_mean(env_id, name, seeds, metric, **kwargs) for name in experts)
    worst = max(_mean(env_id, name, seeds, metric, **kwargs) for name in experts)
    assert worst > 1.1 * best  # the choice matters here
    assert _mean(env_id, "regret-portfolio", seeds, metric, **kwargs) <= 1.10 * best
