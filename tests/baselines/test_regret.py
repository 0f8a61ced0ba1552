"""Groupwise regret: learners, the synthetic proof, the policies on SoCDAG and MeshAssign."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from benchmarks.regret_synthetic import (
    best_fixed_linear_loss,
    fit_growth_exponent,
    synthetic_groups,
    synthetic_stream,
)
from schedgym.baselines.online_learning import (
    Group,
    GroupFamily,
    GroupIndex,
    GroupwiseHedge,
    GroupwiseOnlineRegressor,
    OnlineRidge,
    SleepingAdaNormalHedge,
)
from schedgym.baselines.regret_soc import SoCPortfolioAdapter
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.envs.soc.simulator import READY, WAITING

SOC = "schedgym/SoCDAG-v0"
MESH = "schedgym/MeshAssign-v0"


# ------------------------------------------------------------------------------ learners
def test_adanormalhedge_concentrates_on_the_best_and_ignores_sleepers():
    agg = SleepingAdaNormalHedge()
    losses = np.array([0.2, 0.8, 0.5])
    for _ in range(300):
        probs = agg.distribution([0, 1, 2])
        agg.update([0, 1, 2], float(probs @ losses), losses)
    assert agg.distribution([0, 1, 2])[0] > 0.95
    before = agg.regret.copy()
    agg.update([1], 0.3, np.array([0.9]))  # only expert 1 is awake
    assert agg.regret[0] == before[0] and agg.regret[2] == before[2]
    np.testing.assert_allclose(agg.distribution([2]), [1.0])


def test_group_index_predicates_and_families():
    index = GroupIndex([Group("all", lambda c: True)], [GroupFamily("kind", lambda c: c["k"])])
    assert index.awake({"k": "a"}) == [0, 1]
    assert index.awake({"k": "b"}) == [0, 2]
    assert index.awake({"k": "a"}) == [0, 1]
    assert index.awake({"k": None}) == [0]
    assert index.names == ["all", "kind=a", "kind=b"]


def test_online_ridge_matches_batch_ridge():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    ridge = OnlineRidge(3, reg=2.0)
    for xi, yi in zip(x, y, strict=True):
        ridge.update(xi, yi)
    expected = np.linalg.solve(2.0 * np.eye(3) + x.T @ x, x.T @ y)
    np.testing.assert_allclose(ridge.theta, expected, rtol=1e-9)


def test_groupwise_hedge_learns_a_different_expert_per_group():
    groups = [Group("all", lambda c: True), Group("a", lambda c: c["g"] == "a")]
    groups.append(Group("b", lambda c: c["g"] == "b"))
    learner = GroupwiseHedge(2, groups)
    rng = np.random.default_rng(1)
    for _ in range(400):
        g = "a" if rng.random() < 0.5 else "b"
        _, record = learner.distribution({"g": g})
        learner.update(record, np.array([0.0, 1.0]) if g == "a" else np.array([1.0, 0.0]))
    assert learner.distribution({"g": "a"})[0][0] > 0.9
    assert learner.distribution({"g": "b"})[0][1] > 0.9


# ------------------------------------------------------------------ the synthetic proof
def _run_stream(active):
    stream = synthetic_stream(6000, seed=0, active=active)
    grouped = GroupwiseOnlineRegressor(synthetic_groups(), 4, bound=20.0, loss_scale=25.0)
    plain = OnlineRidge(4)
    rounds = stream.targets.size
    pred_grouped, pred_plain = np.zeros(rounds), np.zeros(rounds)
    for t in range(rounds):
        x, y = stream.features[t], stream.targets[t]
        pred_grouped[t] = grouped.update(stream.contexts[t], x, y)
        pred_plain[t] = plain.predict(x)
        plain.update(x, y)
    return stream, pred_grouped, pred_plain


def _group_report(stream, pred_grouped, pred_plain):
    """Per group: fitted regret exponent, final regret, groupwise and ungrouped MSE."""
    report = {}
    for group in synthetic_groups():
        members = np.flatnonzero([group.contains(c) for c in stream.contexts])
        counts = np.unique(np.geomspace(members.size / 8, members.size, 10).astype(int))
        regrets = []
        for n in counts:
            sub = members[:n]
            loss = float(((pred_grouped[sub] - stream.targets[sub]) ** 2).sum())
            regrets.append(loss - best_fixed_linear_loss(stream.features[sub], stream.targets[sub]))
        regrets_arr = np.array(regrets)
        errors = stream.targets[members]
        report[group.name] = (
            fit_growth_exponent(counts.astype(float), regrets_arr),
            float(regrets_arr[-1]),
            float(((pred_grouped[members] - errors) ** 2).mean()),
            float(((pred_plain[members] - errors) ** 2).mean()),
        )
    return report


@pytest.mark.parametrize("active", [("region",), ("age", "sex", "region")])
def test_synthetic_groupwise_regret_is_sublinear_and_beats_ungrouped(active):
    report = _group_report(*_run_stream(active))
    for name, (exponent, final_regret, mse_grouped, mse_plain) in report.items():
        assert exponent < 0.75, (name, exponent, final_regret)
        assert mse_grouped < mse_plain, (name, mse_grouped, mse_plain)
    if active == ("region",):
        # The region groups hold the true model: their regret is positive (so the exponent
        # check bites) and small against the group's size.
        for region in range(4):
            exponent, final_regret, *_ = report[f"region={region}"]
            assert 0 < final_regret < 100


def test_an_ungrouped_learner_fails_the_same_check():
    """The check can fail: one ridge on everything has linear regret on the region groups."""
    stream, _, pred_plain = _run_stream(("region",))
    report = _group_report(stream, pred_plain, pred_plain)
    assert max(report[f"region={r}"][0] for r in range(4)) > 0.75


# ---------------------------------------------------------------------------- policies
def test_registered_on_soc_and_mesh():
    assert {"regret-heft", "regret-portfolio"} <= set(policy_names(SOC))
    assert "regret-portfolio" in policy_names(MESH)


@pytest.mark.parametrize(
    ("env_id", "name"),
    [(SOC, "regret-heft"), (SOC, "regret-portfolio"), (MESH, "regret-portfolio")],
)
def test_same_seed_same_result(env_id, name):
    env = gym.make(env_id, preset="tiny", disable_env_checker=True)
    first = run_episode(env, make_policy(env_id, name), seed=5, record_actions=True)
    second = run_episode(env, make_policy(env_id, name), seed=5, record_actions=True)
    assert first.actions == second.actions and first.metrics == second.metrics
    assert first.metrics["jobs_completed" if env_id == SOC else "batches"] > 0


def test_regret_heft_learns_only_from_completed_tasks():
    env = gym.make(SOC, preset="noisy", num_jobs=20, warmup_jobs=2, disable_env_checker=True)
    policy = make_policy(SOC, "regret-heft")
    env.reset(seed=3)
    policy.reset(env)
    sim = env.unwrapped.simulator
    done = False
    while not done:
        action = policy.act(None, env)
        assert policy.regressor.rounds <= len(sim.task_records)
        _, terminated, truncated, _ = env.unwrapped.advance(action)
        done = terminated or truncated
    assert 0 < policy.regressor.rounds <= len(sim.task_records)


def test_portfolio_snapshot_redaction_hides_sampled_times():
    env = gym.make(SOC, preset="noisy", num_jobs=30, warmup_jobs=2, disable_env_checker=True)
    env.reset(seed=2)
    for _ in range(10):
        env.unwrapped.advance(int(np.flatnonzero(env.unwrapped.action_masks())[0]))
    adapter = SoCPortfolioAdapter()
    clone = __import__("copy").deepcopy(env.unwrapped, adapter.share(env.unwrapped))
    adapter.redact(clone, env.unwrapped)
    sim = clone.simulator
    unstarted = (sim.node_state == READY) | (sim.node_state == WAITING)
    assert unstarted.any()
    np.testing.assert_array_equal(sim._node_actual_us[unstarted], sim.node_exec_us[unstarted])
    in_system = [j for j in sim.slot_job_id.tolist() if j >= 0] + list(sim.backlog)
    assert in_system
    assert all((sim.job_noise(j) == 1.0).all() for j in in_system)
    # The real simulator keeps its sampled times.
    real = env.unwrapped.simulator
    assert not np.allclose(real._node_actual_us[unstarted], real.node_exec_us[unstarted])


# ---------------------------------------------------------------------- effects (reduced)
def _mean_metric(env_id, name, seeds, metric, **kwargs):
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    return [run_episode(env, make_policy(env_id, name), s).metrics[metric] for s in seeds]


def test_regret_heft_beats_nominal_heft_on_noisy():
    kwargs = {"preset": "noisy", "num_jobs": 80, "warmup_jobs": 10}
    seeds = range(1, 7)
    heft = _mean_metric(SOC, "heft", seeds, "mean_job_latency_us", **kwargs)
    learnt = _mean_metric(SOC, "regret-heft", seeds, "mean_job_latency_us", **kwargs)
    assert np.mean(learnt) < 0.95 * np.mean(heft)
    assert sum(a < b for a, b in zip(learnt, heft, strict=True)) >= 4


def test_soc_portfolio_close_to_best_heuristic():
    kwargs = {"preset": "medium", "num_jobs": 60, "warmup_jobs": 5}
    seeds = (1, 2)
    metric = "mean_job_latency_us"
    best = min(
        np.mean(_mean_metric(SOC, name, seeds, metric, **kwargs))
        for name in ("heft", "etf", "eft", "cp", "fcfs", "met")
    )
    portfolio = np.mean(_mean_metric(SOC, "regret-portfolio", seeds, metric, **kwargs))
    assert portfolio <= 1.10 * best


def test_mesh_portfolio_close_to_best_heuristic():
    seeds = (1, 2)
    for preset in ("long-tail-heavy", "tiny"):
        best = min(
            np.mean(_mean_metric(MESH, name, seeds, "step_time_s", preset=preset))
            for name in ("bytescale", "balanced-cp", "token-balanced", "static")
        )
        portfolio = np.mean(
            _mean_metric(MESH, "regret-portfolio", seeds, "step_time_s", preset=preset)
        )
        assert portfolio <= 1.10 * best, preset
