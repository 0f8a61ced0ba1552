"""``schedgym capacity``: the largest QPS a policy serves within a TBT SLO (Sarathi-Serve)."""

from __future__ import annotations

import argparse
from typing import Any

from schedgym.commands.common import add_config_arguments, env_class, make_kwargs
from schedgym.core.jsonio import dumps_strict


def register(subparsers: Any) -> None:
    """Adds the ``capacity`` subcommand."""
    p = subparsers.add_parser(
        "capacity",
        help="largest QPS with p99 TBT within an SLO and median scheduling delay <= 2 s",
        description="Search (bracketing, then bisection over QPS with fixed seeds) for the "
        "largest request rate at which the policy's p99 time between tokens stays within the "
        "SLO and the median scheduling delay is at most 2 s, as Sarathi-Serve defines capacity.",
    )
    p.add_argument("env_id", help="an environment with a rate and a TBT SLO, e.g. PrefillChunk-v0")
    p.add_argument("--policy", required=True, help="a registered policy name (see `list`)")
    p.add_argument("--slo-tbt-p99", type=float, required=True, metavar="S", help="seconds")
    add_config_arguments(p)
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 at every rate (default 1)")
    p.add_argument("--start-qps", type=float, default=1.0, help="first rate probed (default 1)")
    p.add_argument("--max-qps", type=float, default=1000.0, help="upper end of the search")
    p.add_argument("--tolerance", type=float, default=0.02, help="relative width to stop at")
    p.add_argument("--json", action="store_true", help="print JSON (key capacity_qps)")
    p.set_defaults(func=cmd_capacity, pin_kernels=True)  # numbers it publishes


# Bounds of the search's own arguments (the rate bound is the environment's own rate bound).
MAX_SEEDS = 1000
MAX_SLO_S = 3600.0
# The search sets the arrival rate; Sarathi-Serve's criterion (p99 TBT, median scheduling delay)
# applies to an environment serving one replica under a TBT SLO. LLMCluster has a rate too, but
# no TBT SLO and no scheduling delay in its summary.
RATE_FIELD = "request_rate_per_s"
CAPACITY_FIELDS = (RATE_FIELD, "slo_tbt_s")


def supported_env_ids() -> list[str]:
    """The environments ``capacity`` can search: those with the :data:`CAPACITY_FIELDS`."""
    from schedgym.registration import env_ids

    return [env_id for env_id in env_ids() if _searchable(env_id)]


def _searchable(env_id: str) -> bool:
    from dataclasses import fields

    names = {f.name for f in fields(env_class(env_id).config_class)}
    return all(name in names for name in CAPACITY_FIELDS)


def cmd_capacity(args: argparse.Namespace) -> int:
    from schedgym.core.config import require_number
    from schedgym.core.errors import ConfigError
    from schedgym.core.policy import policy_spec
    from schedgym.envs.prefillchunk.config import MAX_QPS
    from schedgym.leaderboard.capacity import env_episode_fn, search_capacity
    from schedgym.registration import env_entry

    env_id = env_entry(args.env_id).env_id
    if not _searchable(env_id):
        raise ConfigError(
            f"env: capacity searches the {RATE_FIELD} of an environment with a TBT SLO (config "
            f"fields {', '.join(CAPACITY_FIELDS)}), which {env_id} lacks; "
            f"supported: {supported_env_ids()}"
        )
    policy_spec(env_id, args.policy)  # fail early, with the known names, on a typo
    require_number("--seeds", args.seeds, 1, MAX_SEEDS, integer=True)
    require_number("--slo-tbt-p99", args.slo_tbt_p99, 0.0, MAX_SLO_S, low_inclusive=False)
    require_number("--max-qps", args.max_qps, 0.0, MAX_QPS, low_inclusive=False)
    require_number("--start-qps", args.start_qps, 0.0, args.max_qps, low_inclusive=False)
    require_number("--tolerance", args.tolerance, 1e-4, 1.0)
    kwargs = make_kwargs(env_id, args.preset, args.set, reserved=(RATE_FIELD,))
    preset = kwargs.pop("preset", None)
    run = env_episode_fn(env_id, args.policy, preset, kwargs)
    result = search_capacity(
        run,
        args.slo_tbt_p99,
        seeds=tuple(range(args.seeds)),
        start_qps=args.start_qps,
        max_qps=args.max_qps,
        tolerance=args.tolerance,
    )
    if args.json:
        payload = {"env": env_id, "policy": args.policy, "preset": preset, **result.to_dict()}
        print(dumps_strict(payload, indent=1))
        return 0
    for probe in result.probes:
        verdict = "ok " if probe.feasible else "over"
        print(
            f"  qps {probe.qps:8.3f}  {verdict}  p99 TBT {probe.tbt_p99_s:.4f} s  "
            f"median sched delay {probe.sched_delay_p50_s:.3f} s"
        )
    print(
        f"{env_id} policy={args.policy}: capacity {result.capacity_qps:.3f} QPS at p99 TBT <= "
        f"{args.slo_tbt_p99:g} s and median scheduling delay <= {result.sched_delay_limit_s:g} s"
    )
    return 0
