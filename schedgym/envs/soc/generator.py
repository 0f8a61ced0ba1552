"""SoCDAG episode generator: (config, seed) -> the jobs of an episode, as a frozen instance.

An instance fixes everything random about an episode before the first decision: each job's
arrival time and DAG template, the per-episode systematic factor of each template's tasks per PE
type (a stale profile), and each task instance's random execution-time factor. The simulator
reads it job by job; it draws nothing itself.

The draws reproduce, bit for bit, the order in which the simulator used to draw them lazily:
each stream serves one purpose, and what it serves is fixed by the job order alone (jobs are
admitted in arrival order), so drawing it up front yields the same numbers:

- ``arrivals``: the gaps between consecutive jobs (exponential, mean ``1 / job_rate_per_ms``);
  job 0 arrives at 0.
- ``jobs``: each job's template (a ``job_mix`` choice, or a new random DAG), in job order.
- ``noise``: each job's per-task factors, in job order (``noise_std`` = 0 draws nothing).
- ``profile``: each template's factors per (task kind, PE type), in the order the templates
  first occur in the job sequence (``profile_bias_std`` = 0 draws nothing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from schedgym.core.errors import ConfigError
from schedgym.core.generator import EpisodeGenerator, FrozenInstance, frozen_array
from schedgym.envs.soc.config import SoCConfig
from schedgym.envs.soc.dag import (
    DagTemplate,
    Platform,
    ds3_applications,
    ds3_platform,
    random_dag,
    topcuoglu_dag,
    topcuoglu_platform,
)


def platform_for(config: SoCConfig) -> Platform:
    return topcuoglu_platform() if config.platform == "topcuoglu" else ds3_platform()


def fixed_templates(config: SoCConfig) -> tuple[dict[str, DagTemplate], dict[str, float]]:
    """The workload's fixed DAG templates and their mix (empty for random DAGs)."""
    if config.workload == "topcuoglu":
        return {"topcuoglu": topcuoglu_dag()}, {"topcuoglu": 1.0}
    if config.workload == "ds3":
        apps = ds3_applications()
        return {k: apps[k] for k in config.job_mix}, dict(config.job_mix)
    return {}, {}


def lognormal_factors(
    rng: np.random.Generator, rel_std: float, size: tuple[int, ...]
) -> np.ndarray:
    """Mean-one lognormal factors with the given relative standard deviation (ones, drawing
    nothing, when it is 0)."""
    if rel_std == 0.0:
        return np.ones(size)
    sigma = math.sqrt(math.log1p(rel_std * rel_std))
    return np.exp(sigma * rng.standard_normal(size) - 0.5 * sigma * sigma)


def _ones(size: int) -> np.ndarray:
    """``(size,)`` read-only ones that take no memory (a zero-stride view)."""
    return np.broadcast_to(np.ones(1), (size,))


@dataclass(frozen=True, eq=False)
class SoCInstance(FrozenInstance):
    """The jobs of one SoCDAG episode, in arrival order. Immutable; arrays are read-only.

    A job's true execution time of task ``t`` on PE type ``k`` is
    ``template.exec_us[t, k] * template_bias[j][t, k] * noise[noise_offsets[i] + t]`` for job
    ``i`` with template ``j = job_template[i]``.

    Attributes:
        arrival_us: ``(num_jobs,)`` float64 arrival time of each job in microseconds,
            non-decreasing, >= 0.
        templates: the distinct DAG templates the jobs use (for random DAGs one per job).
        job_template: ``(num_jobs,)`` int64 index into ``templates`` of each job.
        template_bias: per template, ``(num_tasks, num_pe_types)`` float64 systematic factor of
            its tasks' mean execution time per PE type (the profile's error; 1 = exact).
        noise_offsets: ``(num_jobs + 1,)`` int64: job ``i``'s task factors are
            ``noise[noise_offsets[i]:noise_offsets[i + 1]]`` (one per task of its template).
        noise: ``(total tasks,)`` float64 random factor of each task instance.
    """

    arrival_us: np.ndarray
    templates: tuple[DagTemplate, ...]
    job_template: np.ndarray
    template_bias: tuple[np.ndarray, ...]
    noise_offsets: np.ndarray
    noise: np.ndarray
    # redacted()'s result, made once: look-ahead policies ask for it at every snapshot.
    _redacted: SoCInstance | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        num_jobs = len(self.arrival_us)
        arrival = frozen_array(self.arrival_us, np.float64, "instance.arrival_us", (None,))
        if num_jobs == 0:
            raise ConfigError("instance.arrival_us: must hold at least one job")
        if arrival[0] < 0.0 or (np.diff(arrival) < 0.0).any():
            raise ConfigError("instance.arrival_us: must be non-negative and non-decreasing")
        templates = tuple(self.templates)
        if not templates or not all(isinstance(t, DagTemplate) for t in templates):
            raise ConfigError("instance.templates: must be a non-empty tuple of DagTemplate")
        job_template = frozen_array(
            self.job_template, np.int64, "instance.job_template", (num_jobs,)
        )
        if job_template.min() < 0 or job_template.max() >= len(templates):
            raise ConfigError(
                f"instance.job_template: indices must be in [0, {len(templates)}) (the templates)"
            )
        if len(self.template_bias) != len(templates):
            raise ConfigError(
                f"instance.template_bias: must hold one array per template ({len(templates)}), "
                f"got {len(self.template_bias)}"
            )
        bias = tuple(
            frozen_array(b, np.float64, f"instance.template_bias[{j}]", t.exec_us.shape)
            for j, (t, b) in enumerate(zip(templates, self.template_bias, strict=True))
        )
        tasks = np.array([t.num_tasks for t in templates], np.int64)[job_template]
        offsets = np.concatenate(([0], np.cumsum(tasks)))
        given_offsets = frozen_array(
            self.noise_offsets, np.int64, "instance.noise_offsets", (num_jobs + 1,)
        )
        if not np.array_equal(given_offsets, offsets):
            raise ConfigError(
                "instance.noise_offsets: must be the running total of the jobs' task counts"
            )
        noise = frozen_array(self.noise, np.float64, "instance.noise", (int(offsets[-1]),))
        if (bias_low := min(float(b.min()) for b in bias)) <= 0.0 or (noise <= 0.0).any():
            raise ConfigError(
                f"instance.template_bias/noise: factors must be positive (got {bias_low:g})"
            )
        for name, value in (
            ("arrival_us", arrival),
            ("templates", templates),
            ("job_template", job_template),
            ("template_bias", bias),
            ("noise_offsets", given_offsets),
            ("noise", noise),
        ):
            object.__setattr__(self, name, value)

    @property
    def num_jobs(self) -> int:
        return int(self.arrival_us.size)

    @property
    def max_tasks_per_job(self) -> int:
        return max(self.templates[j].num_tasks for j in np.unique(self.job_template).tolist())

    def job_noise(self, job_id: int) -> np.ndarray:
        """``(num_tasks,)`` random factors of job ``job_id``'s tasks (a read-only view)."""
        return self.noise[self.noise_offsets[job_id] : self.noise_offsets[job_id + 1]]

    def redacted(self) -> SoCInstance:
        """The same jobs and arrivals with every execution-time factor 1: what a policy may
        assume about work that has not started (its nominal, profiled time)."""
        if self._redacted is None:
            redacted = replace(
                self,
                template_bias=tuple(
                    np.broadcast_to(np.ones(1), b.shape) for b in self.template_bias
                ),
                noise=_ones(self.noise.size),
            )
            object.__setattr__(redacted, "_redacted", redacted)
            object.__setattr__(self, "_redacted", redacted)
            return redacted
        return self._redacted

    def check_fits(self, config: SoCConfig, platform: Platform, tasks_per_job: int) -> None:
        """Raise ConfigError unless this instance can run under ``config`` on ``platform``."""
        if self.num_jobs != config.num_jobs:
            raise ConfigError(
                f"instance: holds {self.num_jobs} jobs, the config's num_jobs is {config.num_jobs}"
            )
        for template in self.templates:
            if template.exec_us.shape[1] != platform.num_pe_types:
                raise ConfigError(
                    f"instance.templates: {template.name} has times for "
                    f"{template.exec_us.shape[1]} PE types, the platform has "
                    f"{platform.num_pe_types}"
                )
        if self.max_tasks_per_job > tasks_per_job:
            raise ConfigError(
                f"instance.templates: a job has {self.max_tasks_per_job} tasks, the config's "
                f"workload pads to {tasks_per_job}"
            )


class SoCGenerator(EpisodeGenerator[SoCConfig, SoCInstance]):
    """Draws SoCDAG episodes (see the module docstring for the draw order).

    ``SoCGenerator.generate(config, seed)`` is the instance ``SoCDAGEnv.reset(seed=seed)`` plays.
    """

    streams = ("arrivals", "jobs", "noise", "profile")
    instance_class = SoCInstance

    @classmethod
    def from_streams(
        cls, config: SoCConfig, streams: Mapping[str, np.random.Generator]
    ) -> SoCInstance:
        platform = platform_for(config)
        num_jobs = config.num_jobs
        gaps_us = streams["arrivals"].exponential(1000.0 / config.job_rate_per_ms, num_jobs - 1)
        # cumsum adds left to right, as the simulator did arrival by arrival.
        arrival_us = np.concatenate(([0.0], np.cumsum(gaps_us)))
        templates, job_template = cls._draw_templates(config, platform, streams["jobs"])
        tasks = np.array([t.num_tasks for t in templates], np.int64)[job_template]
        offsets = np.concatenate(([0], np.cumsum(tasks)))
        total_tasks = int(offsets[-1])
        if config.noise_std == 0.0:
            noise = _ones(total_tasks)
        else:
            noise = lognormal_factors(streams["noise"], config.noise_std, (total_tasks,))
        bias: list[np.ndarray] = [np.broadcast_to(np.ones(1), t.exec_us.shape) for t in templates]
        if config.profile_bias_std != 0.0:
            _, first_use = np.unique(job_template, return_index=True)
            for index in job_template[np.sort(first_use)].tolist():
                template = templates[index]
                factors = lognormal_factors(
                    streams["profile"],
                    config.profile_bias_std,
                    (len(template.kind_names), platform.num_pe_types),
                )
                bias[index] = factors[template.kind]
        return SoCInstance(arrival_us, templates, job_template, tuple(bias), offsets, noise)

    @staticmethod
    def _draw_templates(
        config: SoCConfig, platform: Platform, rng: np.random.Generator
    ) -> tuple[tuple[DagTemplate, ...], np.ndarray]:
        if config.workload == "random_dag":
            dags = tuple(
                random_dag(
                    rng,
                    platform,
                    config.dag_num_tasks,
                    config.dag_shape_alpha,
                    config.dag_out_degree,
                    config.dag_ccr,
                    config.dag_heterogeneity_beta,
                    config.dag_mean_exec_us,
                    name=f"random{job}",
                )
                for job in range(config.num_jobs)
            )
            return dags, np.arange(config.num_jobs, dtype=np.int64)
        named, mix = fixed_templates(config)
        names = list(mix)
        if len(names) == 1:
            return (named[names[0]],), np.zeros(config.num_jobs, np.int64)
        probabilities = np.array([mix[k] for k in names])
        choice = rng.choice(len(names), size=config.num_jobs, p=probabilities)
        return tuple(named[k] for k in names), np.asarray(choice, np.int64)
