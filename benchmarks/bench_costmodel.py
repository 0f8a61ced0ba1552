"""Predictions per second of the inference cost model on one core.

Run: ``python benchmarks/bench_costmodel.py`` (target: at least 200,000 predictions/s).

Batches are drawn once (numpy Generator, fixed seed) to look like a serving engine's iterations:
a decode batch of 1-256 sequences with KV lengths up to 4096, and in half of them one or two
prefill chunks of up to 2048 tokens. The timed loop calls the summary fast path, as the engine will.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from schedgym.costmodels import InferenceCostModel


def make_batches(count: int, seed: int = 0) -> list[tuple[int, float, list[tuple[int, int]]]]:
    """Typical iteration summaries: (decodes, sum of their KV lengths, prefill chunks)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        decodes = int(rng.integers(1, 257))
        kv_sum = float(rng.integers(16, 4096, size=decodes).sum())
        chunks: list[tuple[int, int]] = []
        if rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 3))):
                chunks.append((int(rng.integers(16, 2049)), int(rng.integers(0, 4096))))
        batches.append((decodes, kv_sum, chunks))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--model", default="Llama-2-7B")
    parser.add_argument("--gpu", default="A100")
    parser.add_argument("--tp", type=int, default=1)
    args = parser.parse_args()
    build_start = time.perf_counter()
    model = InferenceCostModel(args.model, args.gpu, args.tp)
    build_s = time.perf_counter() - build_start
    batches = make_batches(10_000)
    predict = model.time_from_summary_s
    repeats = max(1, args.calls // len(batches))
    start = time.perf_counter()
    total = 0.0
    for _ in range(repeats):
        for decodes, kv_sum, chunks in batches:
            total += predict(decodes, kv_sum, chunks)
    elapsed = time.perf_counter() - start
    calls = repeats * len(batches)
    print(f"model build (tables): {build_s * 1e3:.1f} ms")
    print(f"{calls} predictions in {elapsed:.3f} s: {calls / elapsed:,.0f} predictions/s")
    print(f"mean predicted iteration: {total / calls * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
