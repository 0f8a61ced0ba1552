"""Seed ranges of training and validation, disjoint by construction from the leaderboard's.

The leaderboard's test suites use small seeds (see :mod:`schedgym.leaderboard.suites`); training
episodes start from ``TRAINING_SEED_BASE`` and validation uses ``VALIDATION_SEED_BASE + i``, both
far above any suite seed, and :func:`check_disjoint` verifies it against every suite.
"""

from __future__ import annotations

from schedgym.core.errors import ConfigError
from schedgym.leaderboard.suites import VALIDATION_SEED_RANGE

# The leaderboard owns the split: test seeds below, validation seeds in its validation range,
# and training seeds above both.
VALIDATION_SEED_BASE = VALIDATION_SEED_RANGE.start
MAX_VALIDATION_SEEDS = 1_000
TRAINING_SEED_BASE = VALIDATION_SEED_RANGE.stop
SEEDS_PER_RUN = 10_000  # each run seed gets its own block of worker seeds


def validation_seeds(count: int) -> list[int]:
    """The first ``count`` validation seeds."""
    if not 1 <= count <= MAX_VALIDATION_SEEDS:
        raise ConfigError(f"eval_episodes: must be in [1, {MAX_VALIDATION_SEEDS}], got {count}")
    return [VALIDATION_SEED_BASE + i for i in range(count)]


def training_seed(run_seed: int, worker: int) -> int:
    """The first episode seed of worker ``worker`` in the run seeded ``run_seed``."""
    if not 0 <= run_seed < 100_000:
        raise ConfigError(f"seed: must be in [0, 100000), got {run_seed}")
    if not 0 <= worker < SEEDS_PER_RUN:
        raise ConfigError(f"n_envs: must be in [1, {SEEDS_PER_RUN}], got {worker + 1}")
    return TRAINING_SEED_BASE + run_seed * SEEDS_PER_RUN + worker


def check_disjoint() -> None:
    """Raise unless no leaderboard suite seed falls in the training or validation ranges."""
    from schedgym.leaderboard.suites import SUITES

    for suite in SUITES.values():
        for seed in suite.seeds:
            if seed >= VALIDATION_SEED_BASE:
                raise ConfigError(
                    f"suite {suite.name!r}: test seed {seed} is inside the training/validation "
                    f"ranges (>= {VALIDATION_SEED_BASE})"
                )
