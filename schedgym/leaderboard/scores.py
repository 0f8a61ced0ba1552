"""Scores from rows: per-scenario means, normalised scores, bootstrap intervals, win rates.

For each environment of a suite:

- per scenario and policy, the mean of the primary metric over seeds with a 95% bootstrap
  interval;
- per policy, the normalised score: on each (scenario, seed) the ratio of the reference
  baseline's metric to the policy's (inverted for higher-is-better metrics, so above 1 is always
  better than the reference), combined by a geometric mean over seeds and scenarios; its 95%
  interval resamples seeds (the same resample for every scenario and policy: seeds are paired);
- per policy, the paired win rate against the best baseline (the baseline with the highest score,
  other than the policy itself): the share of (scenario, seed) pairs where the policy is strictly
  better, ties counting half.

Only policies with a row for every (scenario, seed) of the environment get a score; a missing or
non-positive metric makes that pair's ratio undefined, and it is left out of the geometric mean.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schedgym.core.metrics import bootstrap_ci
from schedgym.leaderboard.suites import PrimaryMetric, Suite

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass
class ScenarioStat:
    """One policy's primary metric on one scenario."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    episodes: int


@dataclass
class PolicyScore:
    """One policy's standing on one environment."""

    policy: str
    baseline: bool
    score: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    win_rate: float | None = None
    opponent: str | None = None
    complete: bool = False


@dataclass
class EnvScores:
    """Everything the report shows for one environment."""

    env_id: str
    metric: PrimaryMetric
    scenarios: list[str]
    seeds: list[int]
    # scenario -> policy -> stat
    stats: dict[str, dict[str, ScenarioStat]] = field(default_factory=dict)
    # ranked, best first (policies without a score last)
    policies: list[PolicyScore] = field(default_factory=list)
    best_baseline: str | None = None
    notes: list[str] = field(default_factory=list)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metric_table(
    rows: Sequence[dict[str, Any]], env_id: str, metric: str
) -> dict[tuple[str, str, int], float | None]:
    """(scenario, policy, seed) -> the metric (None when missing or non-finite)."""
    return {
        (r["scenario"], r["policy"], int(r["seed"])): _finite(r["metrics"].get(metric))
        for r in rows
        if r["env_id"] == env_id
    }


def env_scores(
    suite: Suite, env_id: str, rows: Sequence[dict[str, Any]], baselines: set[str]
) -> EnvScores:
    """Scores of every policy with rows for ``env_id`` (rows of ``suite`` only)."""
    metric = suite.metrics[env_id]
    scenarios = [s.name for s in suite.scenarios if s.env_id == env_id]
    seeds = list(suite.seeds)
    table = metric_table(rows, env_id, metric.key)
    policies = list(dict.fromkeys(p for (_, p, _) in table))
    result = EnvScores(env_id, metric, scenarios, seeds)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    for scenario in scenarios:
        result.stats[scenario] = {}
        for policy in policies:
            values = [table[(scenario, policy, s)] for s in seeds if (scenario, policy, s) in table]
            finite = [v for v in values if v is not None]
            low, high = bootstrap_ci(finite, rng, num_resamples=BOOTSTRAP_RESAMPLES)
            result.stats[scenario][policy] = ScenarioStat(
                float(np.mean(finite)) if finite else None,
                _finite(low),
                _finite(high),
                len(values),
            )
    complete = [p for p in policies if all((sc, p, s) in table for sc in scenarios for s in seeds)]
    for policy in policies:
        if policy not in complete:
            result.notes.append(f"{policy}: incomplete rows, no score")
    # matrices[policy]: (scenario, seed) array of the metric, nan where undefined.
    matrices = {
        p: np.array(
            [[_nan(table[(sc, p, s)]) for s in seeds] for sc in scenarios], dtype=np.float64
        )
        for p in complete
    }
    scores = {p: PolicyScore(p, p in baselines, complete=p in complete) for p in policies}
    reference = metric.reference
    if reference not in matrices:
        result.notes.append(f"reference {reference!r} has no complete rows: no normalised scores")
    else:
        resamples = rng.integers(0, len(seeds), size=(BOOTSTRAP_RESAMPLES, len(seeds)))
        for policy, matrix in matrices.items():
            log_ratio = _log_ratio(matrices[reference], matrix, metric.lower_is_better)
            scores[policy].score, scores[policy].ci_low, scores[policy].ci_high = _geo(
                log_ratio, resamples
            )
    ranked_baselines = sorted(
        (s for s in scores.values() if s.baseline and s.score is not None),
        key=lambda s: -(s.score or 0.0),
    )
    result.best_baseline = ranked_baselines[0].policy if ranked_baselines else None
    for policy, entry in scores.items():
        opponent = next((b.policy for b in ranked_baselines if b.policy != policy), None)
        if opponent is None or policy not in matrices:
            continue
        entry.opponent = opponent
        entry.win_rate = _win_rate(matrices[policy], matrices[opponent], metric.lower_is_better)
    result.policies = sorted(
        scores.values(), key=lambda s: (s.score is None, -(s.score or 0.0), s.policy)
    )
    return result


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _log_ratio(reference: np.ndarray, policy: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """log(reference / policy) (lower is better) or log(policy / reference); nan if undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = (reference > 0) & (policy > 0)
        ratio = np.where(valid, reference / np.where(valid, policy, 1.0), np.nan)
        if not lower_is_better:
            ratio = 1.0 / ratio
        return np.log(ratio)


def _geo(
    log_ratio: np.ndarray, resamples: np.ndarray
) -> tuple[float | None, float | None, float | None]:
    """Geometric mean over (scenario, seed) and its bootstrap interval over seeds."""
    if not np.isfinite(log_ratio).any():
        return None, None, None
    score = float(np.exp(np.nanmean(log_ratio)))
    # (resample, scenario, seed) -> mean over scenarios and resampled seeds; an all-nan
    # resample (every defined ratio left out) gives nan without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        picked = log_ratio[:, resamples].transpose(1, 0, 2).reshape(len(resamples), -1)
        boot = np.nanmean(picked, axis=1)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return score, None, None
    low, high = np.quantile(boot, [0.025, 0.975])
    return score, float(np.exp(low)), float(np.exp(high))


def _win_rate(policy: np.ndarray, opponent: np.ndarray, lower_is_better: bool) -> float | None:
    valid = np.isfinite(policy) & np.isfinite(opponent)
    if not valid.any():
        return None
    mine, theirs = policy[valid], opponent[valid]
    better = mine < theirs if lower_is_better else mine > theirs
    ties = mine == theirs
    return float((better.sum() + 0.5 * ties.sum()) / valid.sum())


def suite_scores(
    suite: Suite, rows: Sequence[dict[str, Any]], baselines: dict[str, set[str]]
) -> list[EnvScores]:
    """:func:`env_scores` for every environment of ``suite`` that has rows."""
    mine = [
        r for r in rows if r["suite"] == suite.name and int(r["suite_version"]) == suite.version
    ]
    present = {r["env_id"] for r in mine}
    return [
        env_scores(suite, env_id, mine, baselines.get(env_id, set()))
        for env_id in suite.env_ids
        if env_id in present
    ]
