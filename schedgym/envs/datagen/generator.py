"""OnlineDataGen episode generator: (config, seed) -> what an episode starts from, frozen.

What is random in an OnlineDataGen episode splits in two:

- Fixed before the first decision, whatever the policy does (the :class:`DataGenInstance`):
  the held-out validation set (drawn from ``validation_seed``, so the same for every episode of a
  config) and the surrogate's initial weights (He-uniform, from the ``surrogate`` stream).
- Drawn as the episode goes, by the simulator, because what is drawn depends on the policy:
  a simulation's parameters are drawn when a worker starts it, by rejection inside the contrast
  band of the region the acquisition rule picked (``params`` stream): a draw takes candidate
  batches sized by the band's probability until one falls inside the band, so how many uniforms
  the k-th simulation consumes depends on its region, and the numbers cannot be drawn up front and
  scaled into the region later (the band is not a box). Breed's Gaussian proposal
  (``adaptive_proposal="gaussian"``) instead steps around a parent taken from what the trainer
  has seen. The region and parent draws (``acquisition``) happen only under the uniform and
  loss-weighted rules, and the minibatch and reservoir draws (``buffer``) depend on the buffer
  policy and on what the buffer holds.

So an instance is not the whole episode: the same instance under another reset seed draws other
simulations. The env spawns all four streams at ``reset`` in the same order whether or not an
instance is given, so ``generate(config, seed)`` handed to ``reset(seed=seed, ...)`` replays the
seeded episode bit for bit.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError
from schedgym.core.generator import EpisodeGenerator, FrozenInstance, frozen_array
from schedgym.envs.datagen.blas import one_blas_thread
from schedgym.envs.datagen.config import DataGenConfig
from schedgym.envs.datagen.sampling import INPUT_DIM, ParameterSpace, contrast_quantile
from schedgym.envs.datagen.solver import Conductivity, HeatGrid, solve
from schedgym.envs.datagen.surrogate import initial_weights, layer_widths


def heat_grid(config: DataGenConfig) -> HeatGrid:
    """The solver's discretisation under ``config``."""
    return HeatGrid(
        config.grid_size,
        config.diffusivity,
        config.final_time,
        config.num_time_steps,
        config.cfl_safety,
    )


def parameter_space(config: DataGenConfig) -> ParameterSpace:
    """The parameter space and region partition under ``config``."""
    return ParameterSpace(
        config.initial_temp_range_k, config.boundary_temp_range_k, config.num_regions
    )


def conductivity_of(config: DataGenConfig, space: ParameterSpace) -> Conductivity | None:
    """The solver's conductivity law (``None``: constant, the linear heat equation)."""
    if config.conductivity_exponent == 0.0:
        return None
    return Conductivity(
        config.conductivity_exponent,
        config.conductivity_floor,
        space.field_low_k,
        space.field_span_k,
    )


@dataclass(frozen=True, eq=False)
class ValidationSet(FrozenInstance):
    """The fixed held-out set, as surrogate samples. Immutable; arrays are read-only.

    Attributes:
        inputs: ``(S, 6)`` float32 scaled inputs.
        targets: ``(S, n * n)`` float32 scaled fields.
        region: ``(S,)`` int64 region of each sample.
        hard: ``(S,)`` bool, sample of a hard-region simulation.
    """

    inputs: np.ndarray
    targets: np.ndarray
    region: np.ndarray
    hard: np.ndarray

    def __post_init__(self) -> None:
        inputs = frozen_array(self.inputs, np.float32, "instance.validation.inputs", (None, None))
        samples = inputs.shape[0]
        for name, value, dtype, shape in (
            ("inputs", inputs, np.float32, (samples, INPUT_DIM)),
            ("targets", self.targets, np.float32, (samples, None)),
            ("region", self.region, np.int64, (samples,)),
            ("hard", self.hard, np.bool_, (samples,)),
        ):
            object.__setattr__(
                self, name, frozen_array(value, dtype, f"instance.validation.{name}", shape)
            )
        if samples < 1:
            raise ConfigError("instance.validation: must hold at least one sample")

    @property
    def num_samples(self) -> int:
        return int(self.inputs.shape[0])


_VALIDATION_CACHE: dict[tuple[Any, ...], ValidationSet] = {}


def validation_set(config: DataGenConfig) -> ValidationSet:
    """The held-out set of ``config`` (built once per process and configuration).

    ``validation_simulations`` uniform simulations plus ``validation_hard_simulations`` whose
    scaled boundary contrast is above the ``hard_contrast_quantile`` quantile, all from a generator
    seeded with ``validation_seed``: the same set for every episode.
    """
    grid = heat_grid(config)
    key = (
        grid,
        config.initial_temp_range_k,
        config.boundary_temp_range_k,
        config.num_regions,
        config.hard_contrast_quantile,
        config.validation_simulations,
        config.validation_hard_simulations,
        config.validation_seed,
        config.conductivity_exponent,
        config.conductivity_floor,
    )
    cached = _VALIDATION_CACHE.get(key)
    if cached is not None:
        return cached
    space = parameter_space(config)
    rng = np.random.default_rng(config.validation_seed)
    uniform = space.draw(rng, config.validation_simulations, 0.0, 1.0 + 1e-12)
    hard_low = contrast_quantile(config.hard_contrast_quantile)
    hard = space.draw(rng, config.validation_hard_simulations, hard_low, 1.0 + 1e-12)
    params = np.concatenate([uniform, hard])
    with one_blas_thread():
        fields = solve(grid, params[:, 0], params[:, 1:], conductivity_of(config, space))
    steps = grid.num_time_steps
    is_hard = space.scaled_contrast(params) >= hard_low
    result = ValidationSet(
        space.scale_inputs(params, grid.snapshot_times, grid.final_time),
        space.scale_fields(fields),
        np.repeat(space.region_of(params), steps),
        np.repeat(is_hard, steps),
    )
    if len(_VALIDATION_CACHE) > 8:
        _VALIDATION_CACHE.clear()
    _VALIDATION_CACHE[key] = result
    return result


@dataclass(frozen=True, eq=False)
class DataGenInstance(FrozenInstance):
    """What an OnlineDataGen episode starts from. Immutable; arrays are read-only.

    Attributes:
        validation: the held-out set the surrogate is scored on.
        initial_weights: the surrogate's initial ``(fan_in, fan_out)`` float32 weights, layer
            by layer (its biases start at zero).
    """

    validation: ValidationSet
    initial_weights: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.validation, ValidationSet):
            raise ConfigError(
                "instance.validation: must be a ValidationSet, got "
                f"{type(self.validation).__name__}"
            )
        weights = tuple(
            frozen_array(weight, np.float32, f"instance.initial_weights[{layer}]", (None, None))
            for layer, weight in enumerate(self.initial_weights)
        )
        object.__setattr__(self, "initial_weights", weights)

    def check_fits(self, config: DataGenConfig) -> None:
        """Raise ConfigError unless this instance can run under ``config``."""
        validation = self.validation
        outputs = config.grid_size**2
        if validation.targets.shape[1] != outputs:
            raise ConfigError(
                f"instance.validation.targets: {validation.targets.shape[1]} values per sample, "
                f"the config's grid has {outputs} (grid_size {config.grid_size} squared)"
            )
        if validation.region.min() < 0 or validation.region.max() >= config.num_regions:
            raise ConfigError(
                f"instance.validation.region: must be in [0, {config.num_regions - 1}] "
                f"(num_regions {config.num_regions})"
            )
        widths = layer_widths(INPUT_DIM, outputs, config.hidden_width, config.num_hidden_layers)
        want = list(itertools.pairwise(widths))
        got = [weight.shape for weight in self.initial_weights]
        if got != want:
            raise ConfigError(
                f"instance.initial_weights: shapes {got}, the config's surrogate (hidden_width "
                f"{config.hidden_width}, num_hidden_layers {config.num_hidden_layers}, grid_size "
                f"{config.grid_size}) needs {want}"
            )


class DataGenGenerator(EpisodeGenerator[DataGenConfig, DataGenInstance]):
    """Draws OnlineDataGen episode instances (see the module docstring for what they hold).

    ``DataGenGenerator.generate(config, seed)`` is the instance
    ``OnlineDataGenEnv.reset(seed=seed)`` starts from. Of the streams, only ``surrogate`` is the
    generator's; the simulator draws the others as the episode goes.
    """

    streams = ("params", "acquisition", "buffer", "surrogate")
    instance_class = DataGenInstance

    @classmethod
    def from_streams(
        cls, config: DataGenConfig, streams: Mapping[str, np.random.Generator]
    ) -> DataGenInstance:
        widths = layer_widths(
            INPUT_DIM, config.grid_size**2, config.hidden_width, config.num_hidden_layers
        )
        weights = initial_weights(widths, streams["surrogate"])
        return DataGenInstance(validation_set(config), tuple(weights))
