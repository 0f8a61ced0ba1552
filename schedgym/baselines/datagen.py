"""Baselines for OnlineDataGen: the offline pipeline, online training with Melissa's buffers, and
Breed-like adaptive sampling.

References:
- Melissa online training: L. Meyer, M. Schouler, R. A. Caulk, A. Ribés, B. Raffin, "Training Deep
  Surrogate Models with Large Scale Online Learning", ICML 2023 (FIFO, FIRO and reservoir
  buffers; online training on many unique simulations beats offline training on a fixed dataset
  at equal training steps, because the offline one overfits).
- Breed: S. Dymchenko, A. Purandare, B. Raffin, "Loss-driven sampling within hard-to-learn areas
  for simulation-based neural network training" (2024): steer new simulations toward parameters
  of high training loss, keeping a share of uniform draws.

Every policy reads the simulator's view (``env.unwrapped.simulator``): counts, losses already
observed, the clock; never the held-out targets or future draws. Registered as ``offline``,
``online-fifo``, ``online-firo``, ``online-reservoir``, ``adaptive`` and ``random``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.baselines.common import RandomMaskedPolicy
from schedgym.core.errors import ConfigError
from schedgym.core.policy import SimulatorPolicy, register_policy
from schedgym.envs.datagen.buffers import BUFFER_KINDS
from schedgym.envs.datagen.simulator import DataGenSimulator

FAMILY = "OnlineDataGen"


def _env(env: Any) -> Any:
    return env.unwrapped


def _nearest_split(env: Any, solver_fraction: float) -> int:
    """Index of the split choice closest to ``solver_fraction`` (ties: fewer solver cores)."""
    fractions = np.asarray(_env(env).config.solver_fractions)
    return int(np.argmin(np.abs(fractions - solver_fraction) + 1e-9 * fractions))


def _buffer_index(buffer: str) -> int:
    if buffer not in BUFFER_KINDS:
        raise ConfigError(f"buffer: must be one of {list(BUFFER_KINDS)}, got {buffer!r}")
    return BUFFER_KINDS.index(buffer)


def _uniform(env: Any) -> int:
    """The acquisition index of uniform sampling over the whole space."""
    return int(_env(env).num_regions)


class OnlinePolicy(SimulatorPolicy[DataGenSimulator]):
    """Melissa's online training: uniform sampling, a fixed solver/trainer split, one buffer.

    Args:
        buffer: ``fifo``, ``firo`` or ``reservoir``.
        solver_fraction: share of the cores running solver workers (the nearest split choice).
    """

    def __init__(self, buffer: str = "firo", solver_fraction: float = 0.5) -> None:
        self.buffer = _buffer_index(buffer)
        self.solver_fraction = solver_fraction

    def act(self, observation: Any, env: Any) -> int:
        split = _nearest_split(env, self.solver_fraction)
        return int(_env(env).encode_action(_uniform(env), split, self.buffer))


class OfflinePolicy(SimulatorPolicy[DataGenSimulator]):
    """The classic pipeline: generate a fixed dataset first, then train many epochs over it.

    Phase 1 gives every core to solver workers (uniform sampling, the trainer idle) until the
    dataset has ``dataset_simulations`` simulations; phase 2 gives every core to the trainer, which
    draws epochs from a reservoir buffer holding the dataset. The dataset is "what fits in the
    training memory" by default: ``buffer_capacity_samples // num_time_steps`` simulations (the
    reservoir keeps a uniform subset of any overshoot of the last generation interval).

    Args:
        dataset_simulations: simulations in the fixed dataset (``None``: the default above).
    """

    def __init__(self, dataset_simulations: int | None = None) -> None:
        if dataset_simulations is not None and dataset_simulations < 1:
            raise ConfigError(f"dataset_simulations: must be at least 1, got {dataset_simulations}")
        self.dataset_simulations = dataset_simulations
        self._training = False

    def reset(self, env: Any) -> None:
        fractions = _env(env).config.solver_fractions
        if 0.0 not in fractions:
            raise ConfigError(
                "solver_fractions: the offline baseline needs the split 0.0 (all cores training, "
                f"no new simulations), got {fractions}"
            )
        self._training = False

    def target_simulations(self, env: Any) -> int:
        """Simulations in the fixed dataset."""
        if self.dataset_simulations is not None:
            return self.dataset_simulations
        config = _env(env).config
        return max(1, config.buffer_capacity_samples // config.num_time_steps)

    def act(self, observation: Any, env: Any) -> int:
        sim = self.simulator(env)
        config = _env(env).config
        fractions = list(config.solver_fractions)
        target = self.target_simulations(env)
        self._training = self._training or sim.unique_simulations >= target
        if self._training:
            split = fractions.index(0.0)
        else:
            split = self._generation_split(sim, target - sim.unique_simulations)
        return int(_env(env).encode_action(_uniform(env), split, _buffer_index("reservoir")))

    @staticmethod
    def _generation_split(sim: DataGenSimulator, missing: int) -> int:
        """The split with the most solver workers whose next interval is not expected to produce
        more than the ``missing`` simulations; the fewest workers if none fits."""
        config = sim.config
        per_worker = config.control_interval_s / sim.simulation_s
        positive = sorted(
            (workers, index) for index, workers in enumerate(config.solver_workers) if workers > 0
        )
        if not positive:
            raise ConfigError("solver_fractions: the offline baseline needs a split with workers")
        chosen = positive[0][1]
        for workers, index in positive:
            if workers * per_worker <= missing:
                chosen = index
        return chosen


class AdaptivePolicy(OnlinePolicy):
    """Breed-like adaptive sampling: new simulations go where the training loss is high.

    Uses the environment's loss-weighted acquisition: each simulation's region is drawn with
    probability ``floor / K + (1 - floor) * loss_k / sum(loss)`` (``adaptive_uniform_floor`` of
    the config), from each region's recent training loss; uniform until a loss exists. The
    config's ``adaptive_proposal`` chooses Breed's variant: ``region`` (that rule),
    ``region-mass`` (``loss_k`` times the region's samples in the buffer: Breed's parents drawn
    from the training population in proportion to their loss; the ``hard-region`` preset's) or
    ``gaussian`` (a Gaussian step around a loss-weighted parent sample). Fixed split and buffer,
    as the online baselines.

    Args:
        buffer: ``fifo``, ``firo`` or ``reservoir``.
        solver_fraction: share of the cores running solver workers (the nearest split choice).
    """

    def act(self, observation: Any, env: Any) -> int:
        unwrapped = _env(env)
        split = _nearest_split(env, self.solver_fraction)
        acquisition = _uniform(env)
        if self.simulator(env).loss_weighted_available():
            acquisition = unwrapped.num_regions + 1
        return int(unwrapped.encode_action(acquisition, split, self.buffer))


def _online(buffer: str) -> Any:
    def factory(**kwargs: Any) -> OnlinePolicy:
        return OnlinePolicy(buffer=buffer, **kwargs)

    return factory


for _name, _factory, _description in (
    (
        "offline",
        OfflinePolicy,
        "Fixed dataset first, then epochs over it (the classic pipeline; Meyer et al. 2023)",
    ),
    ("online-fifo", _online("fifo"), "Online, uniform sampling, FIFO buffer (Melissa)"),
    ("online-firo", _online("firo"), "Online, uniform sampling, FIRO buffer (Melissa)"),
    (
        "online-reservoir",
        _online("reservoir"),
        "Online, uniform sampling, reservoir buffer (Melissa)",
    ),
    (
        "adaptive",
        AdaptivePolicy,
        "Loss-weighted sampling with a uniform floor (Breed, Dymchenko et al. 2024)",
    ),
    ("random", RandomMaskedPolicy, "Uniformly random valid action"),
):
    register_policy(FAMILY, _name, _factory, _description)
