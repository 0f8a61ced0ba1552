"""Replay stored action traces and confirm each row's metrics (CompilerGym's ``validate``).

Each row names its frozen suite, scenario and seed; replay builds that environment, resets it
with the seed, applies the stored actions one by one, and compares the episode's summary, return
and length with the row (for policies that also act outside the action space, the policy is
rerun instead, see :func:`replay_row`). A row whose metrics were edited, whose trace is corrupt,
whose actions no longer end the episode, or that was made under another suite digest (an
environment config changed since) fails, and is named in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schedgym.core.errors import SchedGymError
from schedgym.leaderboard.episode import make_env
from schedgym.leaderboard.rows import iter_rows, rows_path
from schedgym.leaderboard.suites import get_suite
from schedgym.leaderboard.trace import decode_actions

# Replays on the same machine are bit-identical; the tolerance only absorbs the last-bit
# differences of numpy's vector maths (x ** p, exp, log) and BLAS kernels on other CPUs. An
# edited value is far outside it.
RELATIVE_TOLERANCE = 1e-9
# OnlineDataGen trains a numpy MLP surrogate over the whole episode, which amplifies a BLAS
# kernel's last-bit differences: rows made on an AVX2 machine replay on an AVX-512 one within
# ~3e-7 (measured on the smoke suite). A tampered value still moves far more.
RELATIVE_TOLERANCE_BY_ENV = {"schedgym/OnlineDataGen-v0": 1e-5}


@dataclass
class Failure:
    """A row that did not replay to its stored values."""

    line: int
    row_name: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line} ({self.row_name}): {self.reason}"


def row_name(row: dict[str, Any]) -> str:
    """How a row is named in messages: suite, scenario, seed and policy."""
    return (
        f"{row.get('suite')} v{row.get('suite_version')} {row.get('env_id')}/"
        f"{row.get('scenario')} seed {row.get('seed')} policy {row.get('policy')}"
    )


def _same(stored: Any, replayed: Any, rel_tol: float = RELATIVE_TOLERANCE) -> bool:
    if isinstance(replayed, float) and not math.isfinite(replayed):
        return stored is None  # strict JSON stores non-finite values as null
    if isinstance(stored, bool) or isinstance(replayed, bool):
        return stored == replayed
    if isinstance(stored, int | float) and isinstance(replayed, int | float):
        return math.isclose(stored, replayed, rel_tol=rel_tol, abs_tol=1e-12)
    return bool(stored == replayed)


def replay_row(row: dict[str, Any], envs: dict[tuple[str, int, str, str], Any]) -> str | None:
    """None when ``row`` replays to its stored values, else why not (one line).

    The stored actions are replayed first. A policy may also act outside the action space (an
    engine hook such as ``regret-sjf``'s admission order), which actions alone do not replay;
    then the policy, deterministic given the seed, is run again, and the row is confirmed when
    the rerun reproduces the stored actions and every stored value.
    """
    reason = _replay_trace(row, envs)
    if reason is None:
        return None
    rerun = _rerun_policy(row, envs)
    return None if rerun is None else reason


def _rerun_policy(row: dict[str, Any], envs: dict[tuple[str, int, str, str], Any]) -> str | None:
    from schedgym.core.rollout import run_episode
    from schedgym.leaderboard.policies import build_policy

    try:
        env = _env(row, envs)
        policy = build_policy(row["env_id"], row["policy"])
        result = run_episode(env, policy, int(row["seed"]), record_actions=True)
        if result.actions != decode_actions(row["actions"]):
            return "the rerun took other actions"
    except Exception as error:  # any failure to rerun leaves the replay's verdict
        return f"cannot rerun: {error}"
    return compare_replay(row, dict(result.metrics), result.steps, result.episode_return)


def _env(row: dict[str, Any], envs: dict[tuple[str, int, str, str], Any]) -> Any:
    suite = get_suite(row["suite"], int(row["suite_version"]))
    key = (suite.name, suite.version, row["env_id"], row["scenario"])
    if key not in envs:
        envs[key] = make_env(suite.scenario(row["env_id"], row["scenario"]))
    return envs[key]


def _replay_trace(row: dict[str, Any], envs: dict[tuple[str, int, str, str], Any]) -> str | None:
    try:
        env = _env(row, envs)
        actions = decode_actions(row["actions"])
        env.reset(seed=int(row["seed"]))
        unwrapped = env.unwrapped
        step_limit = getattr(env.spec, "max_episode_steps", None)
        total_reward = 0.0
        # An episode can be over at reset() already (then the trace is empty).
        done = bool(getattr(unwrapped, "episode_over", False))
        for index, action in enumerate(actions):
            if done:
                return f"the episode ended after {index} of {len(actions)} stored actions"
            reward, terminated, truncated, _ = unwrapped.advance(action)
            total_reward += reward
            done = terminated or truncated or (step_limit is not None and index + 1 >= step_limit)
        if not done:
            return f"the episode has not ended after the {len(actions)} stored actions"
        replayed = dict(unwrapped.summary())
    except (KeyError, TypeError, ValueError, SchedGymError) as error:
        return f"cannot replay: {error}"
    return compare_replay(row, replayed, len(actions), total_reward)


def compare_replay(
    row: dict[str, Any], replayed: dict[str, Any], steps: int, total_reward: float
) -> str | None:
    """What differs between a row and its replay (metrics, steps, return), or None."""
    stored = row.get("metrics")
    if not isinstance(stored, dict):
        return "no metrics"
    problems = []
    rel_tol = RELATIVE_TOLERANCE_BY_ENV.get(str(row.get("env_id")), RELATIVE_TOLERANCE)
    for key in sorted(set(stored) | set(replayed)):
        if key not in stored or key not in replayed:
            problems.append(f"{key} only in the {'replay' if key in replayed else 'row'}")
        elif not _same(stored[key], replayed[key], rel_tol):
            problems.append(f"{key} stored {stored[key]!r}, replayed {replayed[key]!r}")
    if row.get("steps") != steps:
        problems.append(f"steps stored {row.get('steps')!r}, replayed {steps}")
    if not _same(row.get("episode_return"), total_reward, rel_tol):
        problems.append(
            f"episode_return stored {row.get('episode_return')!r}, replayed {total_reward!r}"
        )
    return "; ".join(problems) if problems else None


def _digest_problem(row: dict[str, Any], digests: dict[tuple[str, int], str]) -> str | None:
    """Why ``row`` was not made under its suite as defined now (None when it was)."""
    try:
        key = (row["suite"], int(row["suite_version"]))
        if key not in digests:
            digests[key] = get_suite(*key).digest()
    except (KeyError, TypeError, ValueError, SchedGymError) as error:
        return f"cannot replay: {error}"
    if row.get("suite_digest") != digests[key]:
        return (
            f"made under suite digest {row.get('suite_digest')}, but {key[0]} v{key[1]} is now "
            f"{digests[key]} (a scenario or an environment config changed): it cannot be replayed"
        )
    return None


def validate_dir(out_dir: str | Path) -> tuple[int, list[Failure]]:
    """Replay every row of ``out_dir``'s rows file; return (rows checked, failures)."""
    path = rows_path(out_dir)
    if not path.exists():
        from schedgym.core.errors import ConfigError

        raise ConfigError(f"DIR: {path} does not exist (run `schedgym leaderboard --out DIR`)")
    envs: dict[tuple[str, int, str, str], Any] = {}
    failures = []
    checked = 0
    digests: dict[tuple[str, int], str] = {}
    for line, row in iter_rows(path):
        checked += 1
        reason = _digest_problem(row, digests) or replay_row(row, envs)
        if reason is not None:
            failures.append(Failure(line, row_name(row), reason))
    for env in envs.values():
        env.close()
    return checked, failures
