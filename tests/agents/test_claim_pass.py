"""The SoCDAG encoder's claim pass is ETF's claiming rule, checked against a direct loop."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from schedgym.agents.soc import NOT_READY_SCORE, claim_pass, claimed_pes


def _reference(scores: np.ndarray, busy: np.ndarray) -> dict[int, int]:
    """ETF's loop: pairs best first; a busy PE blocks its task and is claimed; stop at the first
    free pair on an idle PE."""
    pairs = sorted(
        (-scores[t, p], t, p)
        for t in range(scores.shape[0])
        for p in range(scores.shape[1])
        if scores[t, p] > NOT_READY_SCORE / 2
    )
    blocker: dict[int, int] = {}
    for _, task, pe in pairs:
        if task in blocker or pe in blocker.values():
            continue
        if not busy[pe]:
            break
        blocker[task] = pe
    return blocker


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 5),
    st.integers(0, 2**31 - 1),
)
def test_claim_pass_matches_the_loop(tasks, pes, seed):
    rng = np.random.default_rng(seed)
    batch = 3
    # Distinct scores (ties are broken by index in both, but distinct keeps the check simple).
    scores = rng.permutation(batch * tasks * pes).reshape(batch, tasks, pes).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = NOT_READY_SCORE
    busy = rng.random((batch, pes)) < 0.5
    blocker_tensor = claim_pass(torch.as_tensor(scores), torch.as_tensor(busy))
    claimed = claimed_pes(blocker_tensor, pes).numpy()
    blocker = blocker_tensor.numpy()
    for b in range(batch):
        want = _reference(scores[b], busy[b])
        got = {int(t): int(blocker[b, t]) for t in np.flatnonzero(blocker[b] >= 0)}
        assert got == want
        # Every PE that holds a task is claimed, whatever the order of the tasks (PE 0 included).
        assert set(np.flatnonzero(claimed[b])) == set(want.values())
