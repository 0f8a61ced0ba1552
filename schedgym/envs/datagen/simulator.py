"""The OnlineDataGen simulator: solver workers feed a buffer, a trainer fits a surrogate online.

Pure state machine, no Gymnasium. The clock is simulated: a simulation occupies one solver worker
(one core) for its calibrated time, ``total_substeps * substep_s(grid_size)`` from the cost table;
a training step occupies the trainer for its calibrated time on the trainer's cores. The solver
and the surrogate really run (numpy), so the validation error is real; only *when* things happen
comes from the cost table, never from wall time, so an episode replays bit for bit.

One :meth:`DataGenSimulator.advance` call is one control interval (``control_interval_s``, the
last one cut at the compute budget). Within it:

1. The split takes effect: ``w`` solver workers, ``total_cores - w`` trainer cores. Workers beyond
   ``w`` that are running a simulation cancel it (counted in ``simulations_cancelled``, its cost
   spent). A training step in flight finishes at its planned time.
2. Workers run simulations back to back; each draws its parameters when it starts, from the
   acquisition rule fixed at the interval's start (a region, uniform, or loss-weighted with the
   per-region training losses of that moment). Simulations that finish in the interval are solved
   as one vectorised batch; each yields ``num_time_steps`` samples, put in the buffer at its
   finish time.
3. The trainer, whenever free and the buffer holds at least the watermark, draws a minibatch and
   takes one Adam step (its update is applied when the step starts, the step's duration is then
   charged); otherwise it waits for the next simulation to finish. Puts and draws interleave in
   time order; a put at the same instant as a draw comes first.
4. At the interval's end the surrogate is scored on the fixed held-out set.

Compute is allocation: ``total_cores`` cores for the simulated time elapsed (core-seconds), used or
idle, as a batch allocation is billed.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.core.errors import InvalidActionError
from schedgym.core.events import EventQueue
from schedgym.core.fork import Forkable, shallow_list, shared
from schedgym.envs.datagen.blas import one_blas_thread
from schedgym.envs.datagen.buffers import BUFFER_KINDS, SampleBuffer
from schedgym.envs.datagen.config import DataGenConfig
from schedgym.envs.datagen.costs import amdahl_speedup, load_cost_table
from schedgym.envs.datagen.generator import (
    DataGenInstance,
    ValidationSet,
    conductivity_of,
    heat_grid,
    parameter_space,
)
from schedgym.envs.datagen.sampling import INPUT_DIM, NUM_PARAMETERS, reflect_into_unit
from schedgym.envs.datagen.solver import solve
from schedgym.envs.datagen.surrogate import MLPSurrogate, training_flops

# Acquisition rules after the K regions (action index K and K + 1).
UNIFORM, LOSS_WEIGHTED = "uniform", "loss-weighted"
# How many timeline spans render keeps.
TIMELINE_SPANS = 400


@dataclass(frozen=True)
class Scores:
    """The surrogate's errors on the held-out set (fields scaled to [0, 1] over the temperature
    range, so errors are fractions of it)."""

    mse: float
    p99_err: float  # 99th percentile of the per-sample RMSE
    mse_hard: float
    p99_err_hard: float
    region_mse: np.ndarray  # (K,), nan for a region without held-out samples


def score(model: MLPSurrogate, validation: ValidationSet, num_regions: int) -> Scores:
    """Evaluate ``model`` on ``validation``."""
    # The averaged parameters when the config keeps a Polyak average, else the trained ones.
    errors = model.per_sample_mse(validation.inputs, validation.targets, averaged=True)
    per_sample = errors.astype(np.float64)
    rmse = np.sqrt(per_sample)
    hard = validation.hard
    counts = np.bincount(validation.region, minlength=num_regions)
    sums = np.bincount(validation.region, weights=per_sample, minlength=num_regions)
    with np.errstate(invalid="ignore", divide="ignore"):
        region_mse = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Scores(
        float(per_sample.mean()),
        float(np.percentile(rmse, 99)),
        float(per_sample[hard].mean()) if hard.any() else math.nan,
        float(np.percentile(rmse[hard], 99)) if hard.any() else math.nan,
        region_mse,
    )


class DataGenSimulator(Forkable):
    """Online data generation for a deep surrogate of the 2D heat equation.

    Args:
        config: the validated configuration.
        instance: what the episode starts from: the validation set and the surrogate's initial
            weights (``DataGenGenerator.generate(config, seed)`` or a recorded one).
        streams: independent generators for the policy-dependent draws, named ``params``
            (simulation parameters), ``acquisition`` (region draws) and ``buffer`` (minibatch
            draws, reservoir); see :mod:`schedgym.envs.datagen.generator`.
    """

    def __init__(
        self,
        config: DataGenConfig,
        instance: DataGenInstance,
        streams: Mapping[str, np.random.Generator],
    ) -> None:
        instance.check_fits(config)
        self.config = config
        self._instance = instance
        self._rng_params = streams["params"]
        self._rng_acquisition = streams["acquisition"]
        self._rng_buffer = streams["buffer"]
        self.grid = heat_grid(config)
        self.space = parameter_space(config)
        self.validation = instance.validation
        self.num_regions = config.num_regions
        self.output_dim = config.grid_size**2
        self.surrogate = MLPSurrogate(
            instance.initial_weights, config.learning_rate, config.weight_average_decay
        )
        costs = load_cost_table(config.cost_table)
        self.cost_table_cpu = costs.cpu
        # Seconds of one simulation on one core, and of one training step on one core.
        self.conductivity = conductivity_of(config, self.space)
        self.simulation_s = self.grid.total_substeps * costs.substep_s(
            config.grid_size, nonlinear=self.conductivity is not None
        )
        self.train_step_single_core_s = costs.train_step_single_core_s(
            training_flops(config.batch_size, self.surrogate.num_params),
            self.surrogate.num_params,
            config.batch_size,
        )
        self.end_time_s = config.compute_budget_core_s / config.total_cores
        self.num_intervals = math.ceil(self.end_time_s / config.control_interval_s - 1e-9)
        self.buffer: SampleBuffer | None = None
        self.buffer_kind: str | None = None
        if config.buffer_choice != "agent":
            self._make_buffer(config.buffer_choice)
        # Workers, shape (total_cores,): one simulation each at a time.
        cores = config.total_cores
        self.worker_busy = np.zeros(cores, bool)
        self.worker_start_s = np.zeros(cores)
        self.worker_finish_s = np.zeros(cores)
        self.worker_params = np.zeros((cores, NUM_PARAMETERS))
        self.worker_region = np.zeros(cores, np.int64)
        self.active_workers = 0
        self.trainer_cores = 0
        self.trainer_free_s = 0.0  # end of the training step in flight (or last one)
        self.acquisition: int | str = UNIFORM
        # Per region, shape (K,).
        self.region_simulations = np.zeros(self.num_regions, np.int64)
        self.region_samples = np.zeros(self.num_regions, np.int64)
        self.region_last_sample_s = np.full(self.num_regions, -math.inf)
        self.region_loss = np.zeros(self.num_regions)  # EMA of the per-sample training loss
        self.region_has_loss = np.zeros(self.num_regions, bool)
        # Breed's parent pool (``adaptive_proposal="gaussian"``): a ring of the most recent
        # training samples' [0, 1]-scaled parameters and training losses.
        self.breeds = config.adaptive_proposal == "gaussian"
        pool = config.breed_pool_samples if self.breeds else 0
        self.pool_params = np.zeros((pool, NUM_PARAMETERS))
        self.pool_loss = np.zeros(pool)
        self.pool_size = 0
        self._pool_next = 0
        self.now_s = 0.0
        self.interval = 0
        self.unique_simulations = 0
        self.simulations_cancelled = 0
        self.samples_generated = 0
        self.training_steps = 0
        self.samples_trained = 0
        self.trainer_busy_s = 0.0
        self.solver_busy_s = 0.0  # worker-seconds spent on simulations, cancelled ones included
        self.last_trainer_busy_fraction = 0.0
        self.last_solver_busy_fraction = 0.0
        self.done = False
        with one_blas_thread():
            self.scores = score(self.surrogate, self.validation, self.num_regions)
        self.initial_scores = self.scores
        # One entry per interval end (and the start): for learning curves and equal-step
        # comparisons.
        self.history: list[dict[str, float]] = [self._history_row()]
        # (row, start_s, end_s, colour): row < total_cores is a worker, total_cores the trainer.
        self.timeline: deque[tuple[int, float, float, int]] = deque(maxlen=TIMELINE_SPANS)

    # ----------------------------------------------------------------- read-only view helpers
    @property
    def episode(self) -> DataGenInstance:
        """What the episode started from: for recording and replay."""
        return self._instance

    @property
    def compute_used_core_s(self) -> float:
        """Core-seconds allocated so far."""
        return self.config.total_cores * self.now_s

    @property
    def compute_left_core_s(self) -> float:
        """Core-seconds left in the budget."""
        return max(self.config.compute_budget_core_s - self.compute_used_core_s, 0.0)

    def loss_weighted_available(self) -> bool:
        """Whether the loss-weighted acquisition has a training loss to weight by."""
        return bool(self.region_has_loss.any())

    def acquisition_probabilities(self) -> np.ndarray:
        """``(K,)`` region probabilities of the loss-weighted rule now.

        Breed-like: a share ``adaptive_uniform_floor`` of the draws stays uniform; the rest is
        proportional to each region's recent training loss (a region not trained on yet counts
        as the worst seen, so it gets explored); with ``region-mass``, proportional to that loss
        times the region's samples held in the buffer. With the Gaussian proposal, the rest is each
        region's share of the parent pool's loss (the parents' regions; a child lands within
        ``breed_sigma`` of its parent, so near, not always inside, its parent's region).
        """
        floor = self.config.adaptive_uniform_floor
        uniform = np.full(self.num_regions, 1.0 / self.num_regions)
        if not self.region_has_loss.any():
            return uniform
        if self.breeds:
            parents = self.space.region_of(self.space.unscaled(self.pool_params[: self.pool_size]))
            mass = np.bincount(
                parents, weights=self.pool_loss[: self.pool_size], minlength=self.num_regions
            )
            total = float(mass.sum())
            return floor * uniform + (1.0 - floor) * mass / total if total > 0.0 else uniform
        worst = float(self.region_loss[self.region_has_loss].max())
        loss = np.where(self.region_has_loss, self.region_loss, worst)
        if self.config.adaptive_proposal == "region-mass" and self.buffer is not None:
            # Breed picks parents among the samples in training, in proportion to their loss:
            # a region's chance is its held samples times their mean loss. The population
            # feedback concentrates draws where the loss stays high, until it comes down.
            loss = loss * self.buffer.region_counts()
        total = float(loss.sum())
        if not total > 0.0:
            return uniform
        return floor * uniform + (1.0 - floor) * loss / total

    def train_step_s(self, cores: int) -> float:
        """Seconds of one training step on ``cores`` trainer cores."""
        speedup = amdahl_speedup(cores, self.config.trainer_parallel_fraction)
        return self.train_step_single_core_s / speedup

    def reseed(self, seed: np.random.SeedSequence) -> None:
        """Replace the state of the parameter, acquisition and buffer generators by fresh ones
        from ``seed`` (for look-ahead copies whose future draws must not be the real ones).

        The generators are reseeded in place, because the buffer holds the same object.
        """
        generators = (self._rng_params, self._rng_acquisition, self._rng_buffer)
        for generator, child in zip(generators, seed.spawn(3), strict=True):
            generator.bit_generator.state = np.random.default_rng(child).bit_generator.state

    # ------------------------------------------------------------------------- dynamics
    def choose_buffer(self, kind: str) -> None:
        """Fix the buffer policy (once; with ``buffer_choice="agent"``, at the first decision)."""
        if self.buffer_kind is not None:
            if kind != self.buffer_kind:
                raise InvalidActionError(
                    f"action: the buffer is already {self.buffer_kind!r}, cannot switch to {kind!r}"
                )
            return
        self._make_buffer(kind)

    def advance(self, acquisition: int | str, split: int) -> None:
        """Run one control interval with ``acquisition`` (a region index, ``uniform`` or
        ``loss-weighted``) and split choice ``split`` (an index into ``solver_fractions``)."""
        if self.done:
            raise InvalidActionError("action: the episode is over; call reset()")
        if self.buffer is None:
            raise InvalidActionError("action: choose a buffer policy first")
        if acquisition == LOSS_WEIGHTED and not self.loss_weighted_available():
            raise InvalidActionError("action: loss-weighted acquisition needs a training loss")
        with one_blas_thread():
            self._advance(acquisition, split)

    def _advance(self, acquisition: int | str, split: int) -> None:
        config = self.config
        start_s = self.now_s
        end_s = min((self.interval + 1) * config.control_interval_s, self.end_time_s)
        self.acquisition = acquisition
        self._probabilities = self.acquisition_probabilities()
        self._set_split(config.solver_workers[split], start_s)
        solver_busy_before, trainer_busy_before = self.solver_busy_s, self.trainer_busy_s
        finished = self._run_workers(start_s, end_s)
        self._run_trainer(start_s, end_s, self._generate(finished))
        self.now_s = end_s
        self.interval += 1
        elapsed = end_s - start_s
        if self.active_workers > 0:
            self.last_solver_busy_fraction = (self.solver_busy_s - solver_busy_before) / (
                elapsed * self.active_workers
            )
        else:
            self.last_solver_busy_fraction = 0.0
        self.last_trainer_busy_fraction = min(
            (self.trainer_busy_s - trainer_busy_before) / elapsed, 1.0
        )
        self.scores = score(self.surrogate, self.validation, self.num_regions)
        self.history.append(self._history_row())
        self.done = end_s >= self.end_time_s - 1e-12

    # -------------------------------------------------------------------------- helpers
    def _make_buffer(self, kind: str) -> None:
        if kind not in BUFFER_KINDS:
            raise InvalidActionError(f"action: unknown buffer policy {kind!r}")
        config = self.config
        self.buffer = SampleBuffer(
            kind,
            config.buffer_capacity_samples,
            config.buffer_watermark_samples,
            INPUT_DIM,
            self.output_dim,
            self.num_regions,
            self._rng_buffer,
            config.firo_max_reuse,
        )
        self.buffer_kind = kind

    def _set_split(self, workers: int, now_s: float) -> None:
        cancelled = np.flatnonzero(self.worker_busy[workers:]) + workers
        for worker in cancelled.tolist():
            # The worker's core goes to the trainer now; the partial simulation is lost (its busy
            # time up to now was counted by the previous interval).
            self.timeline.append((worker, self.worker_start_s[worker], now_s, -1))
            self.worker_busy[worker] = False
            self.simulations_cancelled += 1
        self.active_workers = workers
        self.trainer_cores = self.config.total_cores - workers

    def _draw_region(self) -> int:
        if isinstance(self.acquisition, int):
            return self.acquisition
        if self.acquisition == UNIFORM:
            return int(self._rng_acquisition.integers(self.num_regions))
        return int(self._rng_acquisition.choice(self.num_regions, p=self._probabilities))

    def breed_parameters(self) -> np.ndarray:
        """``(5,)`` parameters from Breed's proposal: a uniform draw with probability
        ``adaptive_uniform_floor``, else a Gaussian step around a parent picked from the pool
        with probability proportional to its training loss."""
        total = float(self.pool_loss[: self.pool_size].sum())
        if self._rng_acquisition.random() < self.config.adaptive_uniform_floor or not total > 0:
            region = int(self._rng_acquisition.integers(self.num_regions))
            return self.space.draw_region(self._rng_params, region)[0]
        weights = self.pool_loss[: self.pool_size] / total
        parent = self.pool_params[int(self._rng_acquisition.choice(self.pool_size, p=weights))]
        step = self.config.breed_sigma * self._rng_params.standard_normal(NUM_PARAMETERS)
        return self.space.unscaled(reflect_into_unit(parent + step)[None, :])[0]

    def _start(self, worker: int, now_s: float, queue: EventQueue) -> None:
        if self.breeds and self.acquisition == LOSS_WEIGHTED:
            params = self.breed_parameters()
            region = int(self.space.region_of(params[None, :])[0])
        else:
            region = self._draw_region()
            params = self.space.draw_region(self._rng_params, region)[0]
        self.worker_params[worker] = params
        self.worker_region[worker] = region
        self.worker_busy[worker] = True
        self.worker_start_s[worker] = now_s
        self.worker_finish_s[worker] = now_s + self.simulation_s
        queue.push(self.worker_finish_s[worker], 0, worker)

    def _run_workers(self, start_s: float, end_s: float) -> list[tuple[float, np.ndarray, int]]:
        """Simulate the workers over the interval; return the finished simulations as
        ``(finish_s, params (5,), region)`` in finishing order."""
        queue = EventQueue()
        for worker in range(self.active_workers):
            if self.worker_busy[worker]:
                queue.push(self.worker_finish_s[worker], 0, worker)
        for worker in range(self.active_workers):
            if not self.worker_busy[worker]:
                self._start(worker, start_s, queue)
        finished: list[tuple[float, np.ndarray, int]] = []
        while queue and queue.peek_time() <= end_s:
            finish_s, _, worker = queue.pop()
            params = self.worker_params[worker].copy()
            region = int(self.worker_region[worker])
            finished.append((finish_s, params, region))
            self.solver_busy_s += finish_s - max(self.worker_start_s[worker], start_s)
            self.timeline.append((worker, self.worker_start_s[worker], finish_s, region))
            self.worker_busy[worker] = False
            if finish_s < end_s:
                self._start(worker, finish_s, queue)
        for worker in range(self.active_workers):
            if self.worker_busy[worker]:
                # Count the part of a still-running simulation that falls in this interval.
                self.solver_busy_s += end_s - max(self.worker_start_s[worker], start_s)
        return finished

    def _generate(
        self, finished: list[tuple[float, np.ndarray, int]]
    ) -> list[tuple[float, np.ndarray, np.ndarray, int]]:
        """Solve the finished simulations in one batch; return ``(time, inputs, targets,
        region)`` per simulation."""
        if not finished:
            return []
        params = np.stack([p for _, p, _ in finished])
        fields = solve(self.grid, params[:, 0], params[:, 1:], self.conductivity)
        inputs = self.space.scale_inputs(params, self.grid.snapshot_times, self.grid.final_time)
        targets = self.space.scale_fields(fields)
        steps = self.grid.num_time_steps
        out = []
        for index, (finish_s, _, region) in enumerate(finished):
            rows = slice(index * steps, (index + 1) * steps)
            out.append((finish_s, inputs[rows], targets[rows], region))
            self.unique_simulations += 1
            self.samples_generated += steps
            self.region_simulations[region] += 1
            self.region_samples[region] += steps
            self.region_last_sample_s[region] = finish_s
        return out

    def _run_trainer(
        self,
        start_s: float,
        end_s: float,
        arrivals: list[tuple[float, np.ndarray, np.ndarray, int]],
    ) -> None:
        buffer = self.buffer
        assert buffer is not None
        batch_size = self.config.batch_size
        steps = self.grid.num_time_steps
        now = max(self.trainer_free_s, start_s)
        step_s = self.train_step_s(self.trainer_cores) if self.trainer_cores > 0 else math.inf
        span_start: float | None = None
        next_arrival = 0
        while True:
            while next_arrival < len(arrivals) and arrivals[next_arrival][0] <= now:
                _, inputs, targets, region = arrivals[next_arrival]
                buffer.put(inputs, targets, np.full(steps, region, np.int64))
                next_arrival += 1
            if now >= end_s:
                break
            if self.trainer_cores > 0 and buffer.ready(batch_size):
                inputs, targets, regions = buffer.draw(batch_size)
                losses = self.surrogate.train_step(inputs, targets)
                self._update_region_loss(losses, regions)
                if self.breeds:
                    self._remember_parents(inputs, losses)
                self.training_steps += 1
                self.samples_trained += batch_size
                if span_start is None:
                    span_start = now
                now += step_s
                self.trainer_busy_s += step_s
                continue
            if span_start is not None:
                self.timeline.append((self.config.total_cores, span_start, now, 0))
                span_start = None
            now = arrivals[next_arrival][0] if next_arrival < len(arrivals) else end_s
        if span_start is not None:
            self.timeline.append((self.config.total_cores, span_start, now, 0))
        for _, inputs, targets, region in arrivals[next_arrival:]:
            buffer.put(inputs, targets, np.full(steps, region, np.int64))
        self.trainer_free_s = max(now, end_s, self.trainer_free_s)

    def _update_region_loss(self, losses: np.ndarray, regions: np.ndarray) -> None:
        counts = np.bincount(regions, minlength=self.num_regions)
        sums = np.bincount(regions, weights=losses, minlength=self.num_regions)
        present = counts > 0
        decay = self.config.loss_ema_decay
        first = present & ~self.region_has_loss
        again = present & self.region_has_loss
        self.region_loss[first] = sums[first] / counts[first]
        self.region_loss[again] = decay * self.region_loss[again] + (1.0 - decay) * (
            sums[again] / counts[again]
        )
        self.region_has_loss |= present

    def _remember_parents(self, inputs: np.ndarray, losses: np.ndarray) -> None:
        """Put a training batch's parameters (recovered from the inputs' [-1, 1] scaling) and
        losses in the parent pool, overwriting the oldest."""
        capacity = self.pool_params.shape[0]
        scaled = (inputs[:, :NUM_PARAMETERS].astype(np.float64) + 1.0) * 0.5
        slots = (self._pool_next + np.arange(len(losses))) % capacity
        self.pool_params[slots] = np.clip(scaled, 0.0, 1.0)
        self.pool_loss[slots] = losses
        self._pool_next = int((self._pool_next + len(losses)) % capacity)
        self.pool_size = min(self.pool_size + len(losses), capacity)

    def _history_row(self) -> dict[str, float]:
        return {
            "time_s": self.now_s,
            "compute_s": self.compute_used_core_s,
            "training_steps": float(self.training_steps),
            "samples_trained": float(self.samples_trained),
            "unique_simulations": float(self.unique_simulations),
            "val_mse": self.scores.mse,
            "val_p99_err": self.scores.p99_err,
            "val_mse_hard": self.scores.mse_hard,
            "val_p99_err_hard": self.scores.p99_err_hard,
        }

    def summary(self) -> dict[str, float | int]:
        """The episode summary so far (errors are fractions of the temperature range)."""
        buffer = self.buffer
        elapsed = max(self.now_s, 1e-12)
        return {
            "val_mse": self.scores.mse,
            "val_p99_err": self.scores.p99_err,
            "val_mse_hard": self.scores.mse_hard,
            "val_p99_err_hard": self.scores.p99_err_hard,
            "val_mse_initial": self.initial_scores.mse,
            "unique_simulations": self.unique_simulations,
            "samples_generated": self.samples_generated,
            "samples_trained": self.samples_trained,
            "training_steps": self.training_steps,
            "compute_s": self.compute_used_core_s,
            "simulated_time_s": self.now_s,
            "simulations_cancelled": self.simulations_cancelled,
            "samples_in_buffer": buffer.size if buffer is not None else 0,
            "samples_dropped": (buffer.overflowed + buffer.rejected) if buffer else 0,
            "trainer_busy_fraction": min(self.trainer_busy_s / elapsed, 1.0),
            "solver_core_s": float(self.solver_busy_s),
        }

    # ---------------------------------------------------------------------------- forking
    def fork_memo(self) -> dict[int, Any]:
        """What a :meth:`fork` shares: the config, the grid, the parameter space and the
        initial scores (never changed once built; the instance, validation set included, is
        immutable and shares itself); the history is copied shallowly (its rows are never
        changed)."""
        memo = shared(self.config, self.grid, self.space, self.initial_scores)
        memo.update(shallow_list(self.history))
        return memo
