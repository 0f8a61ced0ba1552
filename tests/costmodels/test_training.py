"""Shape and calibration tests of the training-step cost model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from schedgym.costmodels.calibration.training_fit import (
    LLAMA3_MFU_8K,
    LLAMA3_MFU_131K_CP16,
    TABLE_PATH,
    calibration_report,
    derive_training_table,
    fit_training_calibration,
    training_table_json,
)
from schedgym.costmodels.hardware import get_gpu, get_model, model_names
from schedgym.costmodels.training import (
    LinkTable,
    TrainingCalibration,
    get_training_cost_model,
    non_embedding_params,
    shipped_training_calibration,
    training_flops,
)


@pytest.fixture(scope="module")
def model_7b():
    return get_training_cost_model("Llama-2-7B", "H100")


@pytest.mark.parametrize("name", model_names())
def test_attention_equals_linear_flops_at_n_over_lh(name):
    model = get_model(name)
    n = non_embedding_params(model)
    crossover = n / (model.layers * model.hidden)
    for s, relation in ((crossover, 0), (0.5 * crossover, -1), (2.0 * crossover, 1)):
        linear = 6.0 * n * s
        attention = float(training_flops(model, s)) - linear
        assert np.sign(round(attention / linear - 1.0, 9)) == relation


def test_non_embedding_params_match_the_catalogue():
    # 6.48e9 for Llama-2-7B: the catalogue's 6.7B minus the two 32000 x 4096 embeddings.
    model = get_model("Llama-2-7B")
    embeddings = 2 * model.vocab * model.hidden
    assert non_embedding_params(model) + embeddings == pytest.approx(6.74e9, rel=0.01)


@pytest.mark.parametrize("degree", [16, 64])
def test_exposed_comm_falls_to_zero_as_tokens_per_rank_grow(model_7b, degree):
    # Groups beyond one node: the exchange is exposed for small shards and hides once each
    # rank's attention block (quadratic in the shard) outlasts the (linear) KV transfer. For the
    # tiniest shards the attention kernel's fixed cost hides it too, so the curve rises first.
    tokens = np.geomspace(256, 262144, 40)
    exposed = np.array([model_7b.sequence(t * degree, degree, True).exposed_comm_s for t in tokens])
    peak = int(np.argmax(exposed))
    assert exposed[peak] > 0.1
    assert np.all(np.diff(exposed[peak:]) <= 1e-12)
    assert exposed[-1] == 0.0


def test_packed_short_sequences_expose_even_nvlink(model_7b):
    # 32 sequences of 2048 tokens split over 8 ranks: every KV shard travels the ring while each
    # sequence's attention is tiny, so the exchange shows even on NVLink; one long sequence of the
    # same tokens per rank hides it.
    degree, per_rank = 8, 32 * 2048 / 8
    packed = model_7b.microbatch(per_rank, 32 * (2048 / 8) ** 2, degree, spans_nodes=False)
    single = model_7b.microbatch(per_rank, per_rank**2, degree, spans_nodes=False)
    assert packed.exposed_comm_s > 0.0
    assert single.exposed_comm_s == 0.0


def test_network_ring_exposes_more_than_nvlink(model_7b):
    shard = 4096.0
    nvlink = model_7b.microbatch(shard, shard * shard, 8, spans_nodes=False)
    network = model_7b.microbatch(shard, shard * shard, 8, spans_nodes=True)
    assert network.exposed_comm_s > nvlink.exposed_comm_s
    assert model_7b.microbatch(shard, shard * shard, 1, False).exposed_comm_s == 0.0


def test_mfu_grows_with_tokens_per_rank_and_saturates(model_7b):
    tokens = np.geomspace(16, 1 << 20, 30)
    mfu = [model_7b.linear_mfu(t) for t in tokens]
    assert np.all(np.diff(mfu) > 0)
    assert mfu[0] < 0.5 * mfu[-1]
    assert mfu[-1] <= model_7b.peak_mfu < 0.6


def test_calibration_reproduces_llama3_and_fits_vidur():
    cal = shipped_training_calibration()
    assert cal.llama3_mfu_8k_pred == pytest.approx(LLAMA3_MFU_8K, rel=0.01)
    assert cal.llama3_mfu_131k_pred == pytest.approx(LLAMA3_MFU_131K_CP16, rel=0.01)
    for curve in cal.gemm.values():
        assert curve.mape_pct < 10.0
        assert 0.5 < curve.eta_inf < 0.95  # below hardware.json's gemm_large roofline bound
    assert 0.3 < cal.rho < 1.0
    assert "MAPE" in calibration_report()


def _assert_same_numbers(shipped, refit, where="calibration"):
    """Keys, strings and integers equal; floats to 1e-12 (a refit on another CPU may differ in
    the last bits of a libm power; the runtime reads the shipped values, so it never varies)."""
    if isinstance(shipped, dict):
        assert shipped.keys() == refit.keys(), where
        for key in shipped:
            _assert_same_numbers(shipped[key], refit[key], f"{where}.{key}")
    elif isinstance(shipped, float):
        assert shipped == pytest.approx(refit, rel=1e-12), where
    else:
        assert shipped == refit, where


def test_shipped_table_is_a_refit_of_the_shipped_data():
    shipped = json.loads(TABLE_PATH.read_text())
    refit = fit_training_calibration()
    _assert_same_numbers(shipped, json.loads(training_table_json(refit)))
    # The runtime reads the table's floats exactly (repr round trip).
    assert TrainingCalibration.from_dict(shipped["calibration"]) == shipped_training_calibration()


def test_derive_writes_the_table(tmp_path):
    path = tmp_path / "training_efficiency.json"
    calibration = derive_training_table(path)
    assert path.read_text() == training_table_json(calibration)
    assert TrainingCalibration.from_dict(json.loads(path.read_text())["calibration"]) == (
        calibration
    )


@pytest.mark.parametrize("same_node", [True, False])
def test_link_grid_matches_network_module(same_node):
    table = LinkTable(get_gpu("H100"), same_node)
    assert table.max_grid_error() < 0.10
    sizes = np.geomspace(1e4, 1e10, 13)
    np.testing.assert_allclose(table.times_s(sizes), [table.time_s(s) for s in sizes], rtol=1e-9)


def test_vectorised_microbatch_equals_scalar(model_7b):
    tokens = np.array([300.0, 5000.0, 65536.0, 90000.0])
    shard_sq = tokens * tokens / np.array([1.0, 3.0, 1.0, 1.0])
    for degree, spans in ((1, False), (8, False), (32, True)):
        vector = model_7b.microbatch_totals_s(tokens, shard_sq, degree, spans, 65536.0)
        scalar = [
            model_7b.microbatch(t, q, degree, spans, 65536.0).total_s
            for t, q in zip(tokens, shard_sq, strict=True)
        ]
        np.testing.assert_allclose(vector, scalar, rtol=1e-12)


def test_offload_only_beyond_capacity_and_hidden_behind_compute(model_7b):
    capacity = 65536.0
    within = model_7b.microbatch(60000.0, 60000.0**2, 1, False, capacity)
    assert within.exposed_offload_s == 0.0
    # Beyond capacity the PCIe traffic (2 h l bytes per offloaded token, out and back) is far
    # shorter than a 7B model's compute on those tokens, so it hides: ByteScale's premise.
    tokens = 131072.0
    beyond = model_7b.microbatch(tokens, tokens**2, 1, False, capacity)
    transfer_s = 2 * (tokens - capacity) * 2 * 4096 * 32 / get_gpu("H100").pcie_bytes_per_s
    assert transfer_s < beyond.compute_s
    assert beyond.exposed_offload_s == 0.0


def test_allreduce_grows_with_model_and_vanishes_alone():
    small = get_training_cost_model("Llama-2-7B", "H100")
    large = get_training_cost_model("Llama-2-70B", "H100")
    assert small.allreduce_s(1) == 0.0
    assert 0.0 < small.allreduce_s(64) < large.allreduce_s(64)
    assert small.allreduce_s(8) < small.allreduce_s(64)  # NVLink-only vs across nodes


def test_ideal_compute_is_a_lower_bound(model_7b):
    lengths = np.array([1 << 20, 4096.0, 4096.0])
    ideal = model_7b.ideal_compute_s(lengths, 1)
    actual = sum(model_7b.sequence(s, 1, False).total_s for s in lengths)
    assert ideal < actual
    assert math.isclose(model_7b.ideal_compute_s(lengths, 4), ideal / 4)
