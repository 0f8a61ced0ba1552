"""Per-episode data for each environment's characteristic picture, read from public state.

Called once at the end of an episode; the result is stored in the episode's row (small: at most
a few dozen numbers per curve) so the report can draw latency CDFs and learning curves without
re-running anything. Reads only public attributes of the simulators and requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from schedgym.core.policy import env_family

# Quantile levels (%) stored for a latency distribution: coarse in the body, fine in the tail
# (p90 to p99.9), where serving SLOs live.
CDF_LEVELS_PCT = (
    *(5.0 * i for i in range(19)),
    *(float(q) for q in range(91, 100)),
    99.5,
    99.9,
    100.0,
)
MAX_CURVE_POINTS = 40


def _quantiles(samples: Sequence[float] | np.ndarray, kind: str) -> dict[str, Any]:
    values = np.asarray(samples, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"kind": kind, "levels_pct": list(CDF_LEVELS_PCT), "values": None}
    return {
        "kind": kind,
        "levels_pct": list(CDF_LEVELS_PCT),
        "values": [float(v) for v in np.percentile(values, CDF_LEVELS_PCT)],
    }


def _llmcluster(sim: Any) -> dict[str, Any]:
    completed = sim.cluster.completed
    ttft = completed.first_token_s - completed.arrival_s
    return {"latency_cdf": _quantiles(ttft, "ttft_s")}


def _prefillchunk(sim: Any) -> dict[str, Any]:
    return {"latency_cdf": _quantiles(sim.tbt_samples_s(), "tbt_s")}


def _prefixbatch(sim: Any) -> dict[str, Any]:
    done = [r.finish_s - r.arrival_s for r in sim.finished]
    return {"latency_cdf": _quantiles(done, "request_completion_s")}


def _datagen(sim: Any) -> dict[str, Any]:
    history = sim.history
    picks = np.unique(np.linspace(0, len(history) - 1, min(len(history), MAX_CURVE_POINTS)))
    points = [history[int(i)] for i in picks.astype(int)]
    return {
        "learning_curve": {
            "training_steps": [float(p["training_steps"]) for p in points],
            "val_mse": [float(p["val_mse"]) for p in points],
        }
    }


CURVES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "LLMCluster": _llmcluster,
    "PrefillChunk": _prefillchunk,
    "PrefixBatch": _prefixbatch,
    "OnlineDataGen": _datagen,
}


def episode_curves(env_id: str, env: Any) -> dict[str, Any]:
    """The characteristic-picture data of the episode ``env`` just finished ({} if none)."""
    extract = CURVES.get(env_family(env_id))
    return extract(env.unwrapped.simulator) if extract is not None else {}
