"""``fork()`` on every registered environment and its simulator (schedgym.core.fork).

A fork taken mid-episode and the original, each driven to the end by the same deterministic
heuristic, take the same actions and end with the same summary, bit for bit; stepping one never
changes the other; what ``fork_memo()`` names is shared, the mutable state is not.
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
import types
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401  (registers the ids)
from schedgym.core.buffers import GrowingArray
from schedgym.core.fork import Forkable, shallow_list, shared, shared_items
from schedgym.core.policy import env_family, make_policy, policy_names, policy_spec
from schedgym.registration import ENVS, EnvEntry

SEED = 3

# Per family: attributes of the simulator a fork must share (immutable tables) and attributes
# it must hold its own copy of (state that changes as the episode runs).
SHARED = {
    "SoCDAG": ("config", "platform"),
    "LLMCluster": ("config", "cost_model"),
    "MeshAssign": ("config", "cost", "mixture"),
    "PrefillChunk": ("config", "cost_model"),
    "PrefixBatch": ("config", "batch"),
    "OnlineDataGen": ("config", "grid", "space", "validation"),
}
OWN = {
    "SoCDAG": ("node_state", "pe_busy_us", "events", "task_records", "job_template"),
    "LLMCluster": ("instances", "cluster", "up"),
    "MeshAssign": ("results", "finish_s", "seq_degree"),
    "PrefillChunk": ("instance", "requests", "finished", "composer"),
    "PrefixBatch": ("instance", "requests", "finished", "group_pending"),
    "OnlineDataGen": ("surrogate", "history", "region_samples", "worker_busy"),
}


def _module(factory: Any) -> str:
    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory.__module__


def _first_heuristic(entry: EnvEntry) -> str:
    """The first policy the family's heuristics module registers (not a regret learner or a
    trained agent, which other modules add)."""
    names = policy_names(entry.env_id)
    return next(
        n for n in names if _module(policy_spec(entry.env_id, n).factory) == entry.policies_module
    )


def _make(entry: EnvEntry) -> Any:
    return gym.make(entry.env_id, preset=entry.smoke_preset, disable_env_checker=True).unwrapped


def _drive(env: Any, policy: Any) -> list[int]:
    """Run ``policy`` on ``env`` from its present to the end; the actions taken."""
    actions = []
    while not env.episode_over:
        action = int(policy.act(None, env))
        actions.append(action)
        env.advance(action)
    return actions


def _bits(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with floats as their exact hex form (nan equal to nan, -0.0 apart from 0.0)."""
    return {k: float(v).hex() if isinstance(v, float) else v for k, v in summary.items()}


def _state(env: Any) -> bytes:
    """The env's whole state, serialised (equal bytes: nothing changed)."""
    return pickle.dumps(env)


def _policy(entry: EnvEntry, env: Any) -> Any:
    policy = make_policy(entry.env_id, _first_heuristic(entry))
    policy.reset(env)
    return policy


def _policy_for(fork: Any, policy: Any, env: Any) -> Any:
    """A copy of ``policy`` (a heuristic's plan so far, e.g. HEFT's timelines) that drives
    ``fork``: references to ``env`` or its simulator become the fork's."""
    return copy.deepcopy(policy, {id(env): fork, id(env.simulator): fork.simulator})


def _same_state(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
    """Whether ``a`` and ``b`` hold the same values all the way down (floats and arrays bit for
    bit, generators by their state), whichever objects they share or alias."""
    seen = set() if seen is None else seen
    if a is b or (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex()
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, GrowingArray):  # its rows only: a copy's spare capacity differs
        return _same_state(a.view(), b.view(), seen)
    if isinstance(a, np.random.Generator):
        return a.bit_generator.state == b.bit_generator.state
    if isinstance(a, int | str | bytes | np.generic | type(None) | set | frozenset):
        return bool(a == b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_state(a[k], b[k], seen) for k in a)
    if isinstance(a, list | tuple | deque):
        return len(a) == len(b) and all(_same_state(x, y, seen) for x, y in zip(a, b, strict=True))
    if isinstance(a, types.MethodType):
        return a.__func__ is b.__func__ and _same_state(a.__self__, b.__self__, seen)
    if isinstance(a, functools.partial):
        return _same_state((a.func, a.args, a.keywords), (b.func, b.args, b.keywords), seen)
    if callable(a) and not hasattr(a, "__dict__"):
        return a == b
    slots = [n for c in type(a).__mro__ for n in getattr(c, "__slots__", ())]
    return _same_state(
        (getattr(a, "__dict__", {}), [getattr(a, n, None) for n in slots]),
        (getattr(b, "__dict__", {}), [getattr(b, n, None) for n in slots]),
        seen,
    )


def _mid_episode(entry: EnvEntry) -> tuple[Any, Any]:
    """An env at the decision halfway through an episode of the family's first heuristic, and
    that heuristic."""
    env = _make(entry)
    env.reset(seed=SEED)
    steps = len(_drive(env, _policy(entry, env)))
    assert steps >= 4, f"{entry.env_id}: the smoke episode has only {steps} decisions"
    env = _make(entry)
    env.reset(seed=SEED)
    policy = _policy(entry, env)
    for _ in range(steps // 2):
        env.advance(policy.act(None, env))
    assert not env.episode_over
    return env, policy


@pytest.mark.parametrize("entry", ENVS, ids=lambda e: e.env_id)
def test_fork_evolves_identically_and_independently(entry: EnvEntry) -> None:
    env, policy = _mid_episode(entry)
    fork = env.fork()
    fork_policy = _policy_for(fork, policy, env)
    assert type(fork) is type(env) and fork is not env
    assert _same_state(fork, env)
    assert fork.np_random.bit_generator.state == env.np_random.bit_generator.state
    assert fork.np_random is not env.np_random
    before = _state(env)
    summary_before = _bits(env.summary())

    # The fork runs to the end; the original has not moved.
    fork_actions = _drive(fork, fork_policy)
    assert fork.episode_over and fork_actions
    assert _state(env) == before
    assert _bits(env.summary()) == summary_before
    assert not env.episode_over

    # The original runs to the end by the same heuristic: same actions, same summary, and the
    # finished fork does not move either.
    fork_after = _state(fork)
    env_actions = _drive(env, policy)
    assert env_actions == fork_actions
    assert _bits(env.summary()) == _bits(fork.summary())
    assert _state(fork) == fork_after
    # Not a trivial pass: the episode moved on from the fork point.
    assert _bits(env.summary()) != summary_before


@pytest.mark.parametrize("entry", ENVS, ids=lambda e: e.env_id)
def test_fork_shares_the_immutable_tables_only(entry: EnvEntry) -> None:
    env, _ = _mid_episode(entry)
    fork = env.fork()
    sim, forked = env.simulator, fork.simulator
    assert isinstance(sim, Forkable) and forked is not sim
    assert fork.config is env.config
    for name in SHARED[env_family(entry.env_id)]:
        assert getattr(sim, name) is not None and getattr(forked, name) is getattr(sim, name), name
    for name in OWN[env_family(entry.env_id)]:
        assert getattr(forked, name) is not getattr(sim, name), name
    # Every object the memo shares (mapped to itself) is the very object in the fork, and
    # nothing the memo copies is the original.
    memo = env.fork_memo()
    assert id(env.config) in memo
    kept = [obj for key, obj in memo.items() if id(obj) == key]
    assert kept and all(memo[id(obj)] is obj for obj in kept)
    copied = [obj for key, obj in memo.items() if id(obj) != key]
    assert all(id(obj) not in memo for obj in copied)


@pytest.mark.parametrize("entry", ENVS, ids=lambda e: e.env_id)
def test_simulator_fork_alone(entry: EnvEntry) -> None:
    env, policy = _mid_episode(entry)
    sim = env.simulator
    forked = sim.fork()
    assert type(forked) is type(sim) and forked is not sim
    assert forked.config is sim.config
    assert _same_state(forked, sim)
    # The original runs on; the fork stays where it was.
    kept = copy.deepcopy(forked)
    _drive(env, policy)
    assert not _same_state(forked, sim)
    assert _same_state(forked, kept)


def test_fork_before_reset_shares_the_config() -> None:
    env = _make(ENVS[0])
    assert env.simulator is None
    fork = env.fork()
    assert fork.simulator is None and fork.config is env.config
    # Both reset alike afterwards.
    fork.reset(seed=SEED)
    env.reset(seed=SEED)
    assert _same_state(fork, env)


def test_memo_helpers() -> None:
    table, log = (1, 2), [object(), object()]
    assert shared(table, None) == {id(table): table}
    memo = shallow_list(log)
    assert memo[id(log)] == log and memo[id(log)] is not log
    assert shared_items(log) == {id(x): x for x in log}
    holder = {"table": table, "log": log}
    copied = copy.deepcopy(holder, {**shared(table), **shallow_list(log), **shared_items(log)})
    assert copied["table"] is table
    assert copied["log"] is not log and all(a is b for a, b in zip(copied["log"], log, strict=True))
    copied["log"].append(math.nan)
    assert len(log) == 2


def test_forkable_default_copies_everything() -> None:
    class Counter(Forkable):
        def __init__(self) -> None:
            self.rng = np.random.default_rng(0)
            self.seen: list[float] = []

        def step(self) -> None:
            self.seen.append(float(self.rng.random()))

    counter = Counter()
    counter.step()
    fork = counter.fork()
    fork.step()
    counter.step()
    assert fork.seen == counter.seen and fork.seen is not counter.seen
    assert fork.rng is not counter.rng
