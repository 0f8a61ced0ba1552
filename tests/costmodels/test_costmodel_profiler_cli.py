"""The torch profiler on CPU and the calibrate / cost / profile subcommands."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys

import pytest

from schedgym.commands import costmodel
from schedgym.core.errors import ConfigError
from schedgym.costmodels.calibration.fitting import fit_calibration
from schedgym.costmodels.calibration.profiles import OPERATOR_COLUMNS, load_profiles


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    costmodel.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture(scope="module")
def cpu_profile(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("profile")
    assert (
        _run(["profile", "--model", "tiny", "--device", "cpu", "--out", str(out), "--repeats", "1"])
        == 0
    )
    return out


def test_profile_writes_the_shipped_layout(cpu_profile) -> None:
    with (cpu_profile / "operator_profiles.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == OPERATOR_COLUMNS
    assert len(rows) == 11 and all(float(r["mlp_up_proj_ms"]) > 0 for r in rows)
    provenance = json.loads((cpu_profile / "provenance.json").read_text())
    assert provenance["torch"] and provenance["model"] == "tiny"


def test_calibrate_from_a_cpu_profile(cpu_profile, capsys) -> None:
    profiles = load_profiles(cpu_profile)
    device = profiles.operators[0].gpu
    calibration = fit_calibration(profiles)
    assert {"mlp_up_proj", "attn_prefill", "attn_decode"} <= set(calibration.devices[device])
    assert _run(["calibrate", "--profiles", str(cpu_profile), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {row["group"] for row in report["operator_groups"]} >= {"linear", "attn_decode"}


def test_profile_with_missing_column_names_it(tmp_path, cpu_profile) -> None:
    text = (cpu_profile / "operator_profiles.csv").read_text().replace("mlp_act_ms", "mlp_xx")
    (tmp_path / "operator_profiles.csv").write_text(text)
    with pytest.raises(ConfigError, match=r"^mlp_act_ms:"):
        load_profiles(tmp_path)
    with pytest.raises(ConfigError, match=r"^profiles:"):
        load_profiles(tmp_path / "nowhere")


def test_cost_command_json(capsys) -> None:
    argv = [
        "cost",
        "--model",
        "Llama-2-7B",
        "--gpu",
        "A100",
        "--prefill",
        "512:1024",
        "--prefill",
        "64",
        "--decode",
        "8:300",
        "--json",
    ]
    assert _run(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["num_decodes"] == 8 and payload["prefill_chunks"] == [[512, 1024], [64, 0]]
    assert sum(payload["breakdown_s"].values()) == pytest.approx(payload["iteration_time_s"])
    assert _run(argv[:-1]) == 0
    assert "iteration_time_s" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (["--prefill", "abc"], "prefill"),
        (["--decode", "8"], "decode"),
        (["--prefill", "-5"], "prefill"),
        (["--tp", "3"], "tp"),
    ],
)
def test_cost_command_bad_input(extra: list[str], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        _run(["cost", "--model", "Llama-2-7B", "--gpu", "A100", *extra])


def test_calibrate_report_text_and_json(capsys) -> None:
    report = costmodel.calibration_report(None)
    report.pop("_calibration")
    # What --json prints: strict JSON (no NaN), with the network and whole-forward sections.
    payload = json.loads(json.dumps(report, allow_nan=False))
    assert {"network", "whole_forward", "sarathi"} <= set(payload)
    assert {r["gpu"] for r in payload["whole_forward"]["leave_one_source_out"]} == {
        "A100-SXM-80GB",
        "H100-SXM-80GB",
    }
    costmodel.print_report(report)
    out = capsys.readouterr().out
    assert "attn_decode" in out and "cross-model" in out and "held-out" in out
    # The NCCL laws' held-out error and the whole-forward errors per GPU are part of the report.
    assert "NCCL latency-bandwidth laws" in out and "all_reduce x2/2pn" in out
    assert "independent whole-forward measurements" in out and "leave one source out" in out
    for gpu in ("A100-SXM-80GB", "H100-SXM-80GB"):
        assert f"  {gpu}" in out.split("split half")[1]


def test_importing_costmodels_does_not_import_torch() -> None:
    code = (
        "import sys, schedgym.costmodels, schedgym.costmodels.calibration.profiler,"
        " schedgym.commands.costmodel;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
