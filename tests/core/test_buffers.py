"""core.buffers.GrowingArray: append-only, amortised growth, views that later appends leave
alone, independent copies."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.core.buffers import GrowingArray


def test_growing_array_holds_exactly_what_was_appended():
    values = np.random.default_rng(0).standard_normal(1000)
    buffer = GrowingArray(np.float64, initial_rows=1)
    buffer.append(values[0])
    for start in range(1, 1000, 37):
        buffer.extend(values[start : start + 37])
    assert len(buffer) == 1000
    np.testing.assert_array_equal(buffer.view(), values)
    assert buffer.nbytes <= 2 * 8 * 1000  # doubling: at most twice the values


def test_views_are_read_only_and_unaffected_by_later_appends():
    buffer = GrowingArray(np.int64, width=3, initial_rows=2)
    buffer.append((1, 2, 3))
    early = buffer.view()
    for k in range(10):
        buffer.append((k, k, k))
    assert early.shape == (1, 3) and early.tolist() == [[1, 2, 3]]
    with pytest.raises(ValueError):
        early[0, 0] = 5
    assert buffer.view().shape == (11, 3)


def test_copy_is_independent_and_the_caller_array_is_not_kept():
    source = np.arange(5.0)
    buffer = GrowingArray()
    buffer.extend(source)
    source[:] = -1.0  # values were copied in
    clone = buffer.copy()
    clone.append(9.0)
    assert buffer.view().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert clone.view().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 9.0]
    assert len(GrowingArray().copy()) == 0
    with pytest.raises(ValueError, match="initial_rows"):
        GrowingArray(initial_rows=0)
