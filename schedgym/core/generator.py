"""Episode generators: (config, seed) -> a frozen episode instance (Jumanji's ``Generator``).

An environment's workload (which jobs or requests arrive when, how big they are, how long their
work really takes) is drawn by its generator into an immutable *instance* that the simulator
consumes; the simulator draws nothing of the workload itself. Hence:

- common random numbers: two policies run on the same seed face the same instance, whatever they
  decide (the instance is fixed before the first decision);
- recorded instances: ``env.reset(options={"instance": instance})`` replays an instance made by
  :meth:`EpisodeGenerator.generate` (or built by hand, or read from a recording) instead of drawing
  one from the seed;
- redaction: what a policy may not know at decision time is a set of fields of the instance.

The streams an environment spawns from its ``np_random`` at ``reset`` (see
:func:`~schedgym.core.rng.spawn_streams`) are spawned in the same order whether or not an instance
is given, so the seed's other uses (e.g. a simulator's policy-dependent draws) do not shift, and
``generate(config, seed)`` handed back to ``reset(seed=seed, ...)`` reproduces the seeded episode
bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from schedgym.core.errors import ConfigError
from schedgym.core.rng import generator_from_seed, spawn_streams

ConfigT = TypeVar("ConfigT")
InstanceT = TypeVar("InstanceT")

# The reset option that carries a recorded instance.
INSTANCE_OPTION = "instance"


class EpisodeGenerator(ABC, Generic[ConfigT, InstanceT]):
    """Draws an environment's episode instances. Stateless: every method is a classmethod.

    Class attributes to set:
        streams: the names of the random streams the environment spawns from its ``np_random``
            at ``reset``, in spawn order (the generator uses some of them, the simulator may use
            the others for policy-dependent draws).
        instance_class: the frozen instance dataclass.
    """

    streams: ClassVar[tuple[str, ...]]
    instance_class: ClassVar[type]

    @classmethod
    def generate(cls, config: ConfigT, seed: int | np.random.Generator | None) -> InstanceT:
        """The instance ``env.reset(seed=seed)`` draws for ``config``.

        Args:
            config: the environment's validated config.
            seed: an integer seed (as given to ``reset``), a parent generator (playing the role of
                the env's ``np_random``; it is advanced), or None for fresh OS entropy.
        """
        parent = seed if isinstance(seed, np.random.Generator) else generator_from_seed(seed)
        return cls.from_streams(config, spawn_streams(parent, cls.streams))

    @classmethod
    @abstractmethod
    def from_streams(cls, config: ConfigT, streams: Mapping[str, np.random.Generator]) -> InstanceT:
        """The instance drawn from already spawned streams (what ``reset`` does)."""


def recorded_instance(options: Mapping[str, Any] | None, instance_class: type) -> Any:
    """The instance passed to ``reset`` as ``options["instance"]``, or None.

    Raises:
        ConfigError: the option holds something other than an ``instance_class``.
    """
    if not options or options.get(INSTANCE_OPTION) is None:
        return None
    instance = options[INSTANCE_OPTION]
    if not isinstance(instance, instance_class):
        raise ConfigError(
            f"options['instance']: must be a {instance_class.__name__} (from "
            f"the environment's generator), got {type(instance).__name__}"
        )
    return instance


def frozen_array(values: Any, dtype: Any, name: str, shape: Sequence[int | None]) -> np.ndarray:
    """``values`` as a read-only array of ``dtype`` with the given shape (None: any length).

    Instances are shared, never copied, by forks and deep copies, so their arrays are made
    read-only: a writeable array is copied first (so its owner cannot change the instance
    either); an array that is already read-only, of the right dtype, is kept as it is (e.g. a
    zero-stride ``np.broadcast_to`` of ones that costs no memory).

    Raises:
        ConfigError: the shape does not match, or the values are not finite.
    """
    if isinstance(values, np.ndarray) and not values.flags.writeable and values.dtype == dtype:
        array = values
    else:
        array = np.array(values, dtype=dtype, copy=True)
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        raise ConfigError(f"{name}: must have shape {tuple(shape)}, got {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ConfigError(f"{name}: must be finite")
    if array.flags.writeable:
        array.flags.writeable = False
    return array


class FrozenInstance:
    """Mix-in for instance dataclasses: deep copies share the instance (it is immutable), so a
    simulator's ``fork()`` or a look-ahead snapshot costs nothing for the episode's workload."""

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self
