"""HEFT and its peers: the published examples and the single-job latency bounds."""

from __future__ import annotations

import json
from importlib import resources

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines.soc import heft_static_schedule
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.envs.soc import generator as soc_generator
from schedgym.envs.soc.dag import (
    DagTemplate,
    Platform,
    ds3_applications,
    topcuoglu_dag,
    topcuoglu_platform,
)
from schedgym.leaderboard.policies import is_baseline

BASELINES = ["heft", "etf", "met", "eft", "cp", "fcfs", "random"]


def test_every_baseline_is_registered():
    # The shipped agent (gnn) registers too, before or after the baselines depending on imports.
    names = policy_names("schedgym/SoCDAG-v0")
    baselines = [name for name in names if is_baseline("schedgym/SoCDAG-v0", name)]
    assert baselines[: len(BASELINES)] == BASELINES


def test_heft_topcuoglu_example_makespan_and_order():
    plan = heft_static_schedule(topcuoglu_dag(), topcuoglu_platform())
    # Topcuoglu et al. 2002, Fig. 2 / Table: order n1, n3, n4, n2, n5, n6, n9, n7, n8, n10.
    assert [t + 1 for t in plan.order] == [1, 3, 4, 2, 5, 6, 9, 7, 8, 10]
    assert plan.makespan_us == 80.0
    ranks = topcuoglu_dag().upward_rank_us(topcuoglu_platform())
    np.testing.assert_allclose(ranks[[0, 1, 2, 9]], [108.0, 77.0, 80.0, 14.666667], rtol=1e-6)


def _gap_example() -> tuple[DagTemplate, Platform]:
    """A DAG whose optimum (makespan 20) needs a task inserted into an idle gap.

    t0 -> t1 (fast only on P1) -> t2 (fast only on P0) leaves P0 idle in [2, 10] while t2 waits
    for t1; the low-rank t3 fits in that gap. Appending t3 after t2 instead would give 25.
    """
    exec_us = np.array([[2.0, 2.0], [100.0, 8.0], [10.0, 30.0], [5.0, 20.0]])
    edges = np.array([[0, 1], [1, 2], [0, 3]])
    bits = np.zeros(3)
    template = DagTemplate(
        "gap", ("t0", "t1", "t2", "t3"), exec_us, edges, bits, np.arange(4), ("a", "b", "c", "d")
    )
    bandwidth = np.array([[np.inf, 1.0], [1.0, np.inf]])
    platform = Platform("two", ("P0", "P1"), np.array([0, 1]), bandwidth, ("P0", "P1"))
    return template, platform


def test_heft_uses_insertion_into_idle_gap():
    template, platform = _gap_example()
    plan = heft_static_schedule(template, platform)
    assert plan.order == [0, 1, 2, 3]
    assert plan.pe[3] == 0 and plan.start_us[3] == 2.0  # inserted before t2 (starts at 10)
    assert plan.start_us[2] == 10.0
    assert plan.makespan_us == 20.0  # the optimum: t0 + t1 on P1 + t2 on P0 is a lower bound


def test_heft_insertion_is_executed_by_the_env(monkeypatch):
    template, platform = _gap_example()
    monkeypatch.setattr(soc_generator, "topcuoglu_dag", lambda: template)
    monkeypatch.setattr(soc_generator, "topcuoglu_platform", lambda: platform)
    env = gym.make("schedgym/SoCDAG-v0", preset="topcuoglu", disable_env_checker=True)
    result = run_episode(env, make_policy("SoCDAG-v0", "heft"), seed=0)
    assert result.metrics["makespan_us"] == 20.0


@pytest.mark.parametrize("name", BASELINES)
def test_topcuoglu_makespans(name):
    env = gym.make("schedgym/SoCDAG-v0", preset="topcuoglu", disable_env_checker=True)
    makespan = run_episode(env, make_policy("SoCDAG-v0", name), seed=0).metrics["makespan_us"]
    if name == "heft":
        assert makespan == 80.0
    else:
        assert makespan >= topcuoglu_dag().critical_path_lower_bound_us()


@pytest.mark.parametrize("name", BASELINES)
def test_single_wifi_tx_job_within_critical_path_bounds(name):
    lower_bound_us = ds3_applications()["wifi_tx"].critical_path_lower_bound_us()
    env = gym.make(
        "schedgym/SoCDAG-v0", job_mix={"wifi_tx": 1.0}, num_jobs=1, disable_env_checker=True
    )
    latency_us = run_episode(env, make_policy("SoCDAG-v0", name), seed=0).metrics["makespan_us"]
    assert latency_us >= lower_bound_us
    if name != "random":
        assert latency_us <= 2.0 * lower_bound_us
    if name in ("met", "eft"):
        assert latency_us == pytest.approx(69.0, abs=0.01)  # DS3 paper, Table 5


def test_heft_plan_survives_noise_without_deadlock():
    env = gym.make(
        "schedgym/SoCDAG-v0", preset="noisy", num_jobs=60, warmup_jobs=0, disable_env_checker=True
    )
    metrics = run_episode(env, make_policy("SoCDAG-v0", "heft"), seed=3).metrics
    assert metrics["jobs_completed"] == 60


def test_heuristics_beat_random_under_load():
    env = gym.make("schedgym/SoCDAG-v0", preset="medium", num_jobs=80, disable_env_checker=True)
    random_latency = run_episode(env, make_policy("SoCDAG-v0", "random"), 1).metrics
    heft_latency = run_episode(env, make_policy("SoCDAG-v0", "heft"), 1).metrics
    assert heft_latency["mean_job_latency_us"] < 0.7 * random_latency["mean_job_latency_us"]


def _paper_table5() -> dict[str, dict[str, float]]:
    text = (
        resources.files("schedgym.envs.soc")
        .joinpath("data/ds3_reference.json")
        .read_text(encoding="utf-8")
    )
    table = json.loads(text)["single_job_latency_us_paper_table5"]
    return {app: row for app, row in table.items() if isinstance(row, dict)}


# Table 5 application names -> config names. Pulse Doppler's DAG is not in DS3's public
# configuration (nor in the reference file), so its row cannot be checked.
TABLE5_APPLICATIONS = {
    "WiFi_TX": "wifi_tx",
    "WiFi_RX": "wifi_rx",
    "range_detection": "range_detection",
}
# Rows that differ from Table 5 by more than 3 us, and why. Table 5 was measured on the paper's
# platform, which also has Zynq A53 cores (see the note in the file); with no A53 the MET rule
# (every task to its fastest PE type) sends WiFi RX's tasks elsewhere, and the job gets faster.
# ETF and CP, which balance across PEs, agree within 3 us on every application in the file.
TABLE5_KNOWN_DEVIATIONS = {("WiFi_RX", "MET"): 305.0}


def test_table5_lists_the_applications_this_test_checks():
    assert set(_paper_table5()) == {*TABLE5_APPLICATIONS, "pulse_doppler"}


@pytest.mark.parametrize(
    ("application", "rule"),
    [(app, rule) for app in TABLE5_APPLICATIONS for rule in ("MET", "ETF", "CP")],
)
def test_single_job_latency_on_an_idle_platform_matches_ds3_table5(application, rule):
    env = gym.make(
        "schedgym/SoCDAG-v0",
        job_mix={TABLE5_APPLICATIONS[application]: 1.0},
        num_jobs=1,
        disable_env_checker=True,
    )
    policy = make_policy("SoCDAG-v0", rule.lower())
    latency_us = run_episode(env, policy, seed=0).metrics["makespan_us"]
    expected_us = TABLE5_KNOWN_DEVIATIONS.get(
        (application, rule), _paper_table5()[application][rule]
    )
    assert latency_us == pytest.approx(expected_us, abs=3.0)


def test_ds3_reference_workload_etf_mean_latency():
    """DS3's reference workload (mix .2/.2/.2/.1/.1/.2, 2 jobs/ms, no noise), shortened to 300
    jobs: ETF's mean latency sits near the single-job latencies (the SoC is lightly loaded), as in
    DS3's own runs; with SC-R's unused slow profile it was ~65% higher."""
    mix = {
        "wifi_tx": 0.2,
        "wifi_rx": 0.2,
        "range_detection": 0.2,
        "sc_tx": 0.1,
        "sc_rx": 0.1,
        "temporal_mitigation": 0.2,
    }
    env = gym.make(
        "schedgym/SoCDAG-v0",
        job_mix=mix,
        job_rate_per_ms=2.0,
        num_jobs=300,
        disable_env_checker=True,
    )
    latency_us = run_episode(env, make_policy("SoCDAG-v0", "etf"), seed=0).metrics
    assert 130.0 < latency_us["mean_job_latency_us"] < 165.0
