"""PrefixBatch episode generator: (config, seed) -> the batch to serve (a frozen
:class:`~schedgym.workloads.prefix_tree.PrefixBatch`).

The segment forest (shared-prefix levels, conversations, turns), each request's group and the
submission order come from the ``tree`` stream, the (user message, answer) length pairs from the
``lengths`` stream (ShareGPT-like pairs); all drawn before the first decision.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from schedgym.core.generator import EpisodeGenerator
from schedgym.envs.prefixbatch.config import PrefixBatchConfig
from schedgym.workloads.prefix_tree import PrefixBatch, generate_prefix_batch
from schedgym.workloads.request_lengths import ShareGPTLengths


class PrefixBatchGenerator(EpisodeGenerator[PrefixBatchConfig, PrefixBatch]):
    """Draws PrefixBatch episodes: ``PrefixBatchGenerator.generate(config, seed)`` is the batch
    ``PrefixBatchEnv.reset(seed=seed)`` serves."""

    streams = ("tree", "lengths")
    instance_class = PrefixBatch

    @classmethod
    def from_streams(
        cls, config: PrefixBatchConfig, streams: Mapping[str, np.random.Generator]
    ) -> PrefixBatch:
        pairs = ShareGPTLengths(config.max_total_tokens).pairs()
        return generate_prefix_batch(config.tree_spec(), pairs, streams["tree"], streams["lengths"])
