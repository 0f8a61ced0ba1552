"""Workloads: arrival processes, length distributions, traces and priority classes."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.core.errors import ConfigError, TraceError
from schedgym.workloads.arrivals import arrival_times_s, interarrival_times_s
from schedgym.workloads.priorities import sample_priorities
from schedgym.workloads.request_lengths import (
    FixedLengths,
    PowerLawLengths,
    ShareGPTLengths,
    sharegpt_pairs,
)
from schedgym.workloads.requests import synthetic_stream, trace_stream
from schedgym.workloads.traces import Trace, azure_conv_trace, read_trace_csv, write_trace_csv


def test_poisson_and_gamma_rates_and_cv():
    rng = np.random.default_rng(0)
    poisson = interarrival_times_s(rng, 200_000, 5.0)
    assert poisson.mean() == pytest.approx(0.2, rel=0.02)
    assert poisson.std() / poisson.mean() == pytest.approx(1.0, rel=0.03)
    gamma = interarrival_times_s(rng, 200_000, 5.0, "gamma", cv=4.0)
    assert gamma.mean() == pytest.approx(0.2, rel=0.05)
    assert gamma.std() / gamma.mean() == pytest.approx(4.0, rel=0.1)


def test_arrival_times_limits_and_determinism():
    a = arrival_times_s(np.random.default_rng(3), 10.0, num_requests=50)
    b = arrival_times_s(np.random.default_rng(3), 10.0, num_requests=50)
    np.testing.assert_array_equal(a, b)
    assert a.size == 50 and a[0] == 0.0 and np.all(np.diff(a) >= 0)
    c = arrival_times_s(np.random.default_rng(3), 10.0, duration_s=30.0)
    assert c.max() < 30.0 and 200 < c.size < 400


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_per_s": 0.0, "num_requests": 3}, "rate_per_s"),
        ({"rate_per_s": 1.0, "num_requests": 3, "process": "weibull"}, "arrival_process"),
        ({"rate_per_s": 1.0, "num_requests": 3, "process": "gamma", "cv": -1.0}, "arrival_cv"),
        ({"rate_per_s": 1.0}, "num_requests"),
        ({"rate_per_s": 1.0, "duration_s": -1.0}, "duration_s"),
    ],
)
def test_arrival_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        arrival_times_s(np.random.default_rng(0), **kwargs)


def test_sharegpt_statistics_and_filter():
    pairs = sharegpt_pairs()
    assert pairs.shape == (30731, 2)
    assert np.median(pairs[:, 0]) == 1730 and np.median(pairs[:, 1]) == 415
    prompt, output = ShareGPTLengths(max_total_tokens=4096).sample(np.random.default_rng(0), 5000)
    assert np.all(prompt + output <= 4096) and prompt.min() >= 1 and output.min() >= 1
    with pytest.raises(ConfigError, match="max_total_tokens"):
        ShareGPTLengths(max_total_tokens=0)


@pytest.mark.parametrize("mean", [128.0, 256.0, 512.0])
def test_power_law_hits_its_mean(mean):
    prompt, output = PowerLawLengths(mean, mean).sample(np.random.default_rng(1), 100_000)
    assert prompt.mean() == pytest.approx(mean, rel=0.05)
    assert output.mean() == pytest.approx(mean, rel=0.05)
    assert prompt.min() >= 1 and prompt.max() <= 6144
    # Heavy-tailed: the median is far below the mean.
    assert np.median(prompt) < 0.5 * mean


def test_power_law_and_fixed_config_errors():
    with pytest.raises(ConfigError, match="prompt_mean_tokens"):
        PowerLawLengths(prompt_mean_tokens=10_000.0)
    with pytest.raises(ConfigError, match="output_tokens"):
        FixedLengths(output_tokens=0)
    p, o = FixedLengths(7, 9).sample(np.random.default_rng(0), 3)
    assert p.tolist() == [7, 7, 7] and o.tolist() == [9, 9, 9]


def test_priorities_share():
    classes = sample_priorities(np.random.default_rng(0), 100_000, 0.1)
    assert classes.mean() == pytest.approx(0.1, abs=0.005)
    assert not sample_priorities(np.random.default_rng(0), 10, 0.0).any()
    with pytest.raises(ConfigError, match="high_priority_share"):
        sample_priorities(np.random.default_rng(0), 10, 1.5)


def test_azure_trace_shipped():
    trace = azure_conv_trace()
    assert trace.num_requests == 19366
    assert 3400 < trace.duration_s < 3600
    assert np.all(np.diff(trace.arrived_at_s) >= 0)
    assert trace.prompt_tokens.min() >= 1 and trace.output_tokens.min() >= 1


def test_trace_round_trip(tmp_path):
    trace = Trace("t", np.array([0.0, 0.5, 1.25]), np.array([3, 4, 5]), np.array([1, 2, 3]))
    path = tmp_path / "t.csv"
    write_trace_csv(path, trace)
    back = read_trace_csv(path)
    np.testing.assert_array_equal(back.arrived_at_s, trace.arrived_at_s)
    np.testing.assert_array_equal(back.prompt_tokens, trace.prompt_tokens)
    np.testing.assert_array_equal(back.output_tokens, trace.output_tokens)


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (["0.0,10,5", "1.0,abc,5"], 3, "num_prefill_tokens"),
        (["0.0,10,5", "0.5,10,0"], 3, "num_decode_tokens"),
        (["1.0,10,5", "0.5,10,3"], 3, "earlier"),
        (["x,10,5"], 2, "arrived_at"),
        (["0.0,10"], 2, "columns"),
        (["0.0,10,5", "-1,10,5"], 3, "arrived_at"),
    ],
)
def test_bad_trace_row_names_file_and_line(tmp_path, rows, line, message):
    path = tmp_path / "bad.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + "\n".join(rows) + "\n")
    with pytest.raises(TraceError, match=rf"bad\.csv, line {line}: .*{message}"):
        read_trace_csv(path)


def test_trace_missing_column_and_file(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("arrived_at,num_prefill_tokens\n0.0,3\n")
    with pytest.raises(TraceError, match="line 1: missing column"):
        read_trace_csv(path)
    with pytest.raises(TraceError, match="cannot read"):
        read_trace_csv(tmp_path / "nope.csv")


def test_streams_use_separate_generators():
    def stream(lengths_seed: int):
        return synthetic_stream(
            np.random.default_rng(1),
            np.random.default_rng(lengths_seed),
            np.random.default_rng(3),
            ShareGPTLengths(),
            rate_per_s=2.0,
            num_requests=100,
            high_priority_share=0.2,
        )

    a, b = stream(2), stream(99)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.priority, b.priority)
    assert not np.array_equal(a.prompt_tokens, b.prompt_tokens)
    replay = trace_stream(azure_conv_trace(), np.random.default_rng(0), duration_s=60.0)
    assert replay.arrival_s.max() < 60.0 and replay.num_requests > 100
