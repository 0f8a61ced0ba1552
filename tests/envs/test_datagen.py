"""OnlineDataGen-v0: solver against analytic solutions, buffers' invariants, surrogate, cost table,
environment semantics and the papers' effects at reduced scale."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedgym.baselines import datagen as baselines
from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.envs.datagen import blas
from schedgym.envs.datagen.blas import one_blas_thread
from schedgym.envs.datagen.buffers import BUFFER_KINDS, SampleBuffer
from schedgym.envs.datagen.calibration import calibrate_env, measure_cost_table
from schedgym.envs.datagen.config import MAX_SOLVER_SUBSTEPS, PRESETS, DataGenConfig
from schedgym.envs.datagen.costs import amdahl_speedup, load_cost_table
from schedgym.envs.datagen.env import OnlineDataGenEnv
from schedgym.envs.datagen.generator import DataGenGenerator, ValidationSet, heat_grid
from schedgym.envs.datagen.sampling import (
    ParameterSpace,
    contrast_cdf,
    contrast_quantile,
    reflect_into_unit,
)
from schedgym.envs.datagen.solver import (
    Conductivity,
    HeatGrid,
    advance,
    advance_nonlinear,
    initial_fields,
    solve,
    solve_fields,
)
from schedgym.envs.datagen.surrogate import MLPSurrogate, mlp_num_params

ENV_ID = "schedgym/OnlineDataGen-v0"


# ------------------------------------------------------------------------------ solver
def laplace_top_side(x: np.ndarray, y: np.ndarray, terms: int = 199) -> np.ndarray:
    """Steady state on the unit square with the top side at 1 and the others at 0 (series)."""
    total = np.zeros_like(x)
    for n in range(1, terms + 1, 2):
        k = n * math.pi
        # sinh(k y) / sinh(k) without overflow for large k
        ratio = np.exp(k * (y - 1.0)) * (1.0 - np.exp(-2.0 * k * y)) / (1.0 - math.exp(-2.0 * k))
        total += 4.0 / k * np.sin(k * x) * ratio
    return total


def test_steady_state_matches_the_analytic_series():
    grid = HeatGrid(grid_size=25, diffusivity=1.0, final_time=1.0, num_time_steps=1)
    left, right, bottom, top = 100.0, 300.0, 200.0, 500.0
    field = solve(grid, np.array([350.0]), np.array([[left, right, bottom, top]]))[0, -1]
    coords = np.linspace(0.0, 1.0, 25)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    # Superposition of the four one-hot-side solutions (rotations of the top-side one).
    exact = (
        top * laplace_top_side(x, y)
        + bottom * laplace_top_side(x, 1.0 - y)
        + right * laplace_top_side(y, x)
        + left * laplace_top_side(y, 1.0 - x)
    )
    # Away from the corners (where the boundary data jump) the 5-point scheme is O(h^2).
    inner = (x >= 0.25) & (x <= 0.75) & (y >= 0.25) & (y <= 0.75)
    error = np.abs(field - exact)[inner].max()
    assert error < 0.5, error  # kelvin, on a 400 K range: < 0.13%


def test_separable_mode_decays_exactly_as_the_discrete_eigenvalue_and_close_to_analytic():
    grid = HeatGrid(grid_size=33, diffusivity=0.5, final_time=0.05, num_time_steps=5)
    coords = np.linspace(0.0, 1.0, 33)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    mode = np.sin(math.pi * x) * np.sin(math.pi * y)
    out = solve_fields(grid, mode[None].copy())
    h, dt = grid.spacing, grid.dt
    ratio = grid.diffusivity * dt / h**2
    # sin(pi x) sin(pi y) is an eigenvector of the discrete Laplacian: one Euler step multiplies
    # it by 1 - 8 r sin^2(pi h / 2), exactly.
    factor = 1.0 - 8.0 * ratio * math.sin(math.pi * h / 2) ** 2
    for step, time in enumerate(grid.snapshot_times):
        substeps = (step + 1) * grid.substeps_per_output
        np.testing.assert_allclose(out[0, step], mode * factor**substeps, atol=1e-12)
        continuous = mode * math.exp(-2.0 * math.pi**2 * grid.diffusivity * time)
        assert np.abs(out[0, step] - continuous).max() < 2e-3


def test_time_step_is_stable_and_divides_the_output_interval():
    for n in (4, 8, 32, 100):
        grid = HeatGrid(n, diffusivity=2.0, final_time=0.3, num_time_steps=7, cfl_safety=0.9)
        assert grid.diffusivity * grid.dt / grid.spacing**2 <= 0.25 * 0.9 + 1e-12
        assert math.isclose(grid.dt * grid.substeps_per_output, grid.output_interval)
        assert grid.total_substeps == 7 * grid.substeps_per_output
    with pytest.raises(ValueError, match="ratio"):
        advance(np.zeros((1, 4, 4)), 0.3, 1)


def test_solution_obeys_the_maximum_principle_and_batch_equals_singles():
    grid = HeatGrid(12, 1.0, 0.1, 4)
    rng = np.random.default_rng(0)
    initial = rng.uniform(100, 500, 6)
    sides = rng.uniform(100, 500, (6, 4))
    batch = solve(grid, initial, sides)
    low = np.minimum(initial, sides.min(axis=1))
    high = np.maximum(initial, sides.max(axis=1))
    assert (batch.min(axis=(1, 2, 3)) >= low - 1e-9).all()
    assert (batch.max(axis=(1, 2, 3)) <= high + 1e-9).all()
    for b in range(6):
        single = solve(grid, initial[b : b + 1], sides[b : b + 1])[0]
        np.testing.assert_array_equal(batch[b], single)
    fields = initial_fields(grid, initial[:1], sides[:1])
    assert fields[0, 5, 0] == sides[0, 0] and fields[0, 5, -1] == sides[0, 1]
    assert fields[0, 0, 5] == sides[0, 2] and fields[0, -1, 5] == sides[0, 3]


def test_nonlinear_scheme_with_constant_conductivity_is_the_linear_one():
    grid = HeatGrid(10, 1.0, 0.05, 3)
    rng = np.random.default_rng(1)
    initial, sides = rng.uniform(100, 500, 4), rng.uniform(100, 500, (4, 4))
    linear = solve(grid, initial, sides)
    for law in (Conductivity(0.0, 0.01, 100.0, 400.0), Conductivity(3.0, 1.0, 100.0, 400.0)):
        np.testing.assert_allclose(solve(grid, initial, sides, law), linear, rtol=1e-12)


def test_nonlinear_scheme_conserves_heat_and_obeys_the_maximum_principle():
    """One step changes the interior's heat by exactly the fluxes through the faces between
    boundary and interior nodes; long runs stay within the initial extremes (stability at the
    largest ratio the scheme allows); a hot side pushes a steep front into a cold interior."""
    law = Conductivity(4.0, 0.01, 100.0, 400.0)
    rng = np.random.default_rng(2)
    fields = rng.uniform(100, 500, (3, 9, 9))
    ratio = 0.25
    before = fields.copy()
    advance_nonlinear(fields, ratio, 1, law)
    k = law(before)
    expected = np.zeros(3)
    for inner, outer in (
        ((slice(1, -1), 1), (slice(1, -1), 0)),
        ((slice(1, -1), -2), (slice(1, -1), -1)),
        ((1, slice(1, -1)), (0, slice(1, -1))),
        ((-2, slice(1, -1)), (-1, slice(1, -1))),
    ):
        u_in, u_out = before[(slice(None), *inner)], before[(slice(None), *outer)]
        k_face = 0.5 * (k[(slice(None), *inner)] + k[(slice(None), *outer)])
        expected += ratio * (k_face * (u_out - u_in)).sum(axis=1)
    change = (fields - before)[:, 1:-1, 1:-1].sum(axis=(1, 2))
    np.testing.assert_allclose(change, expected, rtol=1e-10, atol=1e-9)
    low, high = before.min(axis=(1, 2)), before.max(axis=(1, 2))
    advance_nonlinear(fields, ratio, 400, law)
    assert (fields.min(axis=(1, 2)) >= low - 1e-9).all()
    assert (fields.max(axis=(1, 2)) <= high + 1e-9).all()
    with pytest.raises(ValueError, match="ratio"):
        advance_nonlinear(fields, 0.26, 1, law)
    grid = HeatGrid(32, 1.0, 0.1, 4)
    front = solve(grid, np.array([100.0]), np.array([[500.0, 100.0, 100.0, 100.0]]), law)[0, -1]
    row = front[16]
    # Heat has entered (a fifth of the way) but the far half is untouched and the temperature
    # falls from 70% of the contrast to within 2.5% of the interior's in five cells: a front.
    # The linear equation has spread heat past the middle by then.
    assert row[6] > 150.0 and (row[16:] < 100.0 + 1e-6).all()
    hot = np.flatnonzero(row > 380.0).max()
    assert row[hot + 5] < 110.0
    linear = solve(grid, np.array([100.0]), np.array([[500.0, 100.0, 100.0, 100.0]]))[0, -1]
    assert linear[16, 16] > 150.0


def test_nonlinear_scheme_converges_under_grid_refinement():
    """Second order in h (with dt proportional to h^2): halving h cuts the root-mean-square
    difference to the finest solution about fourfold at the nodes the grids share (less than
    four: the corners, where two sides' temperatures meet, are singular)."""
    law = Conductivity(2.0, 0.2, 100.0, 400.0)
    sides = np.array([[500.0, 100.0, 300.0, 200.0]])
    solutions = {}
    for n in (9, 17, 33, 65):
        grid = HeatGrid(n, 1.0, 0.05, 1, cfl_safety=0.9)
        solutions[n] = solve(grid, np.array([300.0]), sides, law)[0, -1]
    fine = solutions[65]
    errors = []
    for n in (9, 17, 33):
        stride = 64 // (n - 1)
        difference = solutions[n] - fine[::stride, ::stride]
        errors.append(float(np.sqrt((difference**2).mean())))
    assert errors[0] / errors[1] > 2.5 and errors[1] / errors[2] > 3.0


# ------------------------------------------------------------------------------ sampling
def test_regions_are_equally_likely_and_draws_stay_in_their_band():
    space = ParameterSpace((100.0, 500.0), (100.0, 500.0), 4)
    rng = np.random.default_rng(1)
    uniform = space.draw(rng, 20_000, 0.0, 1.0 + 1e-12)
    counts = np.bincount(space.region_of(uniform), minlength=4)
    assert np.abs(counts / 20_000 - 0.25).max() < 0.02
    for region in range(4):
        params = space.draw_region(rng, region, 200)
        assert (space.region_of(params) == region).all()
        assert (params >= 100.0).all() and (params <= 500.0).all()
    assert math.isclose(float(contrast_cdf(contrast_quantile(0.3))), 0.3, abs_tol=1e-9)


def test_unscaled_inverts_scaled_and_reflection_folds_into_the_unit_interval():
    space = ParameterSpace((200.0, 400.0), (100.0, 500.0), 4)
    params = space.draw(np.random.default_rng(2), 50, 0.0, 1.0 + 1e-12)
    np.testing.assert_allclose(space.unscaled(space.scaled(params)), params)
    values = np.array([-0.1, 0.0, 0.3, 1.0, 1.2, 2.3, -1.7])
    np.testing.assert_allclose(reflect_into_unit(values), [0.1, 0.0, 0.3, 1.0, 0.8, 0.3, 0.3])
    wide = reflect_into_unit(np.random.default_rng(3).normal(0.5, 3.0, 10_000))
    assert wide.min() >= 0.0 and wide.max() <= 1.0


# ------------------------------------------------------------------------------ buffers
def _put(buffer: SampleBuffer, count: int, start: int) -> None:
    ids = np.arange(start, start + count, dtype=np.float32)
    buffer.put(
        np.repeat(ids[:, None], 2, axis=1),
        ids[:, None].copy(),
        (np.arange(start, start + count) % buffer.num_regions).astype(np.int64),
    )


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 25)),
        st.tuples(st.just("draw"), st.integers(1, 8)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(BUFFER_KINDS),
    capacity=st.integers(1, 30),
    max_reuse=st.integers(1, 4),
    operations=OPERATIONS,
    seed=st.integers(0, 2**32 - 1),
)
def test_buffer_invariants(kind, capacity, max_reuse, operations, seed):
    buffer = SampleBuffer(kind, capacity, 1, 2, 1, 3, np.random.default_rng(seed), max_reuse)
    put_total = 0
    for operation, count in operations:
        if operation == "put":
            _put(buffer, count, put_total)
            put_total += count
        elif buffer.size >= count:
            before = np.flatnonzero(buffer.occupied)
            oldest = np.sort(buffer.arrival[before])[:count]
            _, targets, _ = buffer.draw(count)
            assert len(set(targets[:, 0].tolist())) == count  # no duplicates within a batch
            if kind == "fifo":
                np.testing.assert_array_equal(np.sort(targets[:, 0]), oldest)
        # Capacity is never exceeded, and the bookkeeping agrees with the slots.
        assert 0 <= buffer.size <= capacity
        assert buffer.size == int(buffer.occupied.sum())
        # Conservation: every sample put is held, consumed, retired, overflowed or rejected.
        assert buffer.seen == put_total == buffer.size + buffer.removed()
        held_ids = buffer.targets[buffer.occupied, 0]
        np.testing.assert_array_equal(np.sort(held_ids), np.sort(buffer.arrival[buffer.occupied]))
        if kind == "firo":
            # FIRO evicts a sample once it has been drawn max_reuse times.
            assert (buffer.uses[buffer.occupied] < max_reuse).all()
            assert buffer.consumed == 0 and buffer.rejected == 0
        if kind == "fifo":
            assert (buffer.uses[buffer.occupied] == 0).all()
            assert buffer.retired == 0 and buffer.rejected == 0
        if kind == "reservoir":
            assert buffer.size == min(put_total, capacity)
            assert buffer.consumed == 0 and buffer.retired == 0


def test_fifo_and_firo_overflow_drop_the_oldest():
    for kind in ("fifo", "firo"):
        buffer = SampleBuffer(kind, 5, 1, 2, 1, 1, np.random.default_rng(0), 3)
        _put(buffer, 4, 0)
        _put(buffer, 3, 4)
        assert sorted(buffer.targets[buffer.occupied, 0].tolist()) == [2, 3, 4, 5, 6]
        assert buffer.overflowed == 2


def test_firo_evicts_after_its_reuse_budget():
    buffer = SampleBuffer("firo", 4, 1, 2, 1, 1, np.random.default_rng(0), 2)
    _put(buffer, 4, 0)
    for _ in range(4):
        buffer.draw(2)  # 8 draws over 4 samples with budget 2: all retired
    assert buffer.size == 0 and buffer.retired == 4 and buffer.draws == 8


def test_reservoir_keeps_a_uniform_sample():
    # Each of 40 items ends in a capacity-8 reservoir with probability 8/40; chi-square over
    # 2000 seeded runs (df = 39; the 0.1% critical value is 72.1).
    runs, items, capacity = 2000, 40, 8
    rng = np.random.default_rng(123)
    counts = np.zeros(items)
    for _ in range(runs):
        buffer = SampleBuffer("reservoir", capacity, 1, 2, 1, 1, rng)
        for start in range(0, items, 5):  # in batches of 5, as simulations arrive
            _put(buffer, 5, start)
        counts[buffer.targets[buffer.occupied, 0].astype(int)] += 1
    expected = runs * capacity / items
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 72.1, chi_square
    # Early and late arrivals are kept equally often (the algorithm's point).
    assert abs(counts[:20].sum() - counts[20:].sum()) < 0.1 * counts.sum()


def test_watermark_gates_training():
    buffer = SampleBuffer("reservoir", 50, 20, 2, 1, 1, np.random.default_rng(0))
    _put(buffer, 19, 0)
    assert not buffer.ready(4)
    _put(buffer, 1, 19)
    assert buffer.ready(4) and not buffer.ready(21)


# ------------------------------------------------------------------------------ surrogate
def test_surrogate_fits_a_batch_and_is_deterministic():
    rng = np.random.default_rng(0)
    inputs = rng.uniform(-1, 1, (16, 6)).astype(np.float32)
    targets = rng.uniform(0, 1, (16, 9)).astype(np.float32)

    def trained() -> tuple[MLPSurrogate, list[float]]:
        model = MLPSurrogate.initialised(6, 9, 32, 2, 3e-3, np.random.default_rng(5))
        losses = [float(model.train_step(inputs, targets).mean()) for _ in range(400)]
        return model, losses

    model, losses = trained()
    again, losses_again = trained()
    assert losses == losses_again
    assert losses[-1] < 0.02 * losses[0]
    np.testing.assert_allclose(model.per_sample_mse(inputs, targets).mean(), losses[-1], rtol=0.2)
    assert model.num_params == mlp_num_params(6, 9, 32, 2)
    for a, b in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_surrogate_polyak_average_is_the_bias_corrected_moving_average_of_the_steps():
    rng = np.random.default_rng(4)
    inputs = rng.uniform(-1, 1, (8, 6)).astype(np.float32)
    targets = rng.uniform(0, 1, (8, 3)).astype(np.float32)
    decay = 0.9
    model = MLPSurrogate.initialised(6, 3, 8, 1, 1e-2, np.random.default_rng(1), decay)
    plain = MLPSurrogate.initialised(6, 3, 8, 1, 1e-2, np.random.default_rng(1))
    # Before any step the average is the trained parameters.
    np.testing.assert_array_equal(model.predict(inputs, averaged=True), model.predict(inputs))
    history = []
    for _ in range(5):
        model.train_step(inputs, targets)
        plain.train_step(inputs, targets)
        history.append(model.weights[0].copy())
    # Averaging never changes training; without an average, ``averaged`` reads the trained ones.
    np.testing.assert_array_equal(model.weights[0], plain.weights[0])
    np.testing.assert_array_equal(plain.predict(inputs, averaged=True), plain.predict(inputs))
    factors = np.array([decay ** (4 - i) for i in range(5)])
    expected = np.tensordot(factors / factors.sum(), np.stack(history), axes=1)
    np.testing.assert_allclose(model.averaged_params()[0][0], expected, rtol=1e-5, atol=1e-7)


def test_surrogate_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    inputs = rng.uniform(-1, 1, (5, 6)).astype(np.float32)
    targets = rng.uniform(0, 1, (5, 3)).astype(np.float32)
    model = MLPSurrogate.initialised(6, 3, 4, 1, 1e-3, np.random.default_rng(3))
    model.weights[-1] *= 10  # away from the small-init regime so gradients are not tiny

    def loss(m: MLPSurrogate) -> float:
        return float(m.per_sample_mse(inputs, targets).mean())

    captured: list[np.ndarray] = []
    original = model._adam
    model._adam = lambda grads: captured.extend(grads)  # type: ignore[method-assign]
    model.train_step(inputs, targets)
    model._adam = original  # type: ignore[method-assign]
    weight, grad = model.weights[0], captured[0]
    for index in [(0, 0), (3, 2), (5, 1)]:
        saved = weight[index]
        weight[index] = saved + 1e-2
        up = loss(model)
        weight[index] = saved - 1e-2
        down = loss(model)
        weight[index] = saved
        assert math.isclose((up - down) / 2e-2, float(grad[index]), rel_tol=0.05, abs_tol=1e-5)


# ------------------------------------------------------------------------------ config
BAD_VALUES = [
    ("grid_size", 2),
    ("grid_size", 8.5),
    ("num_time_steps", 0),
    ("final_time", 0.0),
    ("diffusivity", -1.0),
    ("cfl_safety", 1.5),
    ("cfl_safety", 5e-324),  # its Euler step underflowed to zero (ZeroDivisionError)
    ("initial_temp_range_k", (500.0, 100.0)),
    ("boundary_temp_range_k", (1.0,)),
    ("num_regions", 0),
    ("hard_contrast_quantile", 1.0),
    ("hidden_width", 0),
    ("num_hidden_layers", 9),
    ("learning_rate", 0.0),
    ("batch_size", 0),
    ("weight_average_decay", 1.0),
    ("weight_average_decay", -0.1),
    ("buffer_capacity_samples", 10),
    ("buffer_watermark_samples", 5000),
    ("firo_max_reuse", 0),
    ("buffer_choice", "lifo"),
    ("total_cores", 1),
    ("solver_fractions", (0.5, 0.51)),
    ("solver_fractions", (0.5, 1.5)),
    ("solver_fractions", ()),
    ("trainer_parallel_fraction", 1.1),
    ("control_interval_s", -1.0),
    ("compute_budget_core_s", 0.01),
    ("validation_simulations", 0),
    ("validation_hard_simulations", -1),
    ("validation_seed", -1),
    ("adaptive_uniform_floor", 2.0),
    ("adaptive_proposal", "oracle"),
    ("breed_sigma", 0.0),
    ("breed_sigma", 1.5),
    ("breed_pool_samples", 10),  # below batch_size
    ("conductivity_exponent", -1.0),
    ("conductivity_exponent", 9.0),
    ("conductivity_floor", 0.0),
    ("conductivity_floor", 1.5),
    ("loss_ema_decay", 1.0),
    ("reward_compute_scale_core_s", 0.0),
    ("cost_table", "/nonexistent/table.json"),
    ("invalid_action", "ignore"),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_every_field_is_validated(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}"):
        DataGenConfig(**{field: value})


def test_presets_are_valid_and_unknown_fields_rejected():
    for name in PRESETS:
        DataGenConfig(**PRESETS[name])
    with pytest.raises(ConfigError, match=r"^grid_sise"):
        OnlineDataGenEnv(grid_sise=8)


# ------------------------------------------------------------------------------ cost table
def test_shipped_cost_table_records_its_cpu_and_predicts_positive_costs():
    table = load_cost_table(None)
    assert table.cpu and table.cpu != "unknown"
    assert 0 < table.substep_s(8) < table.substep_s(64)
    assert 0 < table.train_step_single_core_s(1e6, 1000) < table.train_step_single_core_s(1e9, 1e5)
    assert amdahl_speedup(1, 0.9) == 1.0 and 3.0 < amdahl_speedup(4, 0.9) < 4.0
    # The nonlinear scheme: the measured ratio of step times, a few times the linear step.
    assert table.nonlinear_substep_factor is not None
    assert 1.0 < table.nonlinear_substep_factor < 10.0
    assert table.substep_s(16, nonlinear=True) == table.substep_s(16) * (
        table.nonlinear_substep_factor
    )


def test_nonlinear_preset_charges_the_nonlinear_step_and_needs_its_factor(tmp_path):
    linear = OnlineDataGenEnv(preset="tiny")
    linear.reset(seed=0)
    nonlinear = OnlineDataGenEnv(preset="tiny", conductivity_exponent=4.0)
    nonlinear.reset(seed=0)
    factor = load_cost_table(None).nonlinear_substep_factor
    assert nonlinear.simulator.simulation_s == pytest.approx(
        linear.simulator.simulation_s * factor, rel=1e-12
    )
    table = json.loads((Path(blas.__file__).parent / "data" / "cost_table.json").read_text())
    del table["solver_nonlinear"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(table))
    OnlineDataGenEnv(preset="tiny", cost_table=str(path)).reset(seed=0)  # linear: fine
    env = OnlineDataGenEnv(preset="tiny", cost_table=str(path), conductivity_exponent=4.0)
    with pytest.raises(ConfigError, match=r"cost_table.*solver_nonlinear"):
        env.reset(seed=0)


def test_measure_cost_table_on_a_tiny_grid(tmp_path):
    path = measure_cost_table(
        tmp_path / "costs.json",
        grid_sizes=(4, 6),
        training_points=((4, 4, 1, 4), (8, 8, 1, 6)),
        min_time_s=0.01,
    )
    table = json.loads(path.read_text())
    assert set(table["solver_substep_s"]) == {"4", "6"}
    assert all(row["step_s"] > 0 for row in table["training_points"])
    loaded = load_cost_table(str(path))
    assert loaded.substep_s(6) > 0 and loaded.cpu == table["cpu"]
    env = OnlineDataGenEnv(preset="tiny", cost_table=str(path))
    env.reset(seed=0)
    assert env.simulator is not None
    assert env.simulator.simulation_s == pytest.approx(
        env.simulator.grid.total_substeps * loaded.substep_s(8)
    )
    with pytest.raises(ConfigError, match=r"^env"):
        calibrate_env("SoCDAG-v0", None)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match=r"^cost_table"):
        DataGenConfig(cost_table=str(bad))


def test_one_blas_thread_sets_and_restores_openblas_threads():
    handles = blas._openblas_threads()
    if handles is None:
        pytest.skip("numpy is not linked to OpenBLAS here")
    setter, getter = handles
    before = getter()
    setter(2)
    try:
        with one_blas_thread():
            assert getter() == 1
        assert getter() == 2
    finally:
        setter(before)


# ------------------------------------------------------------------------------ environment
def _rollout(env: OnlineDataGenEnv, policy, seed: int) -> tuple[list[float], dict]:
    obs, _ = env.reset(seed=seed)
    policy.reset(env)
    rewards = []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs, env))
        rewards.append(reward)
        done = terminated or truncated
    return rewards, info


def test_return_telescopes_to_the_log_error_ratio_and_budget_is_exact():
    env = OnlineDataGenEnv(preset="tiny")
    rewards, info = _rollout(env, baselines.OnlinePolicy("reservoir"), seed=4)
    sim = env.simulator
    assert sim is not None
    assert len(rewards) == sim.num_intervals == 15
    assert info["compute_s"] == pytest.approx(env.config.compute_budget_core_s)
    assert sum(rewards) == pytest.approx(math.log(info["val_mse_initial"] / info["val_mse"]))
    assert info["val_mse"] < info["val_mse_initial"]
    assert info["samples_trained"] == info["training_steps"] * env.config.batch_size > 0


def test_last_interval_is_cut_at_the_budget_and_its_reward_scaled():
    env = OnlineDataGenEnv(preset="tiny", compute_budget_core_s=0.02)  # 2.5 intervals of 0.008
    rewards, info = _rollout(env, baselines.OnlinePolicy("reservoir"), seed=0)
    sim = env.simulator
    assert len(rewards) == 3 and sim is not None
    assert info["compute_s"] == pytest.approx(0.02)
    history = sim.history
    last = math.log(history[-2]["val_mse"] / history[-1]["val_mse"])
    assert rewards[-1] == pytest.approx(last * 0.008 / 0.004)


def test_instance_is_the_validation_set_and_the_initial_weights():
    env = OnlineDataGenEnv(preset="tiny")
    instance = DataGenGenerator.generate(env.config, 3)
    # The validation set is the config's (validation_seed), the weights the seed's.
    assert DataGenGenerator.generate(env.config, 4).validation is instance.validation
    env.reset(seed=3)
    seeded = env.simulator
    env.reset(seed=4, options={"instance": instance})
    sim = env.simulator
    assert seeded is not None and sim is not None and sim.episode is instance
    assert sim.initial_scores.mse == seeded.initial_scores.mse
    for weight, initial in zip(sim.surrogate.weights, instance.initial_weights, strict=True):
        np.testing.assert_array_equal(weight, initial)
    env.step(env.encode_action(env.num_regions, 1, 0))
    assert sim.training_steps > 0  # trained a copy: the instance's arrays are read-only
    assert not instance.initial_weights[0].flags.writeable
    # Another validation set (here: another validation_seed's) replaces the config's.
    other = DataGenGenerator.generate(replace(env.config, validation_seed=99), 3)
    env.reset(seed=3, options={"instance": other})
    assert env.simulator is not None and env.simulator.validation is other.validation


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"grid_size": 9}, r"instance\.validation\.targets: 64 values per sample"),
        ({"num_regions": 2}, r"instance\.validation\.region: must be in \[0, 1\]"),
        ({"hidden_width": 8}, r"instance\.initial_weights: shapes"),
    ],
)
def test_instance_must_fit_the_config(override, match):
    instance = DataGenGenerator.generate(OnlineDataGenEnv(preset="tiny").config, 0)
    env = OnlineDataGenEnv(preset="tiny", **override)
    with pytest.raises(ConfigError, match=match):
        env.reset(seed=0, options={"instance": instance})


def test_validation_set_rejects_mismatched_arrays():
    with pytest.raises(ConfigError, match=r"instance\.validation\.targets: must have shape"):
        ValidationSet(np.zeros((4, 6)), np.zeros((3, 9)), np.zeros(4), np.zeros(4, bool))
    with pytest.raises(ConfigError, match=r"instance\.validation: must hold at least one"):
        ValidationSet(np.zeros((0, 6)), np.zeros((0, 9)), np.zeros(0), np.zeros(0, bool))


def test_masks_lock_the_buffer_and_gate_the_loss_weighted_rule():
    env = OnlineDataGenEnv(preset="tiny")
    env.reset(seed=0)
    k, splits = env.num_regions, env.num_splits
    mask = env.action_masks().reshape(k + 2, splits, 3)
    assert mask[: k + 1].all() and not mask[k + 1].any()
    with pytest.raises(InvalidActionError, match="masked out"):
        env.step(env.encode_action(k + 1, 1, 0))
    env.step(env.encode_action(k, 1, 1))  # uniform, half the cores, FIRO
    mask = env.action_masks().reshape(k + 2, splits, 3)
    assert mask[:, :, 1].all() and not mask[:, :, [0, 2]].any()
    assert env.simulator is not None and env.simulator.buffer_kind == "firo"
    if env.simulator.training_steps > 0:
        assert mask[k + 1].any()
    fixed = OnlineDataGenEnv(preset="tiny", buffer_choice="fifo")
    fixed.reset(seed=0)
    assert not fixed.action_masks().reshape(k + 2, splits, 3)[:, :, 1:].any()


def test_split_changes_cancel_running_simulations_and_all_trainer_cores_stop_generation():
    env = OnlineDataGenEnv(preset="tiny", control_interval_s=5e-5, compute_budget_core_s=0.02)
    env.reset(seed=0)
    sim = env.simulator
    assert sim is not None and sim.simulation_s > 5e-5  # a simulation spans intervals
    k = env.num_regions
    env.step(env.encode_action(k, 2, 2))  # all cores to solvers
    assert sim.worker_busy.sum() == 4 and sim.training_steps == 0
    env.step(env.encode_action(k, 0, 2))  # all cores to the trainer
    assert sim.simulations_cancelled == 4 and not sim.worker_busy.any()
    before = sim.unique_simulations
    env.step(env.encode_action(k, 0, 2))
    assert sim.unique_simulations == before


def test_policies_are_registered_and_run():
    names = policy_names(ENV_ID)
    for name in ("offline", "online-fifo", "online-firo", "online-reservoir", "adaptive", "random"):
        assert name in names
        env = OnlineDataGenEnv(preset="tiny")
        result = run_episode(env, make_policy(ENV_ID, name), seed=1)
        assert np.isfinite(result.metrics["val_mse"]) and result.metrics["compute_s"] > 0


def _val_mse_at_steps(history: list[dict[str, float]], steps: float) -> float:
    """Validation MSE at ``steps`` training steps, log-interpolated along the learning curve."""
    trained = np.array([row["training_steps"] for row in history])
    log_mse = np.log([row["val_mse"] for row in history])
    keep = np.concatenate([[True], np.diff(trained) > 0])  # curve points where steps advanced
    return float(np.exp(np.interp(steps, trained[keep], log_mse[keep])))


def test_paper_effect_online_beats_offline_at_equal_training_steps():
    # Meyer et al. 2023: many unique simulations beat epochs over a small fixed dataset.
    config = dict(preset="small", compute_budget_core_s=1.6)
    offline_env = OnlineDataGenEnv(**config)
    run_episode(offline_env, baselines.OfflinePolicy(), seed=3)
    online_env = OnlineDataGenEnv(**config)
    run_episode(online_env, baselines.OnlinePolicy("firo"), seed=3)
    offline, online = offline_env.simulator, online_env.simulator
    assert offline is not None and online is not None
    assert online.unique_simulations > 10 * offline.unique_simulations
    steps = min(offline.training_steps, online.training_steps)
    assert steps > 1000
    offline_mse = _val_mse_at_steps(offline.history, steps)
    online_mse = _val_mse_at_steps(online.history, steps)
    assert online_mse < 0.5 * offline_mse, (online_mse, offline_mse)


def test_adaptive_sampling_moves_simulations_to_high_loss_regions():
    config = dict(preset="small", compute_budget_core_s=0.8)
    shares = {}
    for name, policy in (
        ("uniform", baselines.OnlinePolicy("firo")),
        ("adaptive", baselines.AdaptivePolicy("firo")),
    ):
        env = OnlineDataGenEnv(**config)
        run_episode(env, policy, seed=0)
        sim = env.simulator
        assert sim is not None
        shares[name] = sim.region_simulations / sim.region_simulations.sum()
        if name == "adaptive":
            # The region with the highest training loss gets more than its uniform share.
            assert sim.acquisition_probabilities()[np.argmax(sim.region_loss)] > 1 / sim.num_regions
    top = slice(env.num_regions - env.num_regions // 4, None)  # the largest-contrast quarter
    # Largest contrasts are the hardest to learn: the adaptive rule draws them more.
    assert shares["adaptive"][top].sum() > shares["uniform"][top].sum() + 0.02


def test_loss_weighted_rule_follows_losses_with_a_uniform_floor():
    env = OnlineDataGenEnv(preset="tiny", adaptive_uniform_floor=0.4)
    env.reset(seed=0)
    sim = env.simulator
    assert sim is not None
    np.testing.assert_allclose(sim.acquisition_probabilities(), 1 / 3)
    sim.region_loss[:] = [1.0, 3.0, 0.0]
    sim.region_has_loss[:] = [True, True, False]  # an unseen region counts as the worst (3.0)
    expected = 0.4 / 3 + 0.6 * np.array([1.0, 3.0, 3.0]) / 7.0
    np.testing.assert_allclose(sim.acquisition_probabilities(), expected)
    k = env.num_regions
    env.step(env.encode_action(k + 1, 1, 2))
    assert sim.acquisition == "loss-weighted"


def test_region_mass_rule_weights_each_region_by_its_held_samples_times_their_loss():
    env = OnlineDataGenEnv(
        preset="tiny", adaptive_proposal="region-mass", adaptive_uniform_floor=0.2
    )
    env.reset(seed=0)
    k = env.num_regions
    env.step(env.encode_action(k, 1, 1))  # uniform, half the cores, FIRO
    while not env.simulator.loss_weighted_available():
        env.step(env.encode_action(k, 1, 1))
    sim = env.simulator
    sim.region_loss[:] = [1.0, 2.0, 4.0]
    sim.region_has_loss[:] = True
    mass = sim.region_loss * sim.buffer.region_counts()
    assert mass.sum() > 0
    expected = 0.2 / k + 0.8 * mass / mass.sum()
    np.testing.assert_allclose(sim.acquisition_probabilities(), expected)
    # The mean-loss rule on the same state ignores how many samples each region holds.
    mean_rule = OnlineDataGenEnv(preset="tiny", adaptive_uniform_floor=0.2)
    mean_rule.reset(seed=0)
    mean_rule.simulator.region_loss[:] = [1.0, 2.0, 4.0]
    mean_rule.simulator.region_has_loss[:] = True
    np.testing.assert_allclose(
        mean_rule.simulator.acquisition_probabilities(), 0.2 / k + 0.8 * np.array([1, 2, 4]) / 7
    )


def test_gaussian_proposal_draws_children_near_loss_weighted_parents():
    env = OnlineDataGenEnv(
        preset="tiny", adaptive_proposal="gaussian", adaptive_uniform_floor=0.0, breed_sigma=0.02
    )
    env.reset(seed=0)
    sim = env.simulator
    k = env.num_regions
    while not sim.loss_weighted_available():
        env.step(env.encode_action(k, 1, 1))
    # The pool holds the trained samples' parameters, recovered from the inputs.
    assert sim.pool_size == min(sim.samples_trained, sim.config.breed_pool_samples)
    assert (sim.pool_params[: sim.pool_size] >= 0).all()
    assert (sim.pool_params[: sim.pool_size] <= 1).all()
    # One parent carries all the loss: every child lands within a few sigma of it.
    parent = np.array([0.05, 0.5, 0.97, 0.3, 0.6])
    sim.pool_params[: sim.pool_size] = np.random.default_rng(4).random((sim.pool_size, 5))
    sim.pool_params[0] = parent
    sim.pool_loss[: sim.pool_size] = 0.0
    sim.pool_loss[0] = 1.0
    np.testing.assert_allclose(
        sim.acquisition_probabilities(),
        np.eye(k)[sim.space.region_of(sim.space.unscaled(parent[None]))[0]],
    )
    children = sim.space.scaled(np.stack([sim.breed_parameters() for _ in range(300)]))
    assert np.abs(children - parent).max() < 6 * 0.02
    assert np.abs(children.mean(axis=0) - parent).max() < 0.01
    # A running episode's loss-weighted rule starts simulations from the proposal.
    env.step(env.encode_action(k + 1, 2, 1))
    assert sim.acquisition == "loss-weighted"


@pytest.mark.slow
def test_paper_effect_adaptive_lowers_hard_region_error():
    # Breed: loss-driven sampling lowers the error where the surrogate is worst. Averaged over
    # seeds because the p99 of the hard subset is noisy.
    hard_mse = {"uniform": [], "adaptive": []}
    for seed in range(3):
        for name, policy in (
            ("uniform", baselines.OnlinePolicy("firo")),
            ("adaptive", baselines.AdaptivePolicy("firo")),
        ):
            metrics = run_episode(OnlineDataGenEnv(preset="small"), policy, seed).metrics
            hard_mse[name].append(metrics["val_mse_hard"])
    assert np.mean(hard_mse["adaptive"]) < np.mean(hard_mse["uniform"])


def _hard_p99_and_band_shares(policy, seed, **overrides):
    """The hard p99 error of one hard-region episode, and each band's share of its simulations."""
    env = OnlineDataGenEnv(preset="hard-region", **overrides)
    metrics = run_episode(env, policy, seed).metrics
    sim = env.simulator
    assert sim is not None
    return metrics["val_p99_err_hard"], sim.region_simulations / sim.region_simulations.sum()


def test_paper_effect_breed_concentrates_on_the_hard_bands_at_reduced_scale():
    # Breed on the nonlinear problem at half the budget (4 core-s): the loss-mass rule finds the
    # hardest contrast bands by itself (it is never told which) and lowers the hard p99 error
    # (0.77 of uniform's here; the 20% target over six seeds is the full-scale test below).
    budget = {"compute_budget_core_s": 4.0}
    uniform_p99, uniform_share = _hard_p99_and_band_shares(
        baselines.OnlinePolicy("firo"), 0, **budget
    )
    adaptive_p99, adaptive_share = _hard_p99_and_band_shares(
        baselines.AdaptivePolicy("firo"), 0, **budget
    )
    # Twenty bands: the top two hold 10% of the uniform draws (measured: 9% uniform, 30% Breed).
    assert uniform_share[-2:].sum() == pytest.approx(0.1, abs=0.025)
    assert adaptive_share[-2:].sum() > 0.22, adaptive_share
    assert adaptive_p99 < uniform_p99, (adaptive_p99, uniform_p99)


@pytest.mark.slow
def test_paper_effect_breed_lowers_hard_p99_by_a_fifth_at_full_scale():
    # The target on the hard-region preset: adaptive's hard p99 error (mean over seeds
    # 0-5, held out while the preset was chosen on seeds 100-108) at least 20% below every
    # uniform online policy's, at equal compute. Measured: 0.72 of FIRO's, 0.58 of reservoir's,
    # 0.26 of FIFO's (per seed, over FIRO's: 0.62-0.81; see bench_datagen).
    seeds = range(6)
    adaptive = np.mean(
        [_hard_p99_and_band_shares(baselines.AdaptivePolicy("firo"), s)[0] for s in seeds]
    )
    for buffer in ("fifo", "firo", "reservoir"):
        uniform = np.mean(
            [_hard_p99_and_band_shares(baselines.OnlinePolicy(buffer), s)[0] for s in seeds]
        )
        assert adaptive <= 0.8 * uniform, (buffer, adaptive, uniform)


def test_a_simulation_too_long_to_solve_is_refused_naming_its_fields():
    """Each field in range, together a billion Euler steps per simulation: refused up front
    with the fields named, not run for hours."""
    with pytest.raises(ConfigError, match=r"^cfl_safety: with grid_size 256, diffusivity 100"):
        DataGenConfig(grid_size=256, diffusivity=100.0, final_time=100.0, cfl_safety=0.9)
    assert heat_grid(DataGenConfig(cfl_safety=1e-3)).total_substeps <= MAX_SOLVER_SUBSTEPS
