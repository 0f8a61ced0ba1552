"""The schedgym command's contract: list, evaluate, and one-line errors (the leaderboard's
own tests are in tests/leaderboard)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from schedgym.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "schedgym.cli", *args], capture_output=True, text=True
    )


def test_list_json_names_envs_and_policies(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["schedgym/SoCDAG-v0"][:2] == ["heft", "etf"]


def test_evaluate_topcuoglu_heft_reports_makespan_80(capsys):
    code = main(
        ["evaluate", "SoCDAG-v0", "--policy", "heft", "--preset", "topcuoglu",
         "--episodes", "1", "--json"]
    )  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["env"] == "schedgym/SoCDAG-v0" and payload["policy"] == "heft"
    assert payload["episodes"][0]["makespan_us"] == 80.0
    assert payload["summary"]["makespan_us"] == 80.0


def test_evaluate_set_overrides_after_preset(capsys):
    code = main(
        ["evaluate", "schedgym/SoCDAG-v0", "--policy", "fcfs", "--preset", "tiny",
         "--set", "num_jobs=3", "--set", 'job_mix={"sc_tx": 1}', "--episodes", "2",
         "--seed", "4", "--json"]
    )  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["seed"] == 4
    assert [e["jobs_completed"] for e in payload["episodes"]] == [3, 3]


def test_evaluate_table_output(capsys):
    assert main(["evaluate", "SoCDAG-v0", "--policy", "met", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "mean_job_latency_us" in out and "mean" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "Nope-v0", "--policy", "heft"], "env: unknown environment"),
        (["evaluate", "SoCDAG-v0", "--policy", "hefty"], "policy: unknown policy"),
        (["evaluate", "SoCDAG-v0", "--policy", "heft", "--preset", "x"], "preset: unknown"),
        (["evaluate", "SoCDAG-v0", "--policy", "heft", "--set", "num_jobs=-3"], "num_jobs"),
        (["evaluate", "SoCDAG-v0", "--policy", "heft", "--set", "colour=red"], "colour"),
        (["evaluate", "SoCDAG-v0", "--policy", "heft", "--set", "num_jobs"], "FIELD=VALUE"),
        (["evaluate", "SoCDAG-v0", "--policy", "heft", "--episodes", "0"], "--episodes"),
        (["evaluate", "SoCDAG-v0"], "--policy"),
        (["calibrate", "--env", "SoCDAG-v0"], "env: calibration"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
