"""Iteration-time model: shapes, whole-iteration checks, fast path, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.core.errors import ConfigError
from schedgym.costmodels import (
    EngineOverhead,
    InferenceCostModel,
    get_cost_model,
    iteration_time_s,
    sarathi_engine_overhead,
)
from schedgym.costmodels.calibration.fitting import error_report, fit_calibration
from schedgym.costmodels.calibration.profiles import load_profiles
from schedgym.costmodels.calibration.validation import cross_model_check, sarathi_check
from schedgym.costmodels.coefficients import shipped_calibration
from schedgym.costmodels.roofline import (
    decode_attention_time_s,
    prefill_attention_time_s,
)


@pytest.fixture(scope="module")
def profiles():
    return load_profiles()


def test_decode_flat_while_memory_bound_then_grows() -> None:
    model = get_cost_model("Llama-2-7B", "A100")
    times = {b: model.iteration_time_s(decode_kv_lens=[128] * b) for b in (1, 2, 4, 8, 16, 256)}
    # Weights dominate: 16 sequences cost within 15% of one.
    assert times[16] / times[1] < 1.15
    assert times[256] / times[1] > 1.5
    assert all(
        times[a] <= times[b] for a, b in zip((1, 2, 4, 8, 16), (2, 4, 8, 16, 256), strict=True)
    )


def test_prefill_superlinear_in_chunk_at_long_kv() -> None:
    model = get_cost_model("Llama-2-7B", "A100")
    context = 16384
    small = model.iteration_time_s(prefill_chunks=[(2048, context)])
    large = model.iteration_time_s(prefill_chunks=[(4096, context)])
    assert large / small > 2.0
    # Whole prompts: attention is quadratic in the prompt length.
    assert model.iteration_time_s([(16384, 0)]) / model.iteration_time_s([(8192, 0)]) > 2.05


@pytest.mark.parametrize("overhead", [EngineOverhead(), None])
def test_piggybacked_decodes_are_almost_free(overhead: EngineOverhead | None) -> None:
    """Sarathi table 2: 3 decodes riding on a 1021-token prefill cost within 5% of it alone."""
    chosen = overhead if overhead is not None else sarathi_engine_overhead()
    model = InferenceCostModel("Yi-34B", "A100-PCIE-80GB", 2, overhead=chosen)
    alone = model.iteration_time_s([(1024, 0)])
    hybrid = model.iteration_time_s([(1021, 0)], [1020] * 3)
    assert abs(hybrid / alone - 1.0) < 0.05


def test_sarathi_whole_iterations_within_15_percent() -> None:
    points = [p for p in sarathi_check() if p.scored]
    figure2 = [p for p in points if p.source == "figure-2"]
    assert len(figure2) == 15
    # Figure-2's decode step between batch 4 and 8 (+43% measured) is the one miss (-15.5%).
    assert max(abs(p.error_pct) for p in figure2) < 16.0
    assert np.median([abs(p.error_pct) for p in figure2]) < 10.0
    held_out = [p for p in figure2 if not p.used_in_fit]
    assert all(abs(p.error_pct) <= 15.0 for p in held_out)
    table2 = {(p.prefill_tokens, p.decode_tokens): p for p in points if p.source == "table-2"}
    assert abs(table2[(1024, 0)].error_pct) <= 15.0
    assert abs(table2[(1021, 3)].error_pct) <= 15.0


def test_sarathi_decode4_measurements_disagree_beyond_any_15_percent_model() -> None:
    """Why table-2's decode-only point is not scored as a failure of the model."""
    points = {(p.source, p.prefill_tokens, p.decode_tokens): p for p in sarathi_check()}
    low = points[("figure-2", 0, 4)].measured_s
    high = points[("table-2", 0, 4)].measured_s
    # A prediction x within 15% of both needs x <= 1.15 low and x >= 0.85 high.
    assert 1.15 * low < 0.85 * high


def test_cross_model_fit_on_7b_predicts_70b(profiles) -> None:
    result = cross_model_check(profiles)
    assert result["points"] > 1000
    assert result["mape_pct"] <= 20.0


def test_held_out_mape_per_group_at_most_10_percent(profiles) -> None:
    calibration = fit_calibration(profiles, holdout=True)
    rows = error_report(calibration, profiles)
    groups = {row.group for row in rows}
    assert {"linear", "elementwise", "embedding", "attn_prefill", "attn_decode"} <= groups
    for row in rows:
        assert row.mape_pct <= 10.0, row


def test_shipped_coefficients_match_a_refit(profiles) -> None:
    shipped = shipped_calibration()
    refit = fit_calibration(profiles, holdout=False)
    for device, ops in refit.devices.items():
        for op, coeffs in ops.items():
            got = shipped.devices[device][op].to_dict()
            for name, value in coeffs.to_dict().items():
                assert got[name] == pytest.approx(value, rel=1e-6), (device, op, name)


def test_fast_path_matches_validated_path_and_breakdown_sums() -> None:
    model = InferenceCostModel("Llama-3-8B", "H100", 2, overhead=sarathi_engine_overhead())
    chunks, kv = [(512, 1000), (37, 0)], [100, 2000, 4000, 5]
    full = model.iteration_time_s(chunks, kv)
    fast = model.time_from_summary_s(len(kv), float(sum(kv)), chunks)
    assert fast == pytest.approx(full, rel=1e-12)
    assert sum(model.breakdown_s(chunks, kv).values()) == pytest.approx(full, rel=1e-9)
    assert model.iteration_time_s() == 0.0


def test_table_beyond_cap_agrees_with_table() -> None:
    small = InferenceCostModel("Llama-2-7B", "A100", table_tokens=64)
    big = InferenceCostModel("Llama-2-7B", "A100")
    assert small.iteration_time_s([(3000, 10)]) == pytest.approx(
        big.iteration_time_s([(3000, 10)]), rel=1e-9
    )


def test_scalar_attention_mirrors_the_roofline_law() -> None:
    model = InferenceCostModel("Mistral-7B", "A100", 1)
    # The coefficients the model runs with: the shipped ones at the GPU's compute scale.
    coeffs = model.coefficients
    chunks, contexts = np.array([1.0, 100, 700, 4096]), np.array([0.0, 5000, 20, 8000])
    vector = prefill_attention_time_s(
        model.model, 1, model.gpu, coeffs["attn_prefill"], chunks, contexts
    )
    scalar = [
        model.prefill_attention_s(int(c), int(k)) for c, k in zip(chunks, contexts, strict=True)
    ]
    assert np.allclose(np.array(scalar) / model.model.layers, vector, rtol=1e-9)
    vector = decode_attention_time_s(
        model.model, 1, model.gpu, coeffs["attn_decode"], np.array([3.0]), np.array([4500.0])
    )
    assert model.decode_attention_s(3, 4500.0) / model.model.layers == pytest.approx(vector[0])


def test_generalises_to_unprofiled_gpus_in_datasheet_order() -> None:
    batch = {"prefill_chunks": [(2048, 0)], "decode_kv_lens": [1024] * 16}
    a10 = iteration_time_s("Mistral-7B", "A10", **batch)
    a40 = iteration_time_s("Mistral-7B", "A40", **batch)
    a100 = iteration_time_s("Mistral-7B", "A100", **batch)
    h100 = iteration_time_s("Mistral-7B", "H100", **batch)
    assert a10 > a40 > a100 > h100 > 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model": "GPT-5", "gpu": "A100"}, "model"),
        ({"model": "Llama-2-7B", "gpu": "TPU"}, "gpu"),
        ({"model": "Llama-2-7B", "gpu": "A100", "tp": 3}, "tp"),
        ({"model": "Llama-2-7B", "gpu": "A100", "prefill_chunks": [(-1, 0)]}, "prefill_chunks"),
        ({"model": "Llama-2-7B", "gpu": "A100", "prefill_chunks": [(5,)]}, "prefill_chunks"),
        ({"model": "Llama-2-7B", "gpu": "A100", "decode_kv_lens": [10, -3]}, "decode_kv_lens"),
        ({"model": "Llama-2-7B", "gpu": "A100", "engine": "vllm"}, "engine"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        iteration_time_s(**kwargs)


def test_decode_profile_reads_kv_per_query_head():
    """The decode-attention profile (Llama-3.1-70B, 64 query / 8 KV heads, H100 TP4) decides how
    its kernel reads the KV cache: charging the reads per query head with ``kv_cache_size`` as
    the batch total fits held-out batch sizes within 10%; one read per KV head (either reading
    of ``kv_cache_size``) fits far worse and needs more than the GPU's peak bandwidth."""
    import dataclasses

    from schedgym.costmodels.calibration import fitting
    from schedgym.costmodels.calibration.profiles import holdout_mask, load_profiles
    from schedgym.costmodels.roofline import decode_attention_time_s

    profiles = load_profiles()
    curve = next(c for c in profiles.attention if c.phase == "decode")
    gpu = profiles.gpu(curve.gpu)
    grouped = dataclasses.replace(curve.model, heads=curve.model.kv_heads)
    batch, kv = curve.batch_size, curve.kv_tokens
    laws = {
        "query-heads, total": lambda co, s: decode_attention_time_s(
            curve.model, curve.tp, gpu, co, batch[s], kv[s]
        ),
        "kv-heads, total": lambda co, s: decode_attention_time_s(
            grouped, curve.tp, gpu, co, batch[s], kv[s]
        ),
        "kv-heads, per sequence": lambda co, s: decode_attention_time_s(
            grouped, curve.tp, gpu, co, batch[s], batch[s] * kv[s]
        ),
    }
    held = holdout_mask(batch)
    names = ("memory_eff", "floor_s", "sharpness", "cta_latency_s")
    mape, eff = {}, {}
    for name, law in laws.items():
        coeffs = fitting._fit(names, lambda co, law=law: law(co, ~held), curve.times_s[~held])
        predicted = law(coeffs, held)
        mape[name] = float(np.mean(np.abs(predicted / curve.times_s[held] - 1.0))) * 100.0
        eff[name] = coeffs.memory_eff
    assert mape["query-heads, total"] < 10.0
    assert eff["query-heads, total"] < 1.0
    for name in ("kv-heads, total", "kv-heads, per sequence"):
        assert mape[name] > 2.5 * mape["query-heads, total"]
        assert eff[name] > 1.0  # a bandwidth above the datasheet's: not a physical fit


def test_gqa_decode_reads_each_kv_head_once():
    """``gqa_decode`` divides the bandwidth-bound decode attention by the query heads per KV
    head (4 for Mistral-7B) and changes nothing for a model without GQA or a lone sequence."""
    per_query = InferenceCostModel("Mistral-7B", "A100")
    grouped = InferenceCostModel("Mistral-7B", "A100", gqa_decode=True)
    big = (128, 128 * 2000)
    ratio = per_query.decode_attention_s(*big) / grouped.decode_attention_s(*big)
    assert 3.0 < ratio <= 4.0
    assert grouped.decode_attention_s(1, 500) == pytest.approx(
        per_query.decode_attention_s(1, 500), rel=0.05
    )
    mha = InferenceCostModel("Llama-2-7B", "A100")
    mha_grouped = InferenceCostModel("Llama-2-7B", "A100", gqa_decode=True)
    assert mha.decode_attention_s(*big) == mha_grouped.decode_attention_s(*big)
