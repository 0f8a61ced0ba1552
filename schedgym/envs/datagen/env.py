"""Gymnasium facade of the OnlineDataGen simulator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from schedgym.core.env import SchedulingEnv
from schedgym.core.generator import recorded_instance
from schedgym.core.rng import spawn_streams
from schedgym.core.spaces import MaskedDiscrete
from schedgym.envs.datagen.buffers import BUFFER_KINDS
from schedgym.envs.datagen.config import PRESETS, DataGenConfig
from schedgym.envs.datagen.generator import DataGenGenerator, DataGenInstance
from schedgym.envs.datagen.simulator import LOSS_WEIGHTED, UNIFORM, DataGenSimulator

STREAMS = DataGenGenerator.streams
NUM_REGION_FEATURES = 7
NUM_GLOBAL_FEATURES = 17
# Floor of errors and losses before the log10 of the observation (a perfect fit stays finite).
LOG_FLOOR = 1e-12


class OnlineDataGenEnv(SchedulingEnv[DataGenConfig, DataGenSimulator]):
    """Online data generation for a deep surrogate of the 2D heat equation (Melissa).

    ## Description
    Solver workers run a real 2D heat-equation solver (explicit finite differences, numpy; in the
    ``hard-region`` preset the conductivity depends on temperature, so hot sides push steep fronts
    into cold material) on parameters the agent steers (initial temperature and four boundary
    temperatures); each simulation's snapshots go into a training buffer (FIFO, FIRO or reservoir)
    from which a real MLP surrogate trains online with Adam (Meyer et al., ICML 2023). Time is
    simulated from a shipped cost table (measured seconds per solver step and per training step),
    never wall time, so episodes replay bit for bit. At each control interval the agent chooses
    where in parameter space the next simulations come from, how a fixed core budget is split
    between solver workers and the trainer, and (at the first decision) the buffer policy.

    ## Action Space
    ``Discrete((K + 2) * S * 3)`` with K regions and S split choices: action
    ``(acquisition * S + split) * 3 + buffer`` where ``acquisition`` is a region ``0..K-1`` (all
    new simulations drawn uniformly inside it), ``K`` (uniform over the whole space) or ``K + 1``
    (loss-weighted, as Breed, with a uniform floor: per simulation, a region with probability
    proportional to its recent training loss, or to its loss mass, or a Gaussian step around a
    loss-weighted parent, by ``adaptive_proposal``); ``split`` indexes ``solver_fractions`` (the
    share of ``total_cores`` running solver workers, the trainer gets the rest); ``buffer`` indexes
    ``(fifo, firo, reservoir)``. ``action_masks()``: the buffer is chosen by the first action and
    fixed thereafter (or fixed by ``buffer_choice``); the loss-weighted rule is valid once a
    training loss exists. An invalid action raises
    :class:`~schedgym.core.errors.InvalidActionError`.

    ## Observation Space
    A ``Dict``:

    - ``region_features`` ``(K, 7)`` float32, per region: share of the samples generated so far,
      log10 of the recent training loss (0 until trained on), a trained-on flag, log10 of the
      held-out MSE of the region's validation samples, age of its newest sample in control
      intervals, share of the buffer, and the probability the loss-weighted rule gives it now.
    - ``global_features`` ``(17,)`` float32: buffer fill, buffer above its watermark, compute
      used and left (fractions of the budget), solver share of the cores, trainer and solver busy
      fractions over the last interval, log10 of the validation MSE and p99 error, buffer policy
      one-hot (zeros before it is chosen), loss-weighted rule available,
      ``log1p(unique simulations) / 10``, ``log1p(samples trained) / 10``, the time of one
      simulation and of one single-core training step in control intervals.

    ## Rewards
    ``r_t = (ln E_{t-1} - ln E_t) * c_ref / c_t``: the decrease of the natural log of the
    validation MSE ``E`` over the interval, per unit of compute, where ``c_t`` is the core-seconds
    the interval allocated (``total_cores`` x its length) and ``c_ref`` is
    ``reward_compute_scale_core_s`` (default: one full interval's core-seconds). With the default,
    every interval but a shortened last one has ``c_t = c_ref``, so the return is
    ``ln(E_0 / E_T)``: the log-ratio of the untrained surrogate's error to the final error.

    ## Starting State
    The surrogate is freshly initialised (seeded), the buffer empty, no simulation running; the
    first decision is at time 0. The held-out validation set (the same for every episode of a
    config, from ``validation_seed``) and the surrogate's initial weights form the episode's
    instance, drawn by :class:`~schedgym.envs.datagen.generator.DataGenGenerator` before any
    decision; ``reset(options={"instance": instance})`` starts from a given
    :class:`~schedgym.envs.datagen.generator.DataGenInstance` instead (e.g.
    ``DataGenGenerator.generate(config, seed)``, or a recorded one), and
    ``env.unwrapped.simulator.episode`` is the one in use. The simulations' parameters, the
    acquisition's region draws and the buffer's draws depend on the policy's choices and are drawn
    as the episode goes, from the seed's streams.
    ``fork()`` (for look-ahead policies) copies the env at its present state, random generators
    included, so that the copy evolves identically; it shares (``fork_memo()``) the config, the
    grid, the parameter space and the validation set.

    ## Episode End
    Terminates when ``compute_budget_core_s`` core-seconds have been allocated (never truncated
    by the env itself). The final ``info`` holds the summary: ``val_mse``, ``val_p99_err`` (99th
    percentile of the per-sample RMSE), their ``_hard`` counterparts on the hard held-out
    simulations, ``unique_simulations``, ``samples_trained``, ``training_steps``, ``compute_s``
    (core-seconds) and more. Errors are in units of the temperature range (fields scaled to
    [0, 1]).

    ## Arguments
    ``config`` (a :class:`DataGenConfig`) or ``preset`` (``default``, ``small``, ``hard-region``,
    ``tiny``), plus
    any config field as a keyword override, and ``render_mode`` (``ansi`` or ``rgb_array``).

    ## Version History
    - v0: initial version.

    Example:
        >>> import gymnasium as gym
        >>> import schedgym
        >>> env = gym.make("schedgym/OnlineDataGen-v0", preset="tiny")
        >>> obs, info = env.reset(seed=0)
        >>> mask = env.unwrapped.action_masks()
        >>> obs, reward, terminated, truncated, info = env.step(int(mask.nonzero()[0][0]))
    """

    config_class = DataGenConfig
    presets = PRESETS
    render_module = "schedgym.envs.datagen.render"

    def __init__(
        self,
        config: DataGenConfig | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, preset, render_mode, **overrides)
        self.num_regions = self.config.num_regions
        self.num_acquisitions = self.num_regions + 2
        self.num_splits = len(self.config.solver_fractions)
        self.num_buffers = len(BUFFER_KINDS)
        n = self.num_acquisitions * self.num_splits * self.num_buffers
        self.action_space = MaskedDiscrete(n, self.action_masks)
        self.observation_space = spaces.Dict(
            {
                "region_features": spaces.Box(
                    -np.inf, np.inf, (self.num_regions, NUM_REGION_FEATURES), np.float32
                ),
                "global_features": spaces.Box(-np.inf, np.inf, (NUM_GLOBAL_FEATURES,), np.float32),
            }
        )

    # ------------------------------------------------------------------------ encoding
    def encode_action(self, acquisition: int, split: int, buffer: int) -> int:
        """The action index of (acquisition index, split index, buffer index)."""
        return (acquisition * self.num_splits + split) * self.num_buffers + buffer

    def decode_action(self, action: int) -> tuple[int, int, int]:
        """(acquisition index, split index, buffer index) of an action index."""
        rest, buffer = divmod(action, self.num_buffers)
        acquisition, split = divmod(rest, self.num_splits)
        return acquisition, split, buffer

    # ------------------------------------------------------------------------------ API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # Spawned even for a given instance, so the simulator's streams are the seed's.
        streams = spawn_streams(self.np_random, STREAMS)
        instance = recorded_instance(options, DataGenInstance)
        if instance is None:
            instance = DataGenGenerator.from_streams(self.config, streams)
        self.simulator = DataGenSimulator(self.config, instance, streams)
        return self._observation(), self._info()

    def _apply(self, action: int) -> tuple[float, bool, bool]:
        sim = self._sim()
        acquisition, split, buffer = self.decode_action(action)
        sim.choose_buffer(BUFFER_KINDS[buffer])
        rule: int | str = acquisition
        if acquisition == self.num_regions:
            rule = UNIFORM
        elif acquisition == self.num_regions + 1:
            rule = LOSS_WEIGHTED
        error_before = sim.scores.mse
        compute_before = sim.compute_used_core_s
        sim.advance(rule, split)
        interval_compute = sim.compute_used_core_s - compute_before
        log_decrease = math.log(max(error_before, LOG_FLOOR)) - math.log(
            max(sim.scores.mse, LOG_FLOOR)
        )
        reward = log_decrease * self.config.reward_scale_core_s / interval_compute
        return reward, sim.done, False

    def action_masks(self) -> np.ndarray:
        """``((K + 2) * S * 3,)`` bool: the valid actions now."""
        shape = (self.num_acquisitions, self.num_splits, self.num_buffers)
        sim = self.simulator
        if sim is None or sim.done:
            return np.zeros(int(np.prod(shape)), bool)
        mask = np.ones(shape, bool)
        if sim.buffer_kind is not None:
            mask[:, :, :] = False
            mask[:, :, BUFFER_KINDS.index(sim.buffer_kind)] = True
        if not sim.loss_weighted_available():
            mask[self.num_regions + 1] = False
        return mask.ravel()

    # -------------------------------------------------------------------------- helpers
    def _info(self) -> dict[str, Any]:
        sim = self._sim()
        return {
            "time_s": sim.now_s,
            "compute_s": sim.compute_used_core_s,
            "val_mse": sim.scores.mse,
            "val_p99_err": sim.scores.p99_err,
            "unique_simulations": sim.unique_simulations,
            "samples_trained": sim.samples_trained,
            "training_steps": sim.training_steps,
        }

    def _observation(self) -> dict[str, np.ndarray]:
        sim = self._sim()
        config = self.config
        interval = config.control_interval_s
        buffer = sim.buffer
        regions = np.zeros((self.num_regions, NUM_REGION_FEATURES), np.float32)
        generated = max(sim.samples_generated, 1)
        regions[:, 0] = sim.region_samples / generated
        regions[:, 1] = np.where(
            sim.region_has_loss, np.log10(np.maximum(sim.region_loss, LOG_FLOOR)), 0.0
        )
        regions[:, 2] = sim.region_has_loss
        region_mse = np.nan_to_num(sim.scores.region_mse, nan=sim.scores.mse)
        regions[:, 3] = np.log10(np.maximum(region_mse, LOG_FLOOR))
        # A region never sampled is as old as the episode plus one interval.
        age_s = np.minimum(sim.now_s - sim.region_last_sample_s, sim.now_s + interval)
        regions[:, 4] = age_s / interval
        if buffer is not None and buffer.size > 0:
            regions[:, 5] = buffer.region_counts() / buffer.size
        regions[:, 6] = sim.acquisition_probabilities()
        budget = config.compute_budget_core_s
        buffer_onehot = np.zeros(len(BUFFER_KINDS), np.float32)
        if sim.buffer_kind is not None:
            buffer_onehot[BUFFER_KINDS.index(sim.buffer_kind)] = 1.0
        global_features = np.array(
            [
                buffer.size / buffer.capacity if buffer is not None else 0.0,
                float(buffer.ready(config.batch_size)) if buffer is not None else 0.0,
                sim.compute_used_core_s / budget,
                sim.compute_left_core_s / budget,
                sim.active_workers / config.total_cores,
                sim.last_trainer_busy_fraction,
                sim.last_solver_busy_fraction,
                math.log10(max(sim.scores.mse, LOG_FLOOR)),
                math.log10(max(sim.scores.p99_err, LOG_FLOOR)),
                *buffer_onehot,
                float(sim.loss_weighted_available()),
                math.log1p(sim.unique_simulations) / 10.0,
                math.log1p(sim.samples_trained) / 10.0,
                sim.simulation_s / interval,
                sim.train_step_single_core_s / interval,
            ],
            np.float32,
        )
        return {"region_features": regions, "global_features": global_features}
