"""Independent whole-forward measurements: provenance, the fitted compute scale, its errors."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from schedgym.core.errors import ConfigError
from schedgym.costmodels.calibration import whole_forward
from schedgym.costmodels.hardware import get_gpu, get_model
from schedgym.costmodels.inference import (
    InferenceCostModel,
    engine_overhead,
    shipped_compute_scales,
)

H100, A100 = "H100-SXM-80GB", "A100-SXM-80GB"


@pytest.fixture(scope="module")
def report() -> dict:
    return whole_forward.error_report()


def _rows(report: dict, key: str, **match: str) -> list[dict]:
    return [r for r in report[key] if all(r[k] == v for k, v in match.items())]


def test_every_point_has_provenance_and_known_shapes() -> None:
    points = whole_forward.load_points()
    notice = resources.files("schedgym.costmodels").joinpath("data/NOTICE").read_text()
    assert {p.source for p in points} == {"splitwise", "trtllm-v0.5", "nemo"}
    assert {p.gpu for p in points} == {A100, H100}
    for point in points:
        assert point.reference and point.locator and point.how_read and point.engine
        assert point.source in notice
        get_model(point.model)
        get_gpu(point.gpu)
    # Both GPUs have at least two sources, so leave-one-source-out exists for each.
    for gpu in (A100, H100):
        assert len({p.source for p in points if p.gpu == gpu}) >= 2


def test_bad_rows_name_the_field() -> None:
    header = (
        "source,reference,locator,how_read,engine,model,gpu,tp,batch,prompt_tokens,"
        "decode_steps,kind,measured_ms\n"
    )
    with pytest.raises(ValueError, match="kind"):
        whole_forward.load_points(header + "s,r,l,h,e,Llama-2-7B,A100,1,1,128,0,warmup,5\n")
    with pytest.raises(ValueError, match="measured_ms"):
        whole_forward.load_points(header + "s,r,l,h,e,Llama-2-7B,A100,1,1,128,0,prefill,0\n")
    with pytest.raises(ConfigError, match=r"^compute_scale:"):
        InferenceCostModel("Llama-2-7B", "H100", compute_scale=0.0)


def test_shipped_fit_matches_a_refit(report: dict) -> None:
    shipped = json.loads(
        resources.files("schedgym.costmodels").joinpath("data/whole_forward_fit.json").read_text()
    )
    assert report["fitted_compute_scale"] == pytest.approx(shipped["fitted_compute_scale"])
    assert shipped_compute_scales() == {
        gpu: scale for gpu, scale in report["compute_scale"].items() if scale != 1.0
    }
    constant = whole_forward.fit_tensorrt_llm_overhead(scales=shipped_compute_scales())
    assert constant == pytest.approx(shipped["engines"]["tensorrt-llm"]["per_iteration_s"])
    # H100 sustains less of its isolated-GEMM throughput in a whole forward pass, A100 a bit
    # more; only H100's scale earns its held-out gain and is applied.
    fitted = report["fitted_compute_scale"]
    assert fitted[H100] > 1.15 > 1.0 > fitted[A100] > 0.85
    assert report["compute_scale"] == {H100: fitted[H100], A100: 1.0}


def test_independent_errors_per_gpu(report: dict) -> None:
    """GPU-time model against the independent set: the H100 under-prediction the profiles
    alone leave (about -23% on both sources) shrinks on the prefill sweeps, and with each
    engine's constant the fit is within 11% (H100) and 10% (A100) on every source."""
    h100_splitwise = _rows(report, "independent", gpu=H100, source="splitwise")[0]
    assert h100_splitwise["operator_profiles_mean_error_pct"] < -20.0
    assert abs(h100_splitwise["applied_scale_mean_error_pct"]) < 13.0
    assert h100_splitwise["applied_scale_mape_pct"] < 15.0
    for row in report["independent"]:
        bound = 11.0 if row["gpu"] == H100 else 10.0
        assert row["with_engine_constant_mape_pct"] <= bound, row


def test_held_out_errors_per_gpu(report: dict) -> None:
    split = {r["gpu"]: r for r in report["split_half"]}
    assert split[H100]["compute_scaled_mape_pct"] <= 11.0
    assert split[H100]["compute_scaled_mape_pct"] < split[H100]["operator_profiles_mape_pct"] - 2
    # A100: the profiles alone (what ships) are within 10.5% held out.
    assert split[A100]["operator_profiles_mape_pct"] <= 10.5
    for row in _rows(report, "leave_one_source_out", gpu=A100):
        assert row["compute_scaled_mape_pct"] <= 12.0, row
    # NeMo held out: the scale from Splitwise's H100 prefill sweep predicts it within 10%. The
    # other way round is not a test: NeMo's rows are decode-heavy and cannot pin the scale.
    nemo = _rows(report, "leave_one_source_out", gpu=H100, held_out_source="nemo")[0]
    assert nemo["compute_scaled_mape_pct"] <= 10.0


def test_tensorrt_llm_preset_is_an_additive_fitted_constant(report: dict) -> None:
    engine = report["tensorrt_llm_overhead"]
    assert 1.0 < engine["per_iteration_ms"] < 3.0
    held = {r["held_out_source"]: r for r in engine["leave_one_source_out"]}
    # The constant from TensorRT-LLM's own four A100 rows predicts NeMo's 32 rows (both GPUs).
    assert held["nemo"]["mape_pct"] <= 17.0
    assert held["nemo"]["mape_pct"] < held["nemo"]["gpu_time_only_mape_pct"] / 1.4
    gpu_only = InferenceCostModel("Llama-3-8B", "H100")
    trt = InferenceCostModel("Llama-3-8B", "H100", overhead=engine_overhead("tensorrt-llm"))
    batch = [(512, 0)]
    added = trt.iteration_time_s(batch) - gpu_only.iteration_time_s(batch)
    assert added == pytest.approx(engine["per_iteration_ms"] * 1e-3, rel=1e-3)
