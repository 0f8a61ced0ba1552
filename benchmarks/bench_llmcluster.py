"""LLMCluster-v0 benchmarks: simulation speed on the Azure trace and Llumnix' effect at full scale.

Run: ``.venv/bin/python benchmarks/bench_llmcluster.py`` (every part) or ``--part speed`` /
``--part effect`` / ``--part effect-a10`` / ``--part bursty`` / ``--part priority-mix`` /
``--part capacity``.

- speed: one hour of the Azure conversation trace (19,366 requests) on 4 Llama-2-7B/A100
  instances with the Llumnix policy (migration ticks every 50 ms), driven on the simulator
  (``run_on_simulator``: no observations) and through the Gymnasium env; target under 3 s for
  the former on one core.
- effect: the paper's setting at full scale: 16 instances of Llama-2-7B on A100, ShareGPT
  lengths, Poisson arrivals at the ``high-load`` level (10 requests/s per 4 instances, scaled to
  40/s), p99 TTFT of round-robin, least-outstanding-requests, Llumnix without and with migration.
- effect-a10: the paper's own testbed, the ``llumnix-a10`` preset (16 Llama-2-7B instances on
  24 GB A10s, 4 per server, ShareGPT, Poisson at 89% of capacity): p99 TTFT and preemptions of
  the same policies; here KV memory binds and migration matters.
- bursty: the ``bursty`` preset (the paper's 16 x A10 testbed, Gamma arrivals with CV 4 at 70%
  of capacity in the mean): p99 TTFT of the same policies; bursts fill some instances' memory,
  Llumnix' dispatch avoids them and its migration de-fragments (target: Llumnix at least 1.5x
  below round-robin).
- priority-mix: the ``priority-mix`` preset (same cluster, Poisson at 70%, 10% high-priority):
  p99 and p50 TBT and p99 TTFT per priority class for round-robin and Llumnix (target: Llumnix'
  high-priority p99 TBT below its normal-priority p99 TBT).
- capacity: the saturation throughput of one instance on each GPU (what the presets' load
  levels are relative to; see the comment above ``PRESETS``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import schedgym  # noqa: F401
from schedgym.baselines.llm import LlumnixPolicy, run_on_simulator
from schedgym.core.metrics import percentile
from schedgym.core.policy import make_policy
from schedgym.core.rollout import run_episode
from schedgym.envs.llmcluster.config import PRESETS, LLMClusterConfig
from schedgym.envs.llmcluster.env import LLMClusterEnv
from schedgym.envs.llmcluster.generator import LLMClusterGenerator
from schedgym.envs.llmcluster.simulator import LLMClusterSimulator
from schedgym.workloads.traces import azure_conv_trace

ENV_ID = "schedgym/LLMCluster-v0"
SPEED_TARGET_S = 3.0


def simulate(config: LLMClusterConfig, policy: object, seed: int) -> tuple[dict, float]:
    started = time.perf_counter()
    sim = LLMClusterSimulator(config, LLMClusterGenerator.generate(config, seed))
    run_on_simulator(sim, policy)  # type: ignore[arg-type]
    return sim.summary(), time.perf_counter() - started


def speed() -> None:
    azure_conv_trace()  # load (and cache) the CSV outside the timed part
    config = LLMClusterConfig(**PRESETS["azure-trace"])
    best = np.inf
    for _ in range(3):
        summary, elapsed = simulate(config, LlumnixPolicy(), 0)
        best = min(best, elapsed)
    print(
        f"azure hour, 4 instances, llumnix, simulator: {best:.2f} s (best of 3; target "
        f"< {SPEED_TARGET_S:.0f} s)  requests {summary['requests_completed']}  "
        f"ttft_p99_s {summary['ttft_p99_s']:.3f}  tbt_p99_s {summary['tbt_p99_s']:.4f}  "
        f"migrations {summary['migrations']}"
    )
    env = LLMClusterEnv(config=config)
    result = run_episode(env, make_policy(ENV_ID, "llumnix"), seed=0)
    print(
        f"azure hour, 4 instances, llumnix, through the Gymnasium env: {result.walltime_s:.2f} s "
        f"({result.steps} decisions)"
    )


def compare(config: LLMClusterConfig, seeds: list[int]) -> None:
    p99 = {}
    for name in ("round-robin", "lor", "llumnix-no-migration", "llumnix"):
        runs = [simulate(config, make_policy(ENV_ID, name), seed) for seed in seeds]
        p99[name] = float(np.mean([summary["ttft_p99_s"] for summary, _ in runs]))
        print(
            f"  {name:22s} ttft_p99_s {p99[name]:7.3f}  ttft_p50_s "
            f"{np.mean([s['ttft_p50_s'] for s, _ in runs]):6.3f}  tbt_p99_s "
            f"{np.mean([s['tbt_p99_s'] for s, _ in runs]):6.3f}  preemptions "
            f"{np.mean([s['preemptions'] for s, _ in runs]):7.1f}  migrations "
            f"{np.mean([s['migrations'] for s, _ in runs]):6.1f}  "
            f"({np.mean([t for _, t in runs]):.1f} s per run)"
        )
    print(
        f"  p99 TTFT ratio round-robin / llumnix {p99['round-robin'] / p99['llumnix']:.1f}x, "
        f"lor / llumnix {p99['lor'] / p99['llumnix']:.1f}x, llumnix-no-migration / llumnix "
        f"{p99['llumnix-no-migration'] / p99['llumnix']:.2f}x"
    )


def effect(seeds: list[int]) -> None:
    base = PRESETS["high-load"]
    config = LLMClusterConfig(
        **{
            **base,
            "num_instances": 16,
            "request_rate_per_s": 4 * base["request_rate_per_s"],
            "num_requests": 8000,
        }
    )
    print(
        f"16 x {config.model} on {config.gpu}, ShareGPT, Poisson {config.request_rate_per_s} "
        f"req/s, {config.num_requests} requests, seeds {seeds}"
    )
    compare(config, seeds)


def effect_a10(seeds: list[int]) -> None:
    config = LLMClusterConfig(**PRESETS["llumnix-a10"])
    print(
        f"llumnix-a10: {config.num_instances} x {config.model} on {config.gpu} "
        f"({config.gpus_per_node} per server), ShareGPT, Poisson {config.request_rate_per_s} "
        f"req/s, {config.num_requests} requests, seeds {seeds}"
    )
    compare(config, seeds)


def bursty(seeds: list[int]) -> None:
    config = LLMClusterConfig(**PRESETS["bursty"])
    print(
        f"bursty: {config.num_instances} x {config.model} on {config.gpu}, ShareGPT, Gamma CV "
        f"{config.arrival_cv} at {config.request_rate_per_s} req/s, {config.num_requests} "
        f"requests, seeds {seeds}"
    )
    compare(config, seeds)


def priority_mix(seeds: list[int]) -> None:
    config = LLMClusterConfig(**PRESETS["priority-mix"])
    print(
        f"priority-mix: {config.num_instances} x {config.model} on {config.gpu}, ShareGPT, "
        f"Poisson {config.request_rate_per_s} req/s, {config.high_priority_share:.0%} high "
        f"priority, {config.num_requests} requests, seeds {seeds}"
    )
    for name in ("round-robin", "llumnix"):
        for seed in seeds:
            sim = LLMClusterSimulator(config, LLMClusterGenerator.generate(config, seed))
            completed = sim.cluster.completed
            completed.record_tbt(0)
            run_on_simulator(sim, make_policy(ENV_ID, name))  # type: ignore[arg-type]
            cells = []
            for priority, label in ((0, "normal"), (1, "high")):
                done = completed.priority == priority
                tbt = completed.tbt_by_priority[priority]
                ttft = (completed.first_token_s - completed.arrival_s)[done]
                cells.append(
                    f"{label} tbt_p99_s {tbt.percentile(99):.4f} tbt_p50_s "
                    f"{tbt.percentile(50):.4f} ttft_p99_s {percentile(ttft, 99):6.2f}"
                )
            print(f"  {name:12s} seed {seed}: " + " | ".join(cells))


def capacity(seeds: list[int]) -> None:
    """Steady completion rate of one overloaded instance on each GPU (mean over seeds)."""
    for gpu, rate in (("A100", 4.0), ("A10-24GB", 1.0)):
        rates = []
        for seed in seeds:
            config = LLMClusterConfig(
                num_instances=1, gpu=gpu, request_rate_per_s=rate, num_requests=3000
            )
            sim = LLMClusterSimulator(config, LLMClusterGenerator.generate(config, seed))
            run_on_simulator(sim, make_policy(ENV_ID, "round-robin"))  # type: ignore[arg-type]
            last_arrival = float(sim.stream.arrival_s[sim.requests_arrived - 1])
            finish = sim.cluster.completed.finish_s
            start = 0.1 * last_arrival  # past the warm-up
            steady = (finish > start) & (finish < last_arrival)
            rates.append(steady.sum() / (last_arrival - start))
        print(
            f"one {config.model}/{config.gpu} instance, vLLM batching, ShareGPT <= "
            f"{config.max_total_tokens} tokens, offered {rate} req/s: {np.mean(rates):.3f} "
            f"requests/s sustained under overload (seeds {seeds}: "
            f"{', '.join(f'{r:.3f}' for r in rates)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("speed", "effect", "effect-a10", "bursty", "priority-mix", "capacity", "all"),
        default="all",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    if args.part in ("speed", "all"):
        speed()
    if args.part in ("capacity", "all"):
        capacity([0, 1, 2])
    if args.part in ("effect", "all"):
        effect(args.seeds)
    if args.part in ("effect-a10", "all"):
        effect_a10(args.seeds)
    if args.part in ("bursty", "all"):
        bursty(args.seeds)
    if args.part in ("priority-mix", "all"):
        priority_mix(args.seeds)


if __name__ == "__main__":
    main()
