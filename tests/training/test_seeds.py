from schedgym.leaderboard.suites import SUITES
from schedgym.training.seeds import (
    VALIDATION_SEED_BASE,
    check_disjoint,
    training_seed,
    validation_seeds,
)


def test_validation_and_training_seeds_are_disjoint_from_every_test_seed():
    check_disjoint()
    test_seeds = {seed for suite in SUITES.values() for seed in suite.seeds}
    ours = set(validation_seeds(1000)) | {training_seed(s, w) for s in (0, 7) for w in range(64)}
    assert not ours & test_seeds
    assert min(ours) >= VALIDATION_SEED_BASE
    assert not set(validation_seeds(1000)) & {training_seed(99_999, w) for w in range(64)}
