"""LLMCluster episode generator: (config, seed) -> the episode's requests (a frozen
:class:`~schedgym.workloads.requests.RequestStream`).

Every request's arrival time, prompt and output length and priority class is drawn before the
first decision, each from its own stream (``arrivals``, ``lengths``, ``priorities``), or replayed
from a trace (then only the priority classes are drawn). The simulator consumes the stream; a
policy never sees a request before it arrives nor its output length.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from schedgym.core.generator import EpisodeGenerator
from schedgym.envs.llmcluster.config import LLMClusterConfig
from schedgym.workloads.request_lengths import FixedLengths, PowerLawLengths, ShareGPTLengths
from schedgym.workloads.requests import RequestStream, synthetic_stream, trace_stream
from schedgym.workloads.traces import SHIPPED_TRACES, load_trace_csv


def build_stream(
    config: LLMClusterConfig, streams: Mapping[str, np.random.Generator]
) -> RequestStream:
    """The episode's requests, drawn from the config's workload."""
    if config.arrival_process == "trace":
        if config.trace in SHIPPED_TRACES:
            trace = SHIPPED_TRACES[config.trace]()
        else:
            trace = load_trace_csv(config.trace)
        return trace_stream(
            trace,
            streams["priorities"],
            config.num_requests,
            config.duration_s,
            config.high_priority_share,
            config.trace_time_scale,
        )
    lengths: ShareGPTLengths | PowerLawLengths | FixedLengths
    if config.lengths == "sharegpt":
        lengths = ShareGPTLengths(config.max_total_tokens)
    elif config.lengths == "power-law":
        lengths = PowerLawLengths(
            config.power_law_prompt_mean_tokens,
            config.power_law_output_mean_tokens,
            max_tokens=config.power_law_max_tokens,
        )
    else:
        lengths = FixedLengths(config.fixed_prompt_tokens, config.fixed_output_tokens)
    return synthetic_stream(
        streams["arrivals"],
        streams["lengths"],
        streams["priorities"],
        lengths,
        config.request_rate_per_s,
        config.num_requests,
        config.duration_s,
        config.arrival_process,
        config.arrival_cv,
        config.high_priority_share,
    )


class LLMClusterGenerator(EpisodeGenerator[LLMClusterConfig, RequestStream]):
    """Draws LLMCluster episodes: ``LLMClusterGenerator.generate(config, seed)`` is the request
    stream ``LLMClusterEnv.reset(seed=seed)`` plays."""

    streams = ("arrivals", "lengths", "priorities")
    instance_class = RequestStream

    @classmethod
    def from_streams(
        cls, config: LLMClusterConfig, streams: Mapping[str, np.random.Generator]
    ) -> RequestStream:
        return build_stream(config, streams)
