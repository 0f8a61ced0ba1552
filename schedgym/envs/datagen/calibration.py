"""Measure the local machine's solver and training-step times into a cost table.

What is timed (this environment's solver and surrogate) lives here, next to them; how it is
timed and fitted (medians, non-negative fits, the machine's description) is the cost-model
calibration's :mod:`schedgym.costmodels.calibration.cpu_timing`, which cannot import an
environment.

``schedgym calibrate --env OnlineDataGen-v0 [--out FILE]`` calls :func:`calibrate_env`; the table
it writes can be given to the environment as ``cost_table=FILE``. Times are the median of several
timed repetitions (robust to a busy machine), measured on one BLAS thread (OpenBLAS is set to one
thread during the measurement; with another BLAS set ``OMP_NUM_THREADS=1`` before starting
Python): one core is what the environment's cost model assumes (it models the multi-core speedup).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import write_json_atomic
from schedgym.costmodels.calibration.cpu_timing import (
    machine_description,
    median_time_s,
    nonnegative_relative_fit,
)
from schedgym.envs.datagen.blas import one_blas_thread
from schedgym.envs.datagen.costs import TABLE_FORMAT
from schedgym.envs.datagen.solver import Conductivity, advance, advance_nonlinear
from schedgym.envs.datagen.surrogate import MLPSurrogate, training_flops

DEFAULT_GRID_SIZES = (8, 16, 24, 32, 48, 64, 96)
# (batch_size, hidden_width, num_hidden_layers, grid_size): spans the presets and beyond.
DEFAULT_TRAINING_POINTS = (
    (16, 16, 1, 8),
    (32, 32, 2, 12),
    (32, 64, 2, 16),
    (32, 128, 2, 16),  # the hard-region preset's (priced by the fit until recalibrated)
    (64, 64, 2, 24),
    (64, 128, 2, 32),
    (128, 128, 2, 32),
    (64, 256, 3, 32),
    (64, 128, 2, 48),
)
INPUT_DIM = 6


def measure_solver(grid_sizes: Sequence[int], min_time_s: float) -> dict[str, float]:
    """Seconds per forward-Euler step of one simulation, per grid size."""
    out: dict[str, float] = {}
    substeps = 10
    for n in grid_sizes:
        fields = np.full((1, n, n), 300.0)
        fields[:, 0, :] = 500.0

        def work(f: np.ndarray = fields) -> None:
            advance(f, 0.2, substeps)

        per_call = median_time_s(work, min_time_s)
        out[str(n)] = per_call / substeps
    return out


# The conductivity law timed for the nonlinear scheme's factor (the ``hard-region`` preset's).
NONLINEAR_EXPONENT = 4.0
NONLINEAR_FLOOR = 0.01


def measure_nonlinear_factor(grid_sizes: Sequence[int], min_time_s: float) -> dict[str, Any]:
    """Seconds per step of the nonlinear-conductivity scheme (one simulation) per grid size,
    and its median ratio to the linear scheme's, both timed here, back to back per size (so
    that the machine's load, which moves both alike, cancels in the ratio)."""
    substep_s: dict[str, float] = {}
    ratios = []
    substeps = 10
    conductivity = Conductivity(NONLINEAR_EXPONENT, NONLINEAR_FLOOR, 100.0, 400.0)
    for n in grid_sizes:
        fields = np.full((1, n, n), 300.0)
        fields[:, 0, :] = 500.0

        def linear(f: np.ndarray = fields) -> None:
            advance(f, 0.2, substeps)

        def nonlinear(f: np.ndarray = fields) -> None:
            advance_nonlinear(f, 0.2, substeps, conductivity)

        linear_s = median_time_s(linear, min_time_s) / substeps
        nonlinear_s = median_time_s(nonlinear, min_time_s) / substeps
        substep_s[str(n)] = nonlinear_s
        ratios.append(nonlinear_s / linear_s)
    return {
        "exponent": NONLINEAR_EXPONENT,
        "floor": NONLINEAR_FLOOR,
        "substep_s": substep_s,
        "ratio_per_grid": dict(zip((str(n) for n in grid_sizes), ratios, strict=True)),
        "factor": float(np.median(ratios)),
    }


def measure_training(
    points: Sequence[tuple[int, int, int, int]], min_time_s: float
) -> list[dict[str, Any]]:
    """Seconds per training step on this process's threads, per (batch, MLP size) point."""
    rng = np.random.default_rng(0)
    rows = []
    for batch_size, hidden_width, num_hidden_layers, grid_size in points:
        output_dim = grid_size * grid_size
        model = MLPSurrogate.initialised(
            INPUT_DIM, output_dim, hidden_width, num_hidden_layers, 1e-3, rng
        )
        inputs = rng.uniform(-1, 1, (batch_size, INPUT_DIM)).astype(np.float32)
        targets = rng.uniform(0, 1, (batch_size, output_dim)).astype(np.float32)

        def step(m: MLPSurrogate = model, x: np.ndarray = inputs, y: np.ndarray = targets) -> None:
            m.train_step(x, y)

        step_s = median_time_s(step, min_time_s)
        rows.append(
            {
                "batch_size": batch_size,
                "hidden_width": hidden_width,
                "num_hidden_layers": num_hidden_layers,
                "output_dim": output_dim,
                "num_params": model.num_params,
                "flops": training_flops(batch_size, model.num_params),
                "step_s": step_s,
            }
        )
    return rows


def measure_cost_table(
    out_path: str | Path,
    grid_sizes: Sequence[int] = DEFAULT_GRID_SIZES,
    training_points: Sequence[tuple[int, int, int, int]] = DEFAULT_TRAINING_POINTS,
    min_time_s: float = 0.25,
) -> Path:
    """Measure this machine and write a cost table to ``out_path``; return the path.

    Args:
        out_path: where the JSON table goes (parent folders are created).
        grid_sizes: grid sizes whose solver step is timed (at least two distinct).
        training_points: ``(batch_size, hidden_width, num_hidden_layers, grid_size)`` points
            whose training step is timed (at least two distinct sizes).
        min_time_s: timing effort per point, seconds.
    """
    if len(set(grid_sizes)) < 2:
        raise ConfigError(f"grid_sizes: need at least two distinct sizes, got {list(grid_sizes)}")
    if len(set(training_points)) < 2:
        raise ConfigError("training_points: need at least two distinct points")
    with one_blas_thread():
        solver = measure_solver(grid_sizes, min_time_s)
        nonlinear = measure_nonlinear_factor(grid_sizes, min_time_s)
        training = measure_training(training_points, min_time_s)
    cells = np.array([float(n) ** 2 for n in grid_sizes])
    substep = np.array([solver[str(n)] for n in grid_sizes])
    solver_features = np.stack([np.ones_like(cells), cells], axis=1)
    solver_intercept, per_cell = nonnegative_relative_fit(solver_features, substep, "cost_table")
    flops = np.array([row["flops"] for row in training])
    step = np.array([row["step_s"] for row in training])
    params = np.array([float(row["num_params"]) for row in training])
    train_features = np.stack([np.ones_like(flops), flops, params], axis=1)
    train_intercept, per_flop, per_param = nonnegative_relative_fit(
        train_features, step, "cost_table"
    )
    solver_err = np.abs(solver_intercept + per_cell * cells - substep) / substep
    train_err = np.abs(train_features @ [train_intercept, per_flop, per_param] - step) / step
    table = {
        "format": TABLE_FORMAT,
        **machine_description(),
        "solver_substep_s": solver,
        "solver_fit": {
            "intercept_s": solver_intercept,
            "per_cell_s": per_cell,
            "max_relative_error": float(solver_err.max()),
        },
        "solver_nonlinear": nonlinear,
        "training_points": training,
        "training_fit": {
            "intercept_s": train_intercept,
            "per_flop_s": per_flop,
            "per_param_s": per_param,
            "max_relative_error": float(train_err.max()),
        },
    }
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, table)
    return path


DEFAULT_OUT = "onlinedatagen_cost_table.json"


def calibrate_env(env_id: str, out: str | None) -> int:
    """The ``schedgym calibrate --env OnlineDataGen-v0 [--out FILE]`` handler; returns 0.

    Writes the table to ``out`` (default ``./onlinedatagen_cost_table.json``) and prints how to
    use it.
    """
    from schedgym.core.policy import env_family

    if env_family(env_id) != "OnlineDataGen":
        raise ConfigError(f"env: calibration of {env_id!r} is not handled here")
    path = measure_cost_table(out or DEFAULT_OUT)
    table = json.loads(path.read_text())
    print(f"measured on {table['cpu']} (threads env {table['threads_env']})")
    for n, seconds in table["solver_substep_s"].items():
        print(f"  solver {n}x{n}: {seconds * 1e6:8.2f} us per forward-Euler step")
    for row in table["training_points"]:
        print(
            f"  train batch {row['batch_size']:>4} params {row['num_params']:>8}: "
            f"{row['step_s'] * 1e3:8.3f} ms per step"
        )
    print(
        f"fit max relative error: solver {table['solver_fit']['max_relative_error']:.1%}, "
        f"training {table['training_fit']['max_relative_error']:.1%}"
    )
    print(f"wrote {path}; use it with cost_table={str(path)!r}")
    return 0
