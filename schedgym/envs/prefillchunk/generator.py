"""PrefillChunk episode generator: (config, seed) -> the replica's requests (a frozen
:class:`~schedgym.workloads.requests.RequestStream`, every request of normal priority).

Arrival times (Poisson or Gamma, ``request_rate_per_s``) come from the ``arrivals`` stream
and prompt/output lengths (ShareGPT-like or fixed) from the ``lengths`` stream, all drawn
before the first iteration: every batching policy serves the same requests for a seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from schedgym.core.generator import EpisodeGenerator
from schedgym.envs.prefillchunk.config import PrefillChunkConfig
from schedgym.workloads.arrivals import arrival_times_s
from schedgym.workloads.request_lengths import FixedLengths, ShareGPTLengths
from schedgym.workloads.requests import RequestStream


class PrefillChunkGenerator(EpisodeGenerator[PrefillChunkConfig, RequestStream]):
    """Draws PrefillChunk episodes: ``PrefillChunkGenerator.generate(config, seed)`` is the
    request stream ``PrefillChunkEnv.reset(seed=seed)`` serves."""

    streams = ("arrivals", "lengths")
    instance_class = RequestStream

    @classmethod
    def from_streams(
        cls, config: PrefillChunkConfig, streams: Mapping[str, np.random.Generator]
    ) -> RequestStream:
        n = config.num_requests
        arrival_s = arrival_times_s(
            streams["arrivals"],
            config.request_rate_per_s,
            n,
            process=config.arrival_process,
            cv=config.arrival_cv,
        )
        sampler: ShareGPTLengths | FixedLengths
        if config.lengths == "sharegpt":
            sampler = ShareGPTLengths(config.max_total_tokens)
        else:
            sampler = FixedLengths(config.prompt_tokens, config.output_tokens)
        prompts, outputs = sampler.sample(streams["lengths"], n)
        return RequestStream(arrival_s, prompts, outputs, np.zeros(n, np.int8))
