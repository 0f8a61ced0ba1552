"""Run a policy on an environment: the one loop used by the CLI, the leaderboard and benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from schedgym.core.policy import Policy


@dataclass
class EpisodeResult:
    """What one episode produced."""

    seed: int
    metrics: dict[str, Any]
    episode_return: float
    steps: int
    walltime_s: float
    actions: list[int] = field(default_factory=list)
    # Why the episode ended at reset() with no decision (then ``steps`` is 0), else None.
    end_reason: str | None = None


def run_episode(
    env: Any,
    policy: Policy,
    seed: int,
    record_actions: bool = False,
    options: dict[str, Any] | None = None,
) -> EpisodeResult:
    """Reset ``env`` with ``seed`` (and ``options``, e.g. ``{"instance": recorded}`` to play a
    recorded episode instance), run ``policy`` to the end, and return the final summary.

    The metrics are the env's ``summary()`` when it has one, else the final ``info``. A policy
    whose ``uses_observation`` attribute is False (the baselines read the simulator) gets
    ``None`` as observation, and the env's ``advance(action)`` (``step`` without building the
    observation) is used when the env has one: same dynamics, rewards and metrics, faster.
    """
    started = time.perf_counter()
    observation, info = env.reset(seed=seed, options=options)
    policy.reset(env)
    unwrapped = env.unwrapped
    fast = not getattr(policy, "uses_observation", True) and hasattr(unwrapped, "advance")
    # The fast path bypasses the wrappers, so it applies gymnasium.make's step limit itself.
    spec = getattr(env, "spec", None)
    step_limit = getattr(spec, "max_episode_steps", None) if fast else None
    if fast:
        observation = None
    total = 0.0
    steps = 0
    actions: list[int] = []
    # An episode can be over at reset() already (nothing to decide): report it, do not step.
    done = bool(getattr(unwrapped, "episode_over", False))
    while not done:
        action = policy.act(observation, env)
        if record_actions:
            actions.append(int(action))
        if fast:
            reward, terminated, truncated, info = unwrapped.advance(action)
        else:
            observation, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps += 1
        done = terminated or truncated or (step_limit is not None and steps >= step_limit)
    summary = getattr(env.unwrapped, "summary", None)
    metrics = dict(summary()) if callable(summary) else dict(info)
    end_reason = None
    if steps == 0 and done:
        reason = getattr(unwrapped, "end_reason", None)
        end_reason = (reason() if callable(reason) else None) or "the episode ended at reset()"
    return EpisodeResult(
        seed, metrics, total, steps, time.perf_counter() - started, actions, end_reason
    )
