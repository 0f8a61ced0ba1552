"""Bad input, as a careless or hostile user would give it (issue 13).

One table drives the ``schedgym`` command in subprocesses (``python -m schedgym.cli``, run
concurrently so the whole table costs a few seconds): every bad value must end as exactly one line
on stderr, ``schedgym: error: <field or file and line>: ...``, exit code 2, no traceback and no
output file; every valid one must run. A hypothesis test then throws random ``--set`` values at
every environment's config through the CLI's ``main()``. Actions (which no command takes) are
checked in-process on every registered environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import schedgym  # noqa: F401  (registers the ids for gym.make)
from schedgym.cli import main
from schedgym.commands.common import MAKE_ARGUMENTS, env_class
from schedgym.core.errors import InvalidActionError
from schedgym.registration import ENVS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "schedgym"
TRACE_HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens\n"


def strict_json(text: str) -> Any:
    """``json.loads`` that rejects NaN/Infinity tokens (RFC 8259)."""

    def reject(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


# ------------------------------------------------------------------------------- the files
def _write_files(root: Path) -> None:
    """Every malformed (and the BOM-prefixed, valid) file the table refers to."""
    long_cell = "5" * 200_000
    traces = {
        "non_utf8": TRACE_HEADER.encode() + b"0.0,10,5\n\xff\xfe1.0,1,1\n",
        "tokens_1e30": (TRACE_HEADER + "0.0,1e30,5\n").encode(),
        "long_field": (TRACE_HEADER + f"0.0,10,{long_cell}\n").encode(),
        "time_1e300": (TRACE_HEADER + "0.0,10,5\n1e300,10,5\n").encode(),
        "bom": b"\xef\xbb\xbf" + (TRACE_HEADER + "0.0,10,5\n0.01,20,5\n").encode(),
    }
    for name, content in traces.items():
        (root / f"trace_{name}.csv").write_bytes(content)

    shipped = (DATA / "costmodels/data/operator_profiles.csv").read_text().splitlines()
    header, row = shipped[0], shipped[1].split(",")
    columns = header.split(",")
    num_tokens, time_column = columns.index("num_tokens"), columns.index("mlp_up_proj_ms")

    def with_cell(index: int, value: str) -> bytes:
        cells = list(row)
        cells[index] = value
        return "\n".join([header, *shipped[1:20], ",".join(cells)]).encode() + b"\n"

    profiles = {
        "non_utf8": "\n".join(shipped[:20]).encode() + b"\n\xffvidur,bad\n",
        "tokens_1e30": with_cell(num_tokens, "1e30"),
        "long_field": with_cell(0, "v" * 200_000),
        "time_1e300": with_cell(time_column, "1e300"),
        "bom": b"\xef\xbb\xbf" + "\n".join(shipped[:40]).encode() + b"\n",
    }
    for name, content in profiles.items():
        folder = root / f"profiles_{name}"
        folder.mkdir()
        (folder / "operator_profiles.csv").write_bytes(content)

    table = json.loads((DATA / "envs/datagen/data/cost_table.json").read_text())
    text = json.dumps(table, indent=1)

    def table_with(change: Callable[[dict], None]) -> bytes:
        changed = json.loads(text)
        change(changed)
        return json.dumps(changed).encode()

    cost_tables = {
        "non_utf8": text.encode().replace(b'"cpu": "', b'"cpu": "\xff', 1),
        "tokens_1e30": table_with(lambda t: t["training_points"][0].update(batch_size=1e30)),
        "long_field": table_with(lambda t: t.update(cpu="x" * 200_000)),
        "time_1e300": table_with(lambda t: t["solver_fit"].update(per_cell_s=1e300)),
        "bom": b"\xef\xbb\xbf" + text.encode(),
    }
    for name, content in cost_tables.items():
        (root / f"cost_table_{name}.json").write_bytes(content)
    (root / "existing_file").write_text("keep me\n")


def _read_only_dir(root: Path) -> str:
    """A folder this process cannot write into: a chmod 555 one, or /sys when running as root
    (root ignores permission bits; sysfs refuses new files to everyone)."""
    folder = root / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        return "/sys"
    return str(folder)


# ------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    """One invocation: ``argv`` (``{tmp}`` and ``{ro}`` are filled in) and what must happen:
    ``error`` (a regex the message after ``schedgym: error: `` must match; exit 2, one line)
    or ``check`` (called with stdout and stderr of a successful run)."""

    name: str
    argv: tuple[str, ...]
    error: str | None = None
    check: Callable[[str, str], None] | None = None
    no_file: tuple[str, ...] = field(default=())


SOC = ("evaluate", "SoCDAG-v0", "--policy", "heft", "--preset", "tiny")
LLM = ("evaluate", "LLMCluster-v0", "--policy", "round-robin", "--preset", "tiny")
DATAGEN = ("evaluate", "OnlineDataGen-v0", "--policy", "random", "--preset", "tiny")
DATAGEN += ("--set", "max_episode_steps=3")
COST = ("cost", "--model", "Llama-2-7B", "--gpu", "A100")
CAPACITY = ("capacity", "PrefillChunk-v0", "--policy", "vllm", "--preset", "tiny")
CAPACITY += ("--slo-tbt-p99", "0.1")
# Files: the message names the file and the line of the problem.
FILE_ERRORS = {
    "non_utf8": r"line \d+: not UTF-8",
    "tokens_1e30": r"(line \d+: \w+ must be an integer in|outside \[1, )",
    "long_field": r"(line \d+: longer than 65536 bytes|at most 200 characters)",
    "time_1e300": r"(line \d+: \w+ must be a number in|must be in \[0, 3600\] s)",
}


def _summary_of(stdout: str) -> dict[str, Any]:
    return strict_json(stdout)["summary"]


def _ran(stdout: str, stderr: str) -> None:
    assert "mean" in stdout and stderr == ""


def _steps_limited(stdout: str, stderr: str) -> None:
    assert _summary_of(stdout)["jobs_completed"] == 0 and stderr == ""


def _nan_is_null(stdout: str, stderr: str) -> None:
    payload = strict_json(stdout)
    # No high-priority class: its percentiles are missing, written as null (not NaN).
    assert payload["episodes"][0]["ttft_p99_s_high"] is None
    assert payload["summary"]["ttft_p99_s_high"] is None
    assert payload["summary"]["requests_completed"] == 12


def _over_at_reset(stdout: str, stderr: str) -> None:
    summary = _summary_of(stdout)
    assert summary["requests_rejected"] == 12 and summary["requests_completed"] == 0
    assert strict_json(stdout)["end_reasons"][0].startswith("all 12 requests were rejected")
    lines = stderr.splitlines()
    assert len(lines) == 1 and "rejected on arrival" in lines[0] and "KV" in lines[0]


def _cost_closed_form(stdout: str, stderr: str) -> None:
    payload = strict_json(stdout)
    assert payload["num_decodes"] == 1_000_000 and payload["sum_decode_kv_tokens"] == 4_096_000_000
    assert 0 < payload["iteration_time_s"] < 1e4


def _leaderboard_json(stdout: str, stderr: str) -> None:
    pass  # the file is parsed strictly in test_leaderboard_output_is_strict_json


CASES: tuple[Case, ...] = (
    # evaluate: seeds and gym.make arguments given with --set
    Case("seed_negative", (*SOC, "--seed", "-1"), r"^--seed: must be in \[0, "),
    Case("seed_huge", (*SOC, "--seed", str(2**70)), r"^--seed: must be in \[0, "),
    Case("episodes_zero", (*SOC, "--episodes", "0"), r"^--episodes: must be in \[1, "),
    Case("render_mode_human", (*SOC, "--set", "render_mode=human"), r"^render_mode: must be one"),
    Case("render_mode_ansi", (*SOC, "--set", "render_mode=ansi"), check=_ran),
    Case("max_steps_negative", (*SOC, "--set", "max_episode_steps=-3"), r"^max_episode_steps: "),
    Case("max_steps_float", (*SOC, "--set", "max_episode_steps=2.5"), r"^max_episode_steps: "),
    Case("max_steps_ok", (*SOC, "--json", "--set", "max_episode_steps=2"), check=_steps_limited),
    Case("env_checker_false", (*SOC, "--set", "disable_env_checker=false"), check=_ran),
    Case("env_checker_string", (*SOC, "--set", "disable_env_checker=no"), r"^disable_env_checker"),
    Case("unknown_field", (*SOC, "--set", "qps=3"), r"^qps: unknown config field"),
    Case("not_a_field_name", (*SOC, "--set", "a b=3"), r"^--set: 'a b' is not a field name"),
    Case("job_mix_1e308", (*SOC, "--set", 'job_mix={"wifi_tx":1e308,"wifi_rx":1e308}'), check=_ran),
    Case(
        "job_mix_infinity", (*SOC, "--set", 'job_mix={"wifi_tx":Infinity}'), r"^job_mix\[wifi_tx\]"
    ),
    # A rate so low that arrivals pass what a float64 clock resolves (once an endless loop).
    Case(
        "llm_rate_tiny",
        (*LLM, "--set", "request_rate_per_s=1e-297"),
        r"^request_rate_per_s: at 1e-297 req/s",
    ),
    # --set preset beside --preset: refused; alone: honoured
    Case("preset_twice", (*SOC, "--set", "preset=light"), r"^preset: given both as --preset"),
    Case(
        "preset_in_set",
        ("evaluate", "SoCDAG-v0", "--policy", "heft", "--set", "preset=tiny"),
        check=_ran,
    ),
    Case(
        "preset_not_a_name",
        ("evaluate", "SoCDAG-v0", "--policy", "heft", "--set", "preset=3"),
        r"^preset: must be a preset name",
    ),
    # an episode over at reset: counted, explained, and not an error
    Case(
        "all_rejected",
        (*LLM, "--json", "--set", "lengths=fixed", "--set", "fixed_prompt_tokens=100000"),
        check=_over_at_reset,
    ),
    # strict JSON: no high-priority class, so its percentiles are missing
    Case(
        "json_nan_is_null", (*LLM, "--json", "--set", "high_priority_share=0"), check=_nan_is_null
    ),
    # trace files, whatever the arrival mode
    *(
        Case(
            f"trace_{name}",
            (*LLM, "--set", "arrival_process=trace", "--set", f"trace={{tmp}}/trace_{name}.csv"),
            r"^\{tmp\}/trace_" + name + r"\.csv, " + pattern,
        )
        for name, pattern in FILE_ERRORS.items()
    ),
    Case(
        "trace_bom",
        (*LLM, "--set", "arrival_process=trace", "--set", "trace={tmp}/trace_bom.csv"),
        check=_ran,
    ),
    Case(
        "trace_checked_without_trace_arrivals",
        (*LLM, "--set", "trace={tmp}/trace_non_utf8.csv"),
        r"^\{tmp\}/trace_non_utf8\.csv, line 3: not UTF-8",
    ),
    Case(
        "trace_missing", (*LLM, "--set", "trace={tmp}/nowhere.csv"), r"^trace: .* nor an existing"
    ),
    # cost tables (OnlineDataGen's cost_table option)
    *(
        Case(
            f"cost_table_{name}",
            (*DATAGEN, "--set", f"cost_table={{tmp}}/cost_table_{name}.json"),
            r"^cost_table: \{tmp\}/cost_table_" + name + r"\.json\b.*" + pattern,
        )
        for name, pattern in FILE_ERRORS.items()
    ),
    Case("cost_table_bom", (*DATAGEN, "--set", "cost_table={tmp}/cost_table_bom.json"), check=_ran),
    # calibrate --profiles
    *(
        Case(
            f"profiles_{name}",
            ("calibrate", "--profiles", f"{{tmp}}/profiles_{name}"),
            r"^profiles: \{tmp\}/profiles_" + name + r"/operator_profiles\.csv, " + pattern,
        )
        for name, pattern in FILE_ERRORS.items()
    ),
    Case(
        "profiles_bom",
        ("calibrate", "--profiles", "{tmp}/profiles_bom"),
        check=lambda out, err: None,
    ),
    # output locations, checked before any work
    Case(
        "leaderboard_out_file",
        ("leaderboard", "--out", "{tmp}/existing_file"),
        r"^--out: '\{tmp\}/existing_file' exists and is not a folder",
    ),
    Case(
        "leaderboard_out_dev_null",
        ("leaderboard", "--out", "/dev/null"),
        r"^--out: '/dev/null' exists and is not a folder",
    ),
    Case(
        "leaderboard_out_read_only",
        ("leaderboard", "--out", "{ro}/results"),
        r"^--out: cannot create folder|^--out: folder .* is not writable",
    ),
    Case(
        "leaderboard_out_ok",
        ("leaderboard", "--env", "MeshAssign-v0", "--policy", "static", "--out", "{tmp}/results"),
        check=_leaderboard_json,
    ),
    Case(
        "calibrate_out_missing_folder",
        ("calibrate", "--out", "{tmp}/missing/coefficients.json"),
        r"^--out: folder .* does not exist",
        no_file=("{tmp}/missing",),
    ),
    Case(
        "calibrate_out_read_only",
        ("calibrate", "--out", "{ro}/coefficients.json"),
        r"^--out: folder .* is not writable",
    ),
    Case(
        "calibrate_out_is_folder",
        ("calibrate", "--out", "{tmp}"),
        r"^--out: .* exists and is not a regular file",
    ),
    Case(
        "profile_out_is_file",
        ("profile", "--out", "{tmp}/existing_file"),
        r"^--out: .* exists and is not a folder",
    ),
    # cost: decode batches in closed form, inputs bounded
    Case(
        "cost_decode_huge", (*COST, "--decode", "1000000000:1"), r"^decode: BATCH must be in \[0, "
    ),
    Case("cost_decode_kv_huge", (*COST, "--decode", "8:1000000000000"), r"^decode: KV must be in"),
    Case("cost_prefill_huge", (*COST, "--prefill", "1e9"), r"^prefill: expected integers"),
    Case(
        "cost_decode_total",
        (*COST, "--decode", "600000:1", "--decode", "600000:1"),
        r"^decode: at most 1000000 decoding requests in all",
    ),
    Case(
        "cost_decode_million",
        (*COST, "--json", "--decode", "1000000:4096"),
        check=_cost_closed_form,
    ),
    # capacity
    Case(
        "capacity_unsupported_env",
        ("capacity", "SoCDAG-v0", "--policy", "heft", "--slo-tbt-p99", "0.1"),
        r"^env: capacity searches the request_rate_per_s of an environment with a TBT SLO "
        r".*PrefillChunk-v0",
    ),
    Case("capacity_max_qps_huge", (*CAPACITY, "--max-qps", "1e308"), r"^--max-qps: must be in"),
    Case(
        "capacity_start_qps_nan", (*CAPACITY, "--start-qps", "nan"), r"^--start-qps: must be finite"
    ),
    Case(
        "capacity_rate_in_set",
        (*CAPACITY, "--set", "request_rate_per_s=3"),
        r"^request_rate_per_s: set by this command",
    ),
    # the deprecated name of the rate is refused too
    Case("capacity_qps_in_set", (*CAPACITY, "--set", "qps=3"), r"^qps: set by this command"),
)


@dataclass(frozen=True)
class Outcome:
    case: Case
    returncode: int
    stdout: str
    stderr: str
    tmp: str
    read_only: str


# Cases also run through a fresh `python -m schedgym.cli`, to show that the fork server's
# children behave exactly as the real entry point does.
FRESH_INTERPRETER = ("trace_non_utf8", "trace_bom")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case run once, each in its own process (forked from one warm interpreter by
    tests/cli_forkserver.py, a few at a time), plus FRESH_INTERPRETER cases in fresh ones."""
    root = tmp_path_factory.mktemp("bad_input")
    _write_files(root)
    read_only = _read_only_dir(root)
    logs = tmp_path_factory.mktemp("bad_input_logs")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}

    def argv_of(case: Case) -> list[str]:
        return [arg.replace("{tmp}", str(root)).replace("{ro}", read_only) for arg in case.argv]

    spec = {
        "cases": [{"name": c.name, "argv": argv_of(c), "cwd": str(root)} for c in CASES],
        "out_dir": str(logs),
        "result": str(logs / "codes.json"),
        "timings": str(logs / "timings.json"),
        "jobs": min(4, os.cpu_count() or 1),
    }
    (logs / "spec.json").write_text(json.dumps(spec))
    by_name = {case.name: case for case in CASES}
    fresh: dict[str, Any] = {}
    try:
        server = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "cli_forkserver.py"), str(logs / "spec.json")],
            cwd=root,
            env=env,
        )
        for name in FRESH_INTERPRETER:
            fresh[name] = subprocess.run(
                [sys.executable, "-m", "schedgym.cli", *argv_of(by_name[name])],
                capture_output=True,
                text=True,
                cwd=root,
                env=env,
                timeout=120,
            )
        assert server.wait(timeout=300) == 0
    finally:
        (root / "read_only").chmod(0o755)
    codes = json.loads((logs / "codes.json").read_text())
    results = {
        case.name: Outcome(
            case,
            codes[case.name],
            (logs / f"{case.name}.stdout").read_text(),
            (logs / f"{case.name}.stderr").read_text(),
            str(root),
            read_only,
        )
        for case in CASES
    }
    for name, completed in fresh.items():
        forked = results[name]
        assert (completed.returncode, completed.stderr) == (forked.returncode, forked.stderr)
        if forked.case.error is not None:
            assert completed.stdout == forked.stdout
    return results


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_bad_input_table(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    case = outcome.case
    if case.error is None:
        assert outcome.returncode == 0, outcome.stderr
        assert case.check is not None
        case.check(outcome.stdout, outcome.stderr)
        return
    lines = outcome.stderr.splitlines()
    assert outcome.returncode == 2, outcome.stderr
    assert len(lines) == 1, outcome.stderr
    assert outcome.stdout == ""
    prefix = "schedgym: error: "
    assert lines[0].startswith(prefix), lines[0]
    pattern = case.error.replace(r"\{tmp\}", re.escape(outcome.tmp))
    assert re.search(pattern, lines[0][len(prefix) :]), lines[0]
    for path in case.no_file:
        assert not Path(path.replace("{tmp}", outcome.tmp)).exists()


def test_no_command_left_a_file_behind(outcomes: dict[str, Outcome]) -> None:
    """Failed commands write nothing: the only new entry in the folder is the one valid
    leaderboard run's results."""
    tmp = Path(outcomes["leaderboard_out_ok"].tmp)
    inputs = {p.name for p in tmp.iterdir() if p.name.startswith(("trace_", "cost_", "profiles_"))}
    assert {p.name for p in tmp.iterdir()} == {"existing_file", "read_only", "results", *inputs}
    assert (tmp / "existing_file").read_text() == "keep me\n"
    assert list((tmp / "read_only").iterdir()) == []


def test_leaderboard_output_is_strict_json(outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["leaderboard_out_ok"]
    folder = Path(outcome.tmp) / "results"
    names = {p.name for p in folder.iterdir()}
    assert {"leaderboard.json", "LEADERBOARD.md", "index.html", "rows.jsonl"} <= names, (
        outcome.stderr
    )
    payload = strict_json((folder / "leaderboard.json").read_text())
    assert list(payload["environments"]) == ["schedgym/MeshAssign-v0"]
    rows = [strict_json(line) for line in (folder / "rows.jsonl").read_text().splitlines()]
    assert rows and all(row["policy"] == "static" for row in rows)


# ------------------------------------------------------------------ actions, in every env
@pytest.fixture(params=[entry.env_id for entry in ENVS])
def env(request: pytest.FixtureRequest) -> gym.Env:
    entry = next(e for e in ENVS if e.env_id == request.param)
    made = gym.make(entry.env_id, preset=entry.smoke_preset, disable_env_checker=True)
    yield made
    made.close()


def test_non_integer_actions_are_rejected(env: gym.Env) -> None:
    env.reset(seed=0)
    valid = int(np.flatnonzero(env.unwrapped.action_masks())[0])
    for action in (
        valid + 0.7,
        float(valid),
        str(valid),
        math.inf,
        math.nan,
        None,
        True,
        np.float32(valid),
        [valid],
        np.array([valid, valid]),
    ):
        with pytest.raises(InvalidActionError, match="action: must be an integer"):
            env.unwrapped.advance(action)
    # Integer forms are accepted: numpy scalars and one-element integer arrays (model.predict).
    env.step(np.array([valid], np.int64))


def test_sample_refuses_when_no_action_is_valid(env: gym.Env) -> None:
    with pytest.raises(InvalidActionError, match="no action is valid now"):
        env.action_space.sample()  # before reset
    env.reset(seed=0)
    assert env.unwrapped.action_masks()[int(env.action_space.sample())]
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    with pytest.raises(InvalidActionError, match="no action is valid now"):
        env.action_space.sample()


def test_episode_over_at_reset_says_why() -> None:
    env = gym.make(
        "schedgym/LLMCluster-v0", preset="tiny", lengths="fixed", fixed_prompt_tokens=100_000
    )
    env.reset(seed=0)
    sim_env = env.unwrapped
    assert sim_env.episode_over
    reason = sim_env.end_reason()
    assert reason is not None and reason.startswith("all 12 requests were rejected on arrival")
    assert sim_env.summary()["requests_rejected"] == 12
    with pytest.raises(InvalidActionError, match="the episode ended at reset\\(\\): all 12"):
        env.step(0)
    # An ordinary episode is not over at reset and has no such reason.
    env = gym.make("schedgym/LLMCluster-v0", preset="tiny")
    env.reset(seed=0)
    assert not env.unwrapped.episode_over and env.unwrapped.end_reason() is None


# -------------------------------------------------- random --set values at every config
FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 3, -1, 8, 64, 1000, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1e-300, 1e308, -1e308, 5e-324, -0.0]),
    st.text(max_size=12),
    st.sampled_from(["tiny", "raise", "substitute", "poisson", "trace", "ds3", "fifo"]),
    st.lists(st.integers(0, 10), max_size=3),
    st.dictionaries(st.text(max_size=8), st.floats(allow_nan=False), max_size=3),
)


def _config_fields(env_id: str) -> list[str]:
    return [f.name for f in fields(env_class(env_id).config_class)]


def _near(default: Any) -> st.SearchStrategy[Any]:
    """Values a user might plausibly type for a field whose tiny-preset value is ``default``:
    around it, at the edges of typical ranges, and of a neighbouring type."""
    if isinstance(default, bool):
        return st.sampled_from([not default, 0, 1, "true"])
    if isinstance(default, int):
        return st.one_of(
            st.integers(-2, 2 * default + 2),
            st.sampled_from([default * 10, default * 1000, 10**9, float(default) + 0.5]),
        )
    if isinstance(default, float):
        return st.one_of(
            st.floats(0.0, 4.0).map(lambda factor: default * factor),
            st.sampled_from([-default, default * 1e3, default * 1e-6, 1e-9, 1e9]),
        )
    if isinstance(default, dict):
        return st.dictionaries(
            st.sampled_from(sorted(default) or ["x"]), st.floats(0.0, 1e308), max_size=len(default)
        )
    if isinstance(default, tuple | list):
        return st.lists(st.integers(-1, 64), max_size=4)
    return st.sampled_from(["", "x", str(default).upper()])


def _tiny_config_values(env_id: str, preset: str) -> dict[str, Any]:
    config = gym.make(env_id, preset=preset, disable_env_checker=True).unwrapped.config
    return {f.name: getattr(config, f.name) for f in fields(config)}


def _set_argument(name: str, value: Any) -> str:
    # JSON where the value has a JSON form (NaN/Infinity included, as json.loads reads them),
    # else the raw string, as a user would type it.
    return f"{name}={value if isinstance(value, str) else json.dumps(value)}"


@pytest.mark.parametrize("entry", ENVS, ids=[entry.env_id for entry in ENVS])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_set_values_run_or_fail_in_one_line(entry: Any, data: st.DataObject) -> None:
    defaults = _tiny_config_values(entry.env_id, entry.smoke_preset)
    names = st.sampled_from([*_config_fields(entry.env_id), *MAKE_ARGUMENTS, "preset"])
    overrides = data.draw(
        st.lists(
            names.flatmap(
                lambda name: st.tuples(
                    st.just(name),
                    st.one_of(FIELD_VALUES, _near(defaults[name]))
                    if name in defaults
                    else FIELD_VALUES,
                )
            ),
            min_size=1,
            max_size=2,
            unique_by=lambda pair: pair[0],
        )
    )
    argv = ["evaluate", entry.env_id, "--policy", "random", "--json"]
    argv += ["--set", "max_episode_steps=20"]
    if all(name != "preset" for name, _ in overrides):
        argv += ["--preset", entry.smoke_preset]
    for name, value in overrides:
        if name != "max_episode_steps":
            argv += ["--set", _set_argument(name, value)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    event(f"exit {code}")
    if code == 0:
        strict_json(stdout.getvalue())
        assert all("error" not in line for line in stderr.getvalue().splitlines())
    else:
        lines = stderr.getvalue().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("schedgym: error: "), (
            argv,
            stderr.getvalue(),
        )
