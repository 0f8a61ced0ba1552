"""Configuration of OnlineDataGen-v0: every knob, validated, with named presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schedgym.core.config import require_choice, require_number
from schedgym.core.errors import ConfigError
from schedgym.core.spaces import INVALID_ACTION_MODES
from schedgym.envs.datagen.buffers import BUFFER_KINDS
from schedgym.envs.datagen.solver import HeatGrid

# Forward-Euler steps one simulation may take (the presets take 24 to 440): the step is
# cfl_safety * h^2 / (4 diffusivity), so a tiny safety factor, a fine grid, a large diffusivity
# and a long final time multiply into solves of hours, or a step that underflows to zero.
MAX_SOLVER_SUBSTEPS = 1_000_000

BUFFER_CHOICES = ("agent", *BUFFER_KINDS)
# How the loss-weighted acquisition places a new simulation (see ``DataGenConfig``).
ADAPTIVE_PROPOSALS = ("region", "region-mass", "gaussian")


def _require_range(field: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with ``low <= lo < hi <= high``; returned as a tuple of floats."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{field}: must be a pair (low, high), got {value!r}")
    require_number(f"{field}[0]", value[0], low, high)
    require_number(f"{field}[1]", value[1], low, high)
    if not value[0] < value[1]:
        raise ConfigError(f"{field}: low must be below high, got {value!r}")
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class DataGenConfig:
    """Every knob of OnlineDataGen-v0. Times are simulated seconds; compute is core-seconds.

    Attributes:
        grid_size: nodes per side of the solver's grid (boundary included); the surrogate
            predicts all ``grid_size**2`` of them.
        num_time_steps: snapshots per simulation, each one training sample (input: the five
            parameters and t; target: the field).
        final_time: simulated physical time of one simulation (dimensionless: unit square).
        diffusivity: alpha of the heat equation.
        cfl_safety: the solver's time step as a fraction of the stability limit h^2 / (4 alpha),
            in [0.001, 1]; with the grid, diffusivity and final time it may not make a
            simulation take more than ``MAX_SOLVER_SUBSTEPS`` (1,000,000) forward-Euler steps.
        conductivity_exponent: m of the temperature-dependent conductivity ``k(u) = floor +
            (1 - floor) * s^m`` (``s``: the temperature scaled to [0, 1] over the parameter
            range; the equation becomes ``u_t = alpha div(k(u) grad u)``). 0: constant
            conductivity, the linear heat equation.
        conductivity_floor: k of the coldest material when ``conductivity_exponent > 0``; small
            values make hot sides push steep fronts into a cold interior.
        initial_temp_range_k: range of the initial interior temperature, kelvin.
        boundary_temp_range_k: range of each of the four boundary temperatures, kelvin.
        num_regions: K, the regions of the fixed partition of parameter space: quantile bands of
            the temperature contrast (max minus min of the five temperatures, each scaled to
            [0, 1] over its range), equally likely under uniform sampling; region K-1 holds the
            largest contrasts.
        hard_contrast_quantile: the hard validation simulations have a contrast above
            this quantile of its distribution under uniform sampling.
        hidden_width: units per hidden layer of the surrogate MLP.
        num_hidden_layers: hidden layers of the surrogate MLP.
        learning_rate: Adam's step size.
        batch_size: samples per training step.
        weight_average_decay: decay per training step of an exponential moving average of the
            surrogate's parameters (Polyak averaging), which the validation scores read instead
            of the last step's parameters; 0: no average, the last parameters are scored.
            Training and its losses always use the last parameters. The average's update (3
            flops per parameter) is not priced by the cost table: under 2% of a training step's
            (6 per parameter and sample).
        buffer_capacity_samples: samples the buffer holds at most.
        buffer_watermark_samples: the trainer waits while the buffer holds fewer samples.
        firo_max_reuse: draws after which FIRO evicts a sample.
        buffer_choice: ``agent`` (the first action picks the buffer, fixed thereafter) or a fixed
            ``fifo``, ``firo`` or ``reservoir``.
        total_cores: the core budget shared by the solver workers (one core each) and the trainer.
        solver_fractions: the split choices: the fraction of ``total_cores`` given to solver
            workers (rounded to whole cores); the trainer gets the rest.
        trainer_parallel_fraction: Amdahl parallel fraction of a training step across the
            trainer's cores.
        control_interval_s: simulated seconds between two decisions.
        compute_budget_core_s: the episode ends when this many core-seconds have been allocated
            (``total_cores`` x simulated seconds, used or idle).
        validation_simulations: held-out simulations drawn uniformly over parameter space.
        validation_hard_simulations: extra held-out simulations in the hard region.
        validation_seed: seed of the held-out set, which is fixed (the same for every episode
            seed, so scores are comparable across seeds and policies).
        adaptive_uniform_floor: in the loss-weighted acquisition, the share of draws that stays
            uniform over regions (Breed's exploration floor).
        adaptive_proposal: how the loss-weighted acquisition places the other draws. ``region``:
            a region with probability proportional to its recent mean training loss, then a
            point uniform inside it. ``region-mass``: Breed's parent selection at region level,
            a region with probability proportional to its loss mass (its samples held in the
            buffer times their recent mean training loss: the chance that a parent drawn from
            the buffer in proportion to its loss is in that region), then a point uniform
            inside it. ``gaussian`` (Breed's point-level proposal): a parent picked among the
            ``breed_pool_samples`` most recent training samples with probability proportional
            to its training loss, and the new parameters drawn from a Gaussian of standard
            deviation ``breed_sigma`` around the parent's (each parameter scaled to [0, 1],
            reflected at the range's ends).
        breed_sigma: the Gaussian proposal's standard deviation, in parameter units scaled to
            [0, 1] (``adaptive_proposal="gaussian"``).
        breed_pool_samples: recent training samples, with their losses, that parents are picked
            from (``adaptive_proposal="gaussian"``).
        loss_ema_decay: decay per training step of each region's recent-training-loss average.
        reward_compute_scale_core_s: core-seconds that one reward unit refers to (``None``: one
            control interval, ``total_cores * control_interval_s``).
        cost_table: path of a cost table written by ``schedgym calibrate --env
            OnlineDataGen-v0 --out FILE`` (``None``: the table shipped with the package).
        invalid_action: ``raise`` or ``substitute`` (see :func:`schedgym.core.spaces.check_action`).
    """

    grid_size: int = 32
    num_time_steps: int = 20
    final_time: float = 0.1
    diffusivity: float = 1.0
    cfl_safety: float = 0.9
    conductivity_exponent: float = 0.0
    conductivity_floor: float = 0.01
    initial_temp_range_k: tuple[float, float] = (100.0, 500.0)
    boundary_temp_range_k: tuple[float, float] = (100.0, 500.0)
    num_regions: int = 8
    hard_contrast_quantile: float = 0.95
    hidden_width: int = 128
    num_hidden_layers: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 64
    weight_average_decay: float = 0.0
    buffer_capacity_samples: int = 1000
    buffer_watermark_samples: int = 400
    firo_max_reuse: int = 8
    buffer_choice: str = "agent"
    total_cores: int = 8
    solver_fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    trainer_parallel_fraction: float = 0.9
    control_interval_s: float = 0.05
    compute_budget_core_s: float = 16.0
    validation_simulations: int = 32
    validation_hard_simulations: int = 16
    validation_seed: int = 20230723
    adaptive_uniform_floor: float = 0.1
    adaptive_proposal: str = "region"
    breed_sigma: float = 0.1
    breed_pool_samples: int = 1024
    loss_ema_decay: float = 0.95
    reward_compute_scale_core_s: float | None = None
    cost_table: str | None = None
    invalid_action: str = "raise"

    def __post_init__(self) -> None:
        require_number("grid_size", self.grid_size, 4, 256, integer=True)
        require_number("num_time_steps", self.num_time_steps, 1, 1000, integer=True)
        require_number("final_time", self.final_time, 0.0, 100.0, low_inclusive=False)
        require_number("diffusivity", self.diffusivity, 0.0, 100.0, low_inclusive=False)
        require_number("cfl_safety", self.cfl_safety, 1e-3, 1.0)
        grid = HeatGrid(
            self.grid_size, self.diffusivity, self.final_time, self.num_time_steps, self.cfl_safety
        )
        if grid.total_substeps > MAX_SOLVER_SUBSTEPS:
            raise ConfigError(
                f"cfl_safety: with grid_size {self.grid_size}, diffusivity {self.diffusivity}, "
                f"final_time {self.final_time} and cfl_safety {self.cfl_safety} one simulation "
                f"takes {grid.total_substeps:,} forward-Euler steps, at most "
                f"{MAX_SOLVER_SUBSTEPS:,} are allowed: raise cfl_safety or lower grid_size, "
                "diffusivity or final_time"
            )
        require_number("conductivity_exponent", self.conductivity_exponent, 0.0, 8.0)
        require_number("conductivity_floor", self.conductivity_floor, 0.0, 1.0, low_inclusive=False)
        object.__setattr__(
            self,
            "initial_temp_range_k",
            _require_range("initial_temp_range_k", self.initial_temp_range_k, 0.0, 1e6),
        )
        object.__setattr__(
            self,
            "boundary_temp_range_k",
            _require_range("boundary_temp_range_k", self.boundary_temp_range_k, 0.0, 1e6),
        )
        require_number("num_regions", self.num_regions, 1, 32, integer=True)
        require_number(
            "hard_contrast_quantile",
            self.hard_contrast_quantile,
            0.0,
            1.0,
            high_inclusive=False,
        )
        require_number("hidden_width", self.hidden_width, 1, 4096, integer=True)
        require_number("num_hidden_layers", self.num_hidden_layers, 1, 8, integer=True)
        require_number("learning_rate", self.learning_rate, 0.0, 1.0, low_inclusive=False)
        require_number("batch_size", self.batch_size, 1, 65536, integer=True)
        require_number(
            "weight_average_decay", self.weight_average_decay, 0.0, 1.0, high_inclusive=False
        )
        require_number(
            "buffer_capacity_samples",
            self.buffer_capacity_samples,
            self.batch_size,
            10_000_000,
            integer=True,
        )
        require_number(
            "buffer_watermark_samples",
            self.buffer_watermark_samples,
            self.batch_size,
            self.buffer_capacity_samples,
            integer=True,
        )
        require_number("firo_max_reuse", self.firo_max_reuse, 1, 1_000_000, integer=True)
        require_choice("buffer_choice", self.buffer_choice, BUFFER_CHOICES)
        require_number("total_cores", self.total_cores, 2, 1_000_000, integer=True)
        fractions = self.solver_fractions
        if not isinstance(fractions, (tuple, list)) or not 1 <= len(fractions) <= 32:
            raise ConfigError(
                f"solver_fractions: must be a list of 1 to 32 fractions, got {fractions!r}"
            )
        for index, fraction in enumerate(fractions):
            require_number(f"solver_fractions[{index}]", fraction, 0.0, 1.0)
        workers = [round(f * self.total_cores) for f in fractions]
        if len(set(workers)) != len(workers):
            raise ConfigError(
                f"solver_fractions: must give distinct worker counts on {self.total_cores} "
                f"cores, got {workers}"
            )
        object.__setattr__(self, "solver_fractions", tuple(float(f) for f in fractions))
        require_number("trainer_parallel_fraction", self.trainer_parallel_fraction, 0.0, 1.0)
        require_number("control_interval_s", self.control_interval_s, 0.0, 1e6, low_inclusive=False)
        require_number(
            "compute_budget_core_s",
            self.compute_budget_core_s,
            self.total_cores * self.control_interval_s,
            1e9,
        )
        require_number(
            "validation_simulations", self.validation_simulations, 1, 100_000, integer=True
        )
        require_number(
            "validation_hard_simulations",
            self.validation_hard_simulations,
            0,
            100_000,
            integer=True,
        )
        require_number("validation_seed", self.validation_seed, 0, 2**63 - 1, integer=True)
        require_number("adaptive_uniform_floor", self.adaptive_uniform_floor, 0.0, 1.0)
        require_choice("adaptive_proposal", self.adaptive_proposal, ADAPTIVE_PROPOSALS)
        require_number("breed_sigma", self.breed_sigma, 0.0, 1.0, low_inclusive=False)
        require_number(
            "breed_pool_samples", self.breed_pool_samples, self.batch_size, 10_000_000, integer=True
        )
        require_number("loss_ema_decay", self.loss_ema_decay, 0.0, 1.0, high_inclusive=False)
        if self.reward_compute_scale_core_s is not None:
            require_number(
                "reward_compute_scale_core_s",
                self.reward_compute_scale_core_s,
                0.0,
                1e12,
                low_inclusive=False,
            )
        if self.cost_table is not None and not isinstance(self.cost_table, str):
            raise ConfigError(f"cost_table: must be a file path or None, got {self.cost_table!r}")
        require_choice("invalid_action", self.invalid_action, INVALID_ACTION_MODES)
        # Fail at construction, naming the field, when the table is missing or malformed.
        from schedgym.envs.datagen.costs import load_cost_table

        load_cost_table(self.cost_table)

    @property
    def solver_workers(self) -> tuple[int, ...]:
        """Solver workers of each split choice."""
        return tuple(round(f * self.total_cores) for f in self.solver_fractions)

    @property
    def interval_compute_core_s(self) -> float:
        """Core-seconds allocated by one full control interval."""
        return self.total_cores * self.control_interval_s

    @property
    def reward_scale_core_s(self) -> float:
        """The reward's compute unit (see ``reward_compute_scale_core_s``)."""
        if self.reward_compute_scale_core_s is None:
            return self.interval_compute_core_s
        return self.reward_compute_scale_core_s


PRESETS: dict[str, dict[str, Any]] = {
    # The default: a 32x32 grid, 8 cores, 40 decisions; under 30 s per episode on one core.
    "default": {},
    # The quick leaderboard suite's size: 16x16 grid, smaller MLP, 15 decisions, ~1.5 s.
    "small": {
        "grid_size": 16,
        "num_time_steps": 10,
        "hidden_width": 64,
        "batch_size": 32,
        "buffer_capacity_samples": 500,
        "buffer_watermark_samples": 200,
        "control_interval_s": 0.02,
        "compute_budget_core_s": 2.4,
        "validation_simulations": 24,
        "validation_hard_simulations": 12,
    },
    # The nonlinear problem (conductivity ~ T^4 over a 1% floor): hot sides push steep fronts
    # into cold material, so the largest contrasts are far harder to learn than the rest (the
    # setting of Breed's loss-driven sampling; the worst held-out samples are the late snapshots
    # of a cold interior between hot sides). The small preset's grid, batch and buffer; a wider
    # MLP and an 8 core-s budget, so that the easy bands are learnt and the hard one stands out
    # while its error is still limited by its data; twenty bands, so that the top one is the
    # hard validation set's (the top 5% of contrasts), and 48 hard validation simulations.
    # Adaptive sampling picks regions by loss mass (Breed's population-based parent selection;
    # the mean-loss rule concentrates too little). Two knobs, the same for every policy, let the
    # hard error follow the hard data instead of optimisation noise: the scores read a Polyak
    # average of the weights (decay 0.999 per step, about the last 1,000 of 9,786 steps; the last
    # weights' hard p99 swings 10-20% between intervals), and FIRO draws a sample up to 16 times
    # (at 8 its trainer waited for data: 6,834 steps instead of 9,786). Chosen on seeds 100-108,
    # adaptive's hard p99 over FIRO's: 0.79 with the average alone, 0.76 with twenty bands too,
    # 0.72 with all three (see benchmarks/bench_datagen.py).
    "hard-region": {
        "grid_size": 16,
        "num_time_steps": 10,
        "conductivity_exponent": 4.0,
        "conductivity_floor": 0.01,
        "num_regions": 20,
        "hidden_width": 128,
        "batch_size": 32,
        "buffer_capacity_samples": 500,
        "buffer_watermark_samples": 200,
        "firo_max_reuse": 16,
        "control_interval_s": 0.02,
        "compute_budget_core_s": 8.0,
        "validation_simulations": 24,
        "validation_hard_simulations": 48,
        "adaptive_proposal": "region-mass",
        "weight_average_decay": 0.999,
    },
    # A small, fast instance for smoke tests and the all-envs test suite.
    "tiny": {
        "grid_size": 8,
        "num_time_steps": 4,
        "hidden_width": 16,
        "num_hidden_layers": 1,
        "batch_size": 16,
        "buffer_capacity_samples": 256,
        "buffer_watermark_samples": 32,
        "total_cores": 4,
        "solver_fractions": (0.0, 0.5, 1.0),
        "control_interval_s": 0.002,
        "compute_budget_core_s": 0.12,
        "validation_simulations": 6,
        "validation_hard_simulations": 2,
        "num_regions": 3,
    },
}
