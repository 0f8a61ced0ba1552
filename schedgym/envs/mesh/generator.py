"""MeshAssign episode generator: (config, seed) -> the episode's global batches of sequences.

Each global batch is drawn from the config's length mixture until the next sequence would
overflow ``global_batch_tokens`` (:meth:`~schedgym.workloads.lengths.LengthMixture.sample_batch`),
batch after batch from the one ``lengths`` stream. The draws depend on nothing a policy does, so
batch ``i`` is the same for every policy.

Two forms of the same numbers:

- :class:`MeshInstance` (what :meth:`MeshGenerator.generate` returns, and what
  ``reset(options={"instance": ...})`` takes): every batch, materialised as flat arrays.
- :class:`MeshBatchStream` (what ``reset`` uses when no instance is given): draws batch ``i``
  when the simulator starts it. A long episode (up to 100,000 batches of up to 10^10 tokens) then
  holds one batch at a time, as before generators existed; the draws are identical because the
  stream is consumed in the same order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError
from schedgym.core.generator import EpisodeGenerator, FrozenInstance, frozen_array
from schedgym.envs.mesh.config import MeshConfig
from schedgym.workloads.lengths import LengthMixture


@dataclass(frozen=True, eq=False)
class MeshInstance(FrozenInstance):
    """Every global batch of an episode, sequences in draw order. Immutable, arrays read-only.

    Attributes:
        lengths: ``(total sequences,)`` int64 sequence lengths in tokens (>= 1), batch after batch.
        batch_offsets: ``(num_batches + 1,)`` int64: batch ``i`` is
            ``lengths[batch_offsets[i]:batch_offsets[i + 1]]`` (non-empty).
    """

    lengths: np.ndarray
    batch_offsets: np.ndarray

    def __post_init__(self) -> None:
        lengths = frozen_array(self.lengths, np.int64, "instance.lengths", (None,))
        offsets = frozen_array(self.batch_offsets, np.int64, "instance.batch_offsets", (None,))
        if offsets.size < 2 or offsets[0] != 0 or offsets[-1] != lengths.size:
            raise ConfigError(
                f"instance.batch_offsets: must run from 0 to the number of lengths "
                f"({lengths.size}) with at least one batch"
            )
        if (np.diff(offsets) < 1).any():
            raise ConfigError("instance.batch_offsets: every batch needs at least one sequence")
        if lengths.min() < 1:
            raise ConfigError("instance.lengths: every sequence needs at least 1 token")
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "batch_offsets", offsets)

    @classmethod
    def from_batches(cls, batches: list[np.ndarray]) -> MeshInstance:
        """An instance of the given batches (each a 1-D array of sequence lengths)."""
        sizes = [np.asarray(batch).size for batch in batches]
        lengths = np.concatenate(batches) if batches else np.zeros(0, np.int64)
        return cls(lengths, np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))))

    @property
    def num_batches(self) -> int:
        return int(self.batch_offsets.size - 1)

    def batch(self, index: int) -> np.ndarray:
        """``(n,)`` sequence lengths of batch ``index`` in draw order (a read-only view)."""
        return self.lengths[self.batch_offsets[index] : self.batch_offsets[index + 1]]


class MeshBatchStream:
    """The generator's batches drawn one at a time, in order, as the simulator starts them.

    Deep copies (a simulator's fork) copy the stream's position and generator state, so a copy
    draws the same later batches; the length mixture is shared.
    """

    def __init__(self, config: MeshConfig, rng: np.random.Generator) -> None:
        self.num_batches = config.num_batches
        self._budget_tokens = config.global_batch_tokens
        self._mixture = LengthMixture(
            config.length_mixture, config.min_seq_tokens, config.longest_sequence_tokens
        )
        self._rng = rng
        self._next = 0

    def batch(self, index: int) -> np.ndarray:
        """``(n,)`` sequence lengths of batch ``index``; batches are drawn in order, each once."""
        if index != self._next:
            raise ValueError(f"batch {index}: the stream draws batch {self._next} next")
        self._next += 1
        return self._mixture.sample_batch(self._rng, self._budget_tokens)

    def __deepcopy__(self, memo: dict[int, Any]) -> MeshBatchStream:
        out = copy.copy(self)
        out._rng = copy.deepcopy(self._rng, memo)
        return out


class MeshGenerator(EpisodeGenerator[MeshConfig, MeshInstance]):
    """Draws MeshAssign episodes: ``MeshGenerator.generate(config, seed)`` holds the batches
    ``MeshAssignEnv.reset(seed=seed)`` places."""

    streams = ("lengths",)
    instance_class = MeshInstance

    @classmethod
    def from_streams(
        cls, config: MeshConfig, streams: Mapping[str, np.random.Generator]
    ) -> MeshInstance:
        stream = cls.batch_stream(config, streams)
        return MeshInstance.from_batches([stream.batch(i) for i in range(config.num_batches)])

    @classmethod
    def batch_stream(
        cls, config: MeshConfig, streams: Mapping[str, np.random.Generator]
    ) -> MeshBatchStream:
        """The same batches, drawn lazily (what ``reset`` plays when no instance is given)."""
        return MeshBatchStream(config, streams["lengths"])
