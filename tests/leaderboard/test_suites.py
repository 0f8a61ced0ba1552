"""Frozen suites, and test seeds kept away from the seeds training validates on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schedgym.core.errors import ConfigError
from schedgym.leaderboard.suites import (
    FROZEN_DIGESTS,
    SUITES,
    Scenario,
    Suite,
    get_suite,
    is_test_seed,
    validation_seeds,
)
from schedgym.registration import env_ids


def test_validation_seeds_never_overlap_any_suites_test_seeds():
    test_seeds = {seed for suite in SUITES.values() for seed in suite.seeds}
    for env_id in env_ids():
        seeds = validation_seeds(env_id, 100_000)
        assert len(set(seeds)) == 100_000
        assert not set(seeds) & test_seeds
        assert not any(is_test_seed(s) for s in seeds)
        assert validation_seeds(env_id, 3) == seeds[:3] == [10_000_000, 10_000_001, 10_000_002]


def test_a_suite_cannot_hold_a_validation_seed():
    seed = validation_seeds("SoCDAG-v0", 1)[0]
    with pytest.raises(ConfigError, match="test seeds must lie in"):
        replace(get_suite("smoke"), seeds=(7, seed))


def test_validation_seeds_checks_its_arguments():
    with pytest.raises(ConfigError, match="n: must be in"):
        validation_seeds("SoCDAG-v0", 0)
    with pytest.raises(ConfigError, match="env: unknown environment"):
        validation_seeds("Nope-v0", 3)


def test_every_published_suite_is_frozen_and_a_change_changes_its_digest():
    assert set(FROZEN_DIGESTS) == set(SUITES)
    for key, suite in SUITES.items():
        assert FROZEN_DIGESTS[key] == suite.digest()
    quick = get_suite("quick")
    quick.check_frozen()
    with pytest.raises(ConfigError, match="publish a new version"):
        replace(quick, seeds=(*quick.seeds[:-1], 99)).check_frozen()
    changed = (replace(quick.scenarios[0], overrides={"num_jobs": 61}), *quick.scenarios[1:])
    assert replace(quick, scenarios=changed).digest() != quick.digest()
    # A preset that resolves differently (as when an environment's preset is recalibrated)
    # changes the digest although the suite's own text did not change.
    other_preset = (replace(quick.scenarios[0], preset="heavy"), *quick.scenarios[1:])
    assert replace(quick, scenarios=other_preset).digest() != quick.digest()


def test_quick_covers_every_environment_with_at_least_five_seeds():
    quick = get_suite("quick")
    assert quick.version >= 3 and get_suite("quick", 1).version == 1
    assert set(quick.env_ids) == set(env_ids())
    assert len(quick.seeds) >= 5
    assert set(get_suite("full").env_ids) == set(env_ids())
    for suite in SUITES.values():  # every reference policy exists for its environment
        for env_id, metric in suite.metrics.items():
            from schedgym.core.policy import policy_names

            assert metric.reference in policy_names(env_id)


def test_unknown_suite_version_and_env_are_clear_errors():
    with pytest.raises(ConfigError, match="--suite: unknown suite"):
        get_suite("slow")
    with pytest.raises(ConfigError, match="versions"):
        get_suite("quick", 99)
    with pytest.raises(ConfigError, match="--env"):
        get_suite("smoke").restricted_to(["schedgym/Nope-v0"])
    with pytest.raises(ConfigError, match="scenario names repeat"):
        Suite(
            "x", 1, (Scenario("schedgym/SoCDAG-v0", "a", "tiny"),) * 2, (1,),
            get_suite("smoke").metrics,
        )  # fmt: skip


def test_a_checkpoint_is_skipped_where_its_layout_does_not_fit():
    """Shipped agents run every quick scenario (trained on those layouts) and are skipped, with
    a note naming the scenario, where a scenario's padding differs (smoke's tiny presets)."""
    pytest.importorskip("torch")
    from schedgym.leaderboard.evaluate import plan_run
    from schedgym.leaderboard.suites import get_suite

    quick = plan_run(get_suite("quick"), None)
    gnn_envs = {task.env_id for task in quick.tasks if task.policy == "gnn"}
    assert gnn_envs == set(env_ids())
    smoke = plan_run(get_suite("smoke"), None)
    assert not [task for task in smoke.tasks if task.policy == "gnn"]
    skipped = [note for note in smoke.notes if "skipped 'gnn'" in note]
    assert len(skipped) == len(env_ids())
    assert all("/tiny: " in note and "observation shapes" in note for note in skipped)
