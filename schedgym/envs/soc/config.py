"""Configuration of SoCDAG-v0: every knob, validated, with named presets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schedgym.core.config import (
    require_choice,
    require_number,
    require_probabilities,
)
from schedgym.core.errors import ConfigError
from schedgym.core.spaces import INVALID_ACTION_MODES
from schedgym.envs.soc.dag import DS3_APPLICATIONS

PLATFORMS = ("ds3", "topcuoglu")
WORKLOADS = ("ds3", "random_dag", "topcuoglu")


def _uniform_mix() -> dict[str, float]:
    return {name: 1.0 / len(DS3_APPLICATIONS) for name in DS3_APPLICATIONS}


@dataclass(frozen=True)
class SoCConfig:
    """Every knob of SoCDAG-v0. Times in microseconds unless the name says otherwise.

    Attributes:
        platform: ``ds3`` (the DS3 reference SoC, 16 PEs) or ``topcuoglu`` (3 processors).
        workload: ``ds3`` (the six DS3 applications, drawn by ``job_mix``), ``random_dag``
            (Topcuoglu's random DAG generator, a new DAG per job) or ``topcuoglu`` (the 10-task
            example of Topcuoglu et al. 2002).
        job_rate_per_ms: Poisson arrival rate in jobs per millisecond; the first job arrives at 0.
        job_mix: application name -> weight (normalised), for ``workload="ds3"``.
        num_jobs: jobs per episode.
        horizon_us: optional simulated-time limit; at the limit the episode is truncated and the
            jobs still in the system are reported in flight.
        warmup_jobs: the first jobs to arrive, excluded from latency metrics.
        noise_std: relative standard deviation of each task instance's actual execution time
            around its (biased) mean; lognormal, mean-preserving.
        profile_bias_std: relative standard deviation of the systematic error of the nominal
            profile: each (task kind, PE type) pair's true mean is its nominal time times a
            lognormal factor with mean 1 drawn once per episode (a stale profile).
        max_active_jobs: jobs admitted to the SoC at once (DS3's ``max_jobs_in_parallel``); later
            arrivals wait in a FIFO backlog (their latency counts from arrival). Also fixes the
            observation's padding: nodes = ``max_active_jobs * max tasks per job``.
        allow_wait: whether the agent may decline to schedule and let time advance to the next
            event (needed by plan-following policies such as HEFT).
        dag_*: random DAG generator knobs (Topcuoglu et al. 2002, Section 6.1): tasks per DAG,
            shape alpha, maximum out-degree, communication-to-computation ratio, heterogeneity
            beta, mean execution time in microseconds.
        reward_scale_us: the reward is minus (jobs in system x elapsed us) / this scale; with the
            default 1000 the return is minus the total job latency in milliseconds.
        time_scale_us: divisor that brings times in observations to order one.
        invalid_action: ``raise`` (an action outside ``action_masks()`` raises
            InvalidActionError) or ``substitute`` (it is replaced by waiting if that is valid,
            else by the lowest valid action, and ``info["action_substituted"]`` is True).
    """

    platform: str = "ds3"
    workload: str = "ds3"
    job_rate_per_ms: float = 4.0
    job_mix: Mapping[str, float] = field(default_factory=_uniform_mix)
    num_jobs: int = 200
    horizon_us: float | None = None
    warmup_jobs: int = 0
    noise_std: float = 0.0
    profile_bias_std: float = 0.0
    max_active_jobs: int = 12
    allow_wait: bool = True
    dag_num_tasks: int = 20
    dag_shape_alpha: float = 1.0
    dag_out_degree: int = 3
    dag_ccr: float = 1.0
    dag_heterogeneity_beta: float = 0.5
    dag_mean_exec_us: float = 50.0
    reward_scale_us: float = 1000.0
    time_scale_us: float = 100.0
    invalid_action: str = "raise"

    def __post_init__(self) -> None:
        require_choice("platform", self.platform, PLATFORMS)
        require_choice("workload", self.workload, WORKLOADS)
        if self.workload == "topcuoglu" and self.platform != "topcuoglu":
            raise ConfigError("workload: 'topcuoglu' needs platform='topcuoglu'")
        if self.workload == "ds3" and self.platform != "ds3":
            raise ConfigError("workload: 'ds3' applications need platform='ds3'")
        require_number("job_rate_per_ms", self.job_rate_per_ms, 0.0, 1000.0, low_inclusive=False)
        object.__setattr__(
            self, "job_mix", require_probabilities("job_mix", self.job_mix, DS3_APPLICATIONS)
        )
        require_number("num_jobs", self.num_jobs, 1, 10_000_000, integer=True)
        if self.horizon_us is not None:
            require_number("horizon_us", self.horizon_us, 0.0, low_inclusive=False)
        require_number("warmup_jobs", self.warmup_jobs, 0, self.num_jobs - 1, integer=True)
        require_number("noise_std", self.noise_std, 0.0, 2.0)
        require_number("profile_bias_std", self.profile_bias_std, 0.0, 2.0)
        require_number("max_active_jobs", self.max_active_jobs, 1, 256, integer=True)
        if not isinstance(self.allow_wait, bool):
            raise ConfigError(f"allow_wait: must be true or false, got {self.allow_wait!r}")
        require_number("dag_num_tasks", self.dag_num_tasks, 2, 500, integer=True)
        require_number("dag_shape_alpha", self.dag_shape_alpha, 0.1, 10.0)
        require_number("dag_out_degree", self.dag_out_degree, 1, 100, integer=True)
        require_number("dag_ccr", self.dag_ccr, 0.0, 100.0)
        require_number(
            "dag_heterogeneity_beta", self.dag_heterogeneity_beta, 0.0, 2.0, high_inclusive=False
        )
        require_number("dag_mean_exec_us", self.dag_mean_exec_us, 0.0, 1e9, low_inclusive=False)
        require_number("reward_scale_us", self.reward_scale_us, 0.0, low_inclusive=False)
        require_number("time_scale_us", self.time_scale_us, 0.0, low_inclusive=False)
        require_choice("invalid_action", self.invalid_action, INVALID_ACTION_MODES)


# Load levels relative to the DS3 SoC's capacity under the uniform job mix: HEFT's and ETF's
# throughput saturates at 33.4 jobs/ms (1,500 jobs offered at 40 and 60 jobs/ms; mean latency grows
# sharply from 28 on), so light/medium/heavy are about 25%, 60% and 90% of it. (Before SC-R's
# decoder profile was corrected to the one DS3 runs, capacity was 16 jobs/ms.)
PRESETS: dict[str, dict[str, Any]] = {
    "light": {"job_rate_per_ms": 8.0, "num_jobs": 200, "warmup_jobs": 20},
    "medium": {"job_rate_per_ms": 20.0, "num_jobs": 200, "warmup_jobs": 20},
    "heavy": {"job_rate_per_ms": 30.0, "num_jobs": 200, "warmup_jobs": 20},
    "noisy": {
        "job_rate_per_ms": 20.0,
        "num_jobs": 200,
        "warmup_jobs": 20,
        "noise_std": 0.3,
        "profile_bias_std": 0.5,
    },
    "random-dag": {
        "workload": "random_dag",
        "job_rate_per_ms": 2.0,
        "num_jobs": 100,
        "warmup_jobs": 10,
        "max_active_jobs": 6,
    },
    "topcuoglu": {
        "platform": "topcuoglu",
        "workload": "topcuoglu",
        "num_jobs": 1,
        "max_active_jobs": 1,
    },
    # A small, fast instance for smoke tests and the all-envs test suite.
    "tiny": {"job_rate_per_ms": 4.0, "num_jobs": 12, "max_active_jobs": 4},
}
