"""Scores, intervals, win rates and number formatting on rows with known answers."""

from __future__ import annotations

import math

import pytest

from schedgym.leaderboard.formatting import quantity, sig3
from schedgym.leaderboard.scores import env_scores
from schedgym.leaderboard.suites import PrimaryMetric, Scenario, Suite

ENV = "schedgym/SoCDAG-v0"
SUITE = Suite(
    "t", 1, (Scenario(ENV, "a", "tiny"), Scenario(ENV, "b", "tiny")), (1, 2, 3, 4),
    {ENV: PrimaryMetric("lat", True, "us", "ref")},
)  # fmt: skip


def rows(values):
    """values: policy -> (scenario, seed) -> metric."""
    return [
        {"env_id": ENV, "scenario": sc, "seed": seed, "policy": p, "metrics": {"lat": v}}
        for p, table in values.items()
        for (sc, seed), v in table.items()
    ]


def table(fn):
    return {(sc, seed): fn(sc, seed) for sc in ("a", "b") for seed in (1, 2, 3, 4)}


def test_half_the_latency_everywhere_scores_two_and_always_wins():
    data = rows(
        {
            "ref": table(lambda sc, s: 10.0 * s),
            "fast": table(lambda sc, s: 5.0 * s),
            "mixed": table(lambda sc, s: 10.0 * s if sc == "a" else 20.0 * s),
        }
    )
    result = env_scores(SUITE, ENV, data, baselines={"ref", "mixed"})
    by_name = {p.policy: p for p in result.policies}
    assert [p.policy for p in result.policies] == ["fast", "ref", "mixed"]
    assert by_name["ref"].score == pytest.approx(1.0)
    assert by_name["fast"].score == pytest.approx(2.0)
    assert by_name["fast"].ci_low == pytest.approx(2.0) and by_name[
        "fast"
    ].ci_high == pytest.approx(2.0)
    assert by_name["mixed"].score == pytest.approx(math.sqrt(0.5))
    # The best baseline is ref; fast beats it on every pair, ref's opponent is mixed.
    assert result.best_baseline == "ref"
    assert by_name["fast"].win_rate == 1.0 and by_name["fast"].opponent == "ref"
    assert by_name["ref"].opponent == "mixed" and by_name["ref"].win_rate == pytest.approx(0.75)
    assert result.stats["a"]["fast"].mean == pytest.approx(12.5)


def test_intervals_widen_with_noise_and_missing_values_are_left_out():
    noisy = table(lambda sc, s: 10.0 * s * (0.5 if s % 2 else 1.0))
    noisy[("b", 4)] = None  # a failed metric: left out of the geometric mean
    data = rows({"ref": table(lambda sc, s: 10.0 * s), "noisy": noisy})
    result = env_scores(SUITE, ENV, data, baselines={"ref"})
    entry = next(p for p in result.policies if p.policy == "noisy")
    assert entry.ci_low < entry.score < entry.ci_high
    assert entry.score == pytest.approx(2 ** (4 / 7))


def test_incomplete_policy_gets_no_score_and_a_note():
    partial = table(lambda sc, s: 1.0)
    del partial[("a", 1)]
    result = env_scores(SUITE, ENV, rows({"ref": table(lambda sc, s: 1.0), "p": partial}), {"ref"})
    assert next(p for p in result.policies if p.policy == "p").score is None
    assert any("incomplete" in n for n in result.notes)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1234.5, "1230"), (0.0012345, "0.00123"), (12.345, "12.3"), (0.1, "0.100"),
     (1e-5, "1.00e-05"), (None, "—"), (float("nan"), "—")],
)  # fmt: skip
def test_three_significant_digits(value, text):
    assert sig3(value) == text


def test_quantities_scale_their_time_unit():
    assert quantity(812.3, "us") == "812 µs"
    assert quantity(12345.0, "us") == "12.3 ms"
    assert quantity(0.0123, "s") == "12.3 ms"
    assert quantity(2.5, "s") == "2.50 s"
    assert quantity(0.00123, "") == "0.00123"
