"""Every shipped checkpoint loads, acts within the mask, and reproduces its recorded check."""

from __future__ import annotations

import json

import pytest

import schedgym  # noqa: F401
from schedgym.agents.registry import CHECKPOINT_DIR
from schedgym.core.policy import policy_names
from schedgym.training.package import pinned_check_value

SHIPPED = sorted(CHECKPOINT_DIR.glob("*.zip"))
REQUIRED = ("command", "seed", "num_timesteps", "wall_time_s", "machine", "libraries", "validation")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoint_reproduces_its_check(path):
    meta = json.loads(path.with_suffix(".json").read_text())
    assert path.stat().st_size < 5 * 1024 * 1024
    for key in REQUIRED:
        assert key in meta, key
    assert "gnn" in policy_names(meta["env_id"])
    check = meta["reproducibility_check"]
    # Run as it was recorded: in a subprocess with numpy, OpenBLAS and torch held to their AVX2
    # kernels (schedgym.training.package), where invalid_action="raise" (the default) makes an
    # action outside the mask fail the run. Per-CPU kernels round differently in the last bit and
    # OnlineDataGen's BLAS-trained surrogate amplifies that (0.8% between two AVX-512 CPUs with
    # different OpenBLAS kernels); pinned, every x86-64 CPU with AVX2 computes the same episode.
    # 1e-5 leaves room for libm differences and is far below a change of path.
    value = pinned_check_value(path, meta["env_id"], check["scenario"], check["seed"])
    assert value == pytest.approx(check["value"], rel=1e-5)
