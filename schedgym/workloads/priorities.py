"""Priority classes: which requests are latency-critical.

Llumnix (Sun et al., OSDI 2024, Section 4.4) serves two classes, high and normal priority; a
configurable share of the requests is high priority. Class ``1`` is high, ``0`` normal.
"""

from __future__ import annotations

import numpy as np

from schedgym.core.config import require_number

NORMAL_PRIORITY = 0
HIGH_PRIORITY = 1


def sample_priorities(
    rng: np.random.Generator, num_requests: int, high_priority_share: float
) -> np.ndarray:
    """``(num_requests,)`` int8 classes, each request high priority with the given probability.

    Raises:
        ConfigError: ``high_priority_share`` outside [0, 1].
    """
    require_number("high_priority_share", high_priority_share, 0.0, 1.0)
    require_number("num_requests", num_requests, 0, integer=True)
    if high_priority_share == 0.0:
        return np.zeros(num_requests, np.int8)
    return (rng.random(num_requests) < high_priority_share).astype(np.int8)
