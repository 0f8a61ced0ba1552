"""Seeded random streams.

Each simulator draws from several independent streams (arrivals, sizes, noise, ...) so that changing
how many numbers one part consumes does not shift the others. Streams are spawned from one parent
``numpy.random.Generator`` (the env's ``np_random``) and are therefore fixed by the env's seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def spawn_streams(
    parent: np.random.Generator, names: Sequence[str]
) -> dict[str, np.random.Generator]:
    """Return one independent generator per name, derived deterministically from ``parent``.

    Args:
        parent: the generator that owns the episode's randomness (``env.np_random``).
        names: stream names; the order matters (it fixes which child gets which seed).

    Returns:
        ``{name: Generator}`` of PCG64 generators seeded from 128 bits drawn from ``parent``.
    """
    seeds = parent.integers(0, 2**63 - 1, size=(len(names), 2), dtype=np.int64)
    return {
        name: np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(a), int(b)])))
        for name, (a, b) in zip(names, seeds, strict=True)
    }


def generator_from_seed(seed: int | None) -> np.random.Generator:
    """A PCG64 generator for ``seed`` (``None`` draws fresh OS entropy)."""
    return np.random.default_rng(seed)
