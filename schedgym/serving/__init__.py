"""The continuous-batching LLM serving engine shared by LLMCluster, PrefillChunk and PrefixBatch.

- :mod:`~schedgym.serving.request`: a request's state and token arithmetic.
- :mod:`~schedgym.serving.kv_cache`: paged KV-cache accounting and the shared-prefix cache.
- :mod:`~schedgym.serving.schedulers`: per-iteration batch composition (vLLM, Orca,
  FasterTransformer, Sarathi-Serve).
- :mod:`~schedgym.serving.engine`: one instance, event-driven, with fast-forwarded decodes.
- :mod:`~schedgym.serving.cluster`: instances on one clock, and Llumnix live migration.
- :mod:`~schedgym.serving.metrics`: TTFT, TBT and end-to-end latency summaries.
"""
