"""Problem-agnostic core pieces."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedgym.core.config import (
    parse_override,
    require_number,
    require_probabilities,
    resolve_config,
)
from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.events import EventQueue
from schedgym.core.graph import GraphLimits, graph_spaces, pad_graph
from schedgym.core.metrics import bootstrap_ci, mean, paired_difference_ci, percentile
from schedgym.core.policy import env_family, make_policy, policy_names, register_policy
from schedgym.core.rng import spawn_streams
from schedgym.core.spaces import MaskedDiscrete, check_action


@given(st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(0, 5)), max_size=60))
def test_event_queue_pops_in_time_then_insertion_order(events):
    queue = EventQueue()
    for index, (time, kind) in enumerate(events):
        queue.push(time, kind, index)
    popped = [queue.pop() for _ in range(len(queue))]
    expected = sorted(((t, i) for i, (t, _) in enumerate(events)))
    assert [(t, p) for t, _, p in popped] == expected
    assert queue.peek_time() == float("inf") and not queue


def test_event_queue_pop_due_pops_only_events_due():
    queue = EventQueue()
    for time, payload in ((2.0, "b"), (1.0, "a"), (2.0, "c"), (3.0, "d")):
        queue.push(time, 0, payload)
    assert queue.pop_due(0.5) is None and len(queue) == 4
    assert [queue.pop_due(2.0) for _ in range(3)] == [(1.0, 0, "a"), (2.0, 0, "b"), (2.0, 0, "c")]
    assert queue.pop_due(2.0) is None and queue.peek_time() == 3.0
    assert queue.pop_due(float("inf")) == (3.0, 0, "d") and queue.pop_due(float("inf")) is None


def test_event_queue_counter_is_per_instance():
    a, b = EventQueue(), EventQueue()
    for _ in range(3):
        a.push(1.0, 0, "a")
    b.push(1.0, 0, "first")
    b.push(1.0, 0, "second")
    assert [b.pop()[2], b.pop()[2]] == ["first", "second"]
    clone = pickle.loads(pickle.dumps(a))
    assert len(clone) == 3


def test_spawned_streams_are_reproducible_and_independent():
    first = spawn_streams(np.random.default_rng(1), ["arrivals", "noise"])
    second = spawn_streams(np.random.default_rng(1), ["arrivals", "noise"])
    assert first["arrivals"].random() == second["arrivals"].random()
    assert first["noise"].random() != first["arrivals"].random()


def test_metrics():
    assert mean([]) != mean([])  # nan
    assert percentile([1, 2, 3, 4], 50) == 2.5
    with pytest.raises(ValueError, match="q"):
        percentile([1.0], 101)
    rng = np.random.default_rng(0)
    sample = rng.normal(10.0, 1.0, 200)
    low, high = bootstrap_ci(sample, rng)
    assert low < 10.0 < high and high - low < 0.6
    assert bootstrap_ci([3.0], rng) == (3.0, 3.0)
    diff, low, high = paired_difference_ci(sample + 1.0, sample, rng)
    assert diff == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_require_number_messages():
    with pytest.raises(ConfigError, match=r"rate: must be in \(0, 5\], got 0"):
        require_number("rate", 0, 0, 5, low_inclusive=False)
    with pytest.raises(ConfigError, match="count: must be an integer"):
        require_number("count", 1.5, 0, integer=True)
    with pytest.raises(ConfigError, match="x: must be finite"):
        require_number("x", float("nan"))
    with pytest.raises(ConfigError, match="flag: must be a number"):
        require_number("flag", True)
    assert require_probabilities("mix", {"a": 1, "b": 3}, ["a", "b"]) == {"a": 0.25, "b": 0.75}


def test_parse_override():
    assert parse_override("num_jobs=5") == ("num_jobs", 5)
    assert parse_override('mix={"a": 1}') == ("mix", {"a": 1})
    assert parse_override("platform=ds3") == ("platform", "ds3")
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_override("oops")


def test_resolve_config_rejects_config_and_preset_together():
    from schedgym.envs.soc.config import PRESETS, SoCConfig

    with pytest.raises(ConfigError, match="preset"):
        resolve_config(SoCConfig, PRESETS, SoCConfig(), "light", {})
    config = resolve_config(SoCConfig, PRESETS, SoCConfig(), None, {"num_jobs": 7})
    assert config.num_jobs == 7


def test_pad_graph_and_spaces():
    limits = GraphLimits(max_nodes=4, max_edges=3, node_feature_dim=2)
    padded = pad_graph(np.ones((2, 2)), np.array([[0], [1]]), limits)
    space = graph_spaces(limits)
    for key, value in padded.items():
        assert space[key].contains(value), key
    assert padded["node_mask"].tolist() == [1, 1, 0, 0]
    assert padded["edge_mask"].tolist() == [1, 0, 0]
    with pytest.raises(ConfigError, match="max_nodes"):
        pad_graph(np.ones((5, 2)), np.zeros((2, 0), int), limits)
    with pytest.raises(ConfigError, match="max_nodes"):
        GraphLimits(0, 1, 1)


def test_policy_registry():
    class Constant:
        def reset(self, env):
            pass

        def act(self, observation, env):
            return 0

    register_policy("ToyFamily", "zero", Constant, "always zero")
    assert env_family("schedgym/ToyFamily-v3") == "ToyFamily"
    assert policy_names("ToyFamily-v0") == ["zero"]
    assert make_policy("schedgym/ToyFamily-v0", "zero").act(None, None) == 0
    with pytest.raises(ConfigError, match="policy: unknown policy 'one'"):
        make_policy("ToyFamily-v0", "one")


def test_masked_discrete_samples_valid_actions():
    mask = np.array([0, 0, 1, 0, 1], dtype=bool)
    space = MaskedDiscrete(5, lambda: mask, seed=0)
    assert {int(space.sample()) for _ in range(50)} == {2, 4}
    assert int(space.sample(mask=np.array([1, 0, 0, 0, 0], np.int8))) == 0


def test_check_action_modes():
    mask = np.array([False, True, False, True])
    assert check_action(3, mask, "raise") == 3
    with pytest.raises(InvalidActionError, match="masked out"):
        check_action(0, mask, "raise")
    with pytest.raises(InvalidActionError, match=r"must be in \[0, 3\]"):
        check_action(9, mask, "raise")
    with pytest.raises(InvalidActionError, match="integer"):
        check_action("left", mask, "raise")
    assert check_action(0, mask, "substitute", fallback=3) == 3
    assert check_action(0, mask, "substitute", fallback=2) == 1


def test_percentile_of_counts_is_bit_identical_to_the_expanded_sample():
    from schedgym.core.metrics import percentile, percentile_of_counts

    rng = np.random.default_rng(0)
    for trial in range(400):
        size = int(rng.integers(1, 40))
        if trial % 3 == 0:  # many ties
            values = rng.integers(0, 5, size).astype(np.float64) * 0.01
        else:
            values = rng.lognormal(-4.0, 1.0, size)
        counts = rng.integers(0, 6, size)
        if counts.sum() == 0:
            counts[0] = 1
        expanded = np.repeat(values, counts)
        for q in (0, 1, 25, 50, 95, 99, 99.9, 100, float(rng.uniform(0, 100))):
            expected = percentile(expanded, q)
            got = percentile_of_counts(values, counts, q)
            assert np.float64(got).tobytes() == np.float64(expected).tobytes(), (trial, q)
    assert np.isnan(percentile_of_counts([1.0, np.nan], [1, 1], 50))
    assert np.isnan(percentile_of_counts([1.0], [0], 50))
    with pytest.raises(ValueError, match="counts"):
        percentile_of_counts([1.0], [-1], 50)
