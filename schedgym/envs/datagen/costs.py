"""The simulated clock's cost model: solver and training-step times from a measured table.

The table (JSON, written by :func:`schedgym.envs.datagen.calibration.measure_cost_table`) records
seconds per forward-Euler step of one simulation for several grid sizes and seconds per training
step for several (batch size, MLP size) points, with the CPU they were measured on. Two linear fits
turn it into costs for any configuration:

- solver: ``seconds per forward-Euler step = intercept_s + per_cell_s * grid_size^2``
  (a simulation costs that times its ``total_substeps``; one simulation runs on one core); a step
  of the nonlinear-conductivity scheme costs ``nonlinear_substep_factor`` times a linear one
  (the table's measured ratio of the two schemes' step times, taken in one run so that the
  machine's load cancels);
- trainer: ``seconds per step on one core = intercept_s + per_flop_s * 6 * batch * params
  + per_param_s * params`` (the matrix products, then Adam's update of every weight),
  divided by Amdahl's speedup ``1 / ((1 - p) + p / cores)`` on ``cores`` cores (``p`` is the
  config's ``trainer_parallel_fraction``, an assumption, not a measurement).

A configuration that matches a measured point exactly (grid size; batch size and parameter count)
uses the measured time itself: the fits are only for sizes in between (BLAS kernels make training
time far from linear in its size at some shapes). The fit coefficients are stored in the table,
so a configuration's costs never depend on the machine that runs the environment: episodes
replay bit for bit everywhere.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from schedgym.core.errors import ConfigError
from schedgym.core.textfiles import read_json

TABLE_FORMAT = "schedgym-datagen-costs/1"
# Bounds of a table's figures: an hour per step, a billion cells/parameters; anything beyond is
# a corrupt file, and would overflow the simulated clock.
MAX_SECONDS = 3600.0
MAX_SIZE = 1_000_000_000
DEFAULT_TABLE = "cost_table.json"


@dataclass(frozen=True)
class CostTable:
    """The fitted cost coefficients and where they were measured.

    Attributes:
        solver_intercept_s: fixed seconds per forward-Euler step of one simulation.
        solver_per_cell_s: seconds per grid node per forward-Euler step.
        train_intercept_s: fixed seconds per training step on one core.
        train_per_flop_s: seconds per floating-point operation of a training step on one core.
        train_per_param_s: seconds per trainable parameter (the optimizer update) on one core.
        cpu: the processor the table was measured on.
        source: the file it was read from.
        measured_substep_s: grid size -> measured seconds per forward-Euler step.
        measured_train_step_s: (batch size, parameter count) -> measured seconds per step.
    """

    solver_intercept_s: float
    solver_per_cell_s: float
    train_intercept_s: float
    train_per_flop_s: float
    train_per_param_s: float
    cpu: str
    source: str
    measured_substep_s: tuple[tuple[int, float], ...] = ()
    measured_train_step_s: tuple[tuple[tuple[int, int], float], ...] = ()
    nonlinear_substep_factor: float | None = None

    def substep_s(self, grid_size: int, nonlinear: bool = False) -> float:
        """Seconds of one forward-Euler step of one simulation on one core (of the
        nonlinear-conductivity scheme when ``nonlinear``).

        Raises:
            ConfigError: naming ``cost_table`` when ``nonlinear`` and the table has no
                ``solver_nonlinear.factor``.
        """
        measured = dict(self.measured_substep_s)
        if grid_size in measured:
            linear = measured[grid_size]
        else:
            linear = self.solver_intercept_s + self.solver_per_cell_s * grid_size * grid_size
        if not nonlinear:
            return linear
        if self.nonlinear_substep_factor is None:
            raise ConfigError(
                f"cost_table: {self.source} has no solver_nonlinear.factor, needed when "
                "conductivity_exponent > 0 (re-run schedgym calibrate)"
            )
        return linear * self.nonlinear_substep_factor

    def train_step_single_core_s(self, flops: float, num_params: int, batch_size: int = 0) -> float:
        """Seconds of one training step of ``flops`` operations on ``num_params`` weights on one
        core (the measured time when ``(batch_size, num_params)`` was measured)."""
        measured = dict(self.measured_train_step_s)
        if (batch_size, num_params) in measured:
            return measured[(batch_size, num_params)]
        return (
            self.train_intercept_s
            + self.train_per_flop_s * flops
            + self.train_per_param_s * num_params
        )


def _number(table: dict[str, Any], section: str, key: str, source: str) -> float:
    try:
        value = float(table[section][key])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"cost_table: {source} lacks a number at {section}.{key}") from None
    if not 0.0 <= value <= MAX_SECONDS:
        raise ConfigError(
            f"cost_table: {source} {section}.{key} must be in [0, {MAX_SECONDS:g}] s, got {value}"
        )
    return value


@functools.lru_cache(maxsize=16)
def load_cost_table(path: str | None) -> CostTable:
    """Read a cost table (``None``: the one shipped with the package).

    Raises:
        ConfigError: naming ``cost_table`` when the file is missing or malformed.
    """
    table: Any
    if path is None:
        text = (
            resources.files("schedgym.envs.datagen").joinpath(f"data/{DEFAULT_TABLE}").read_text()
        )
        table = json.loads(text)
        source = f"<package>/data/{DEFAULT_TABLE}"
    else:
        table = read_json(path, "cost_table")
        source = str(path)
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT:
        raise ConfigError(f"cost_table: {source} is not a {TABLE_FORMAT} table")
    solver_intercept = _number(table, "solver_fit", "intercept_s", source)
    solver_per_cell = _number(table, "solver_fit", "per_cell_s", source)
    train_intercept = _number(table, "training_fit", "intercept_s", source)
    train_per_flop = _number(table, "training_fit", "per_flop_s", source)
    train_per_param = _number(table, "training_fit", "per_param_s", source)
    if solver_intercept + solver_per_cell <= 0.0 or (
        train_intercept + train_per_flop + train_per_param <= 0.0
    ):
        raise ConfigError(f"cost_table: {source} predicts zero-time work")
    try:
        measured_substep = tuple(
            sorted((int(n), float(v)) for n, v in table.get("solver_substep_s", {}).items())
        )
        measured_train = tuple(
            sorted(
                ((int(row["batch_size"]), int(row["num_params"])), float(row["step_s"]))
                for row in table.get("training_points", [])
            )
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise ConfigError(f"cost_table: {source} has malformed measured points") from None
    if any(not 0.0 < v <= MAX_SECONDS for _, v in measured_substep + measured_train):
        raise ConfigError(
            f"cost_table: {source} has a measured time outside (0, {MAX_SECONDS:g}] s"
        )
    sizes = [n for n, _ in measured_substep] + [n for key, _ in measured_train for n in key]
    if any(not 0 < n <= MAX_SIZE for n in sizes):
        raise ConfigError(
            f"cost_table: {source} has a measured grid size, batch size or parameter count "
            f"outside [1, {MAX_SIZE}]"
        )
    cpu = table.get("cpu", "unknown")
    if not isinstance(cpu, str) or len(cpu) > 200:
        raise ConfigError(f"cost_table: {source} cpu must be a name of at most 200 characters")
    nonlinear_factor = None
    if "solver_nonlinear" in table:
        nonlinear_factor = _number(table, "solver_nonlinear", "factor", source)
        if not 0.0 < nonlinear_factor <= 1000.0:
            raise ConfigError(
                f"cost_table: {source} solver_nonlinear.factor must be in (0, 1000], "
                f"got {nonlinear_factor}"
            )
    return CostTable(
        solver_intercept,
        solver_per_cell,
        train_intercept,
        train_per_flop,
        train_per_param,
        cpu,
        source,
        measured_substep,
        measured_train,
        nonlinear_factor,
    )


def amdahl_speedup(cores: int, parallel_fraction: float) -> float:
    """Speedup of a step on ``cores`` cores when ``parallel_fraction`` of it parallelises."""
    return 1.0 / ((1.0 - parallel_fraction) + parallel_fraction / cores)
