"""CLI subcommands of the inference cost model: ``calibrate``, ``cost`` and ``profile``.

``register(subparsers)`` adds them to the main ``schedgym`` parser; each handler returns the exit
code. Bad input raises ``ConfigError`` (the main CLI prints it on one line and exits 2).
"""

from __future__ import annotations

import argparse
from typing import Any

from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import dumps_strict


def register(subparsers: Any) -> None:
    """Adds the ``calibrate``, ``cost`` and ``profile`` subcommands."""
    calibrate = subparsers.add_parser(
        "calibrate",
        help="fit the inference cost model and report its held-out error",
        description="Refit the roofline coefficients from the shipped profiles (or --profiles "
        "DIR) and report MAPE per GPU, model and operator group on held-out points (every "
        "fifth token count), the NCCL latency-bandwidth laws' held-out error, the Sarathi "
        "whole-iteration check, the cross-model check, and the independent whole-forward "
        "measurements per GPU with the compute scale fitted to them (leave one source out).",
    )
    calibrate.add_argument("--profiles", metavar="DIR", help="profile directory (schedgym profile)")
    calibrate.add_argument("--report", action="store_true", help="print the error report")
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.add_argument("--out", metavar="FILE", help="write the fitted coefficients (JSON)")
    calibrate.add_argument(
        "--env",
        metavar="ENV_ID",
        help="measure an environment's cost table on this machine instead (OnlineDataGen-v0)",
    )
    calibrate.set_defaults(func=run_calibrate)

    cost = subparsers.add_parser(
        "cost",
        help="predict one engine iteration's time",
        description="Predict the time of one iteration (seconds) and its split by operator group.",
    )
    cost.add_argument("--model", required=True, help="e.g. Llama-2-7B")
    cost.add_argument("--gpu", required=True, help="e.g. A100, H100-SXM-80GB")
    cost.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (default 1)")
    cost.add_argument(
        "--prefill",
        action="append",
        default=[],
        metavar="TOKENS[:KV]",
        help="a prefill chunk of TOKENS with KV tokens already cached; repeatable",
    )
    cost.add_argument(
        "--decode",
        action="append",
        default=[],
        metavar="BATCH:KV",
        help="BATCH decoding requests with KV cached tokens each; repeatable",
    )
    cost.add_argument(
        "--engine",
        default="none",
        choices=("none", "sarathi", "tensorrt-llm"),
        help="CPU overhead preset (default none: GPU time only)",
    )
    cost.add_argument("--json", action="store_true", help="print JSON")
    cost.set_defaults(func=run_cost)

    profile = subparsers.add_parser(
        "profile",
        help="measure one transformer layer's operators on this device with torch",
        description="Time the operator groups of one layer with a model's shapes (random "
        "weights) and write profiles in the shipped layout for `schedgym calibrate --profiles`.",
    )
    profile.add_argument("--model", default="tiny", help="catalogue model or 'tiny' (default)")
    profile.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    profile.add_argument("--out", default="profiles", metavar="DIR", help="output directory")
    profile.add_argument("--grid", default="small", choices=("small", "default"))
    profile.add_argument("--tp", type=int, default=1, help="emulated tensor-parallel degree")
    profile.add_argument("--scale", type=int, default=1, help="divide widths and heads by this")
    profile.add_argument("--repeats", type=int, default=5, help="timed runs per point")
    profile.set_defaults(func=run_profile)


# Input bounds of `schedgym cost`: far beyond any real batch (vLLM's max_num_seqs is 256 by
# default, the longest contexts in the catalogue are ~2M tokens), small enough that every
# quantity stays an exact float.
MAX_DECODE_BATCH = 1_000_000
MAX_TOKENS = 100_000_000
MAX_PREFILL_CHUNKS = 10_000


def _parse_pair(text: str, field: str, default_second: int | None) -> tuple[int, int]:
    expected = "TOKENS[:KV]" if default_second is not None else "BATCH:KV"
    parts = text.split(":")
    if len(parts) > 2 or (len(parts) == 1 and default_second is None):
        raise ConfigError(f"{field}: expected {expected}, got {text[:80]!r}")
    try:
        first = int(parts[0])
        second = int(parts[1]) if len(parts) == 2 else int(default_second or 0)
    except ValueError:
        raise ConfigError(f"{field}: expected integers {expected}, got {text[:80]!r}") from None
    first_name, first_high = (
        ("BATCH", MAX_DECODE_BATCH) if field == "decode" else ("TOKENS", MAX_TOKENS)
    )
    for name, value, high in ((first_name, first, first_high), ("KV", second, MAX_TOKENS)):
        if not 0 <= value <= high:
            raise ConfigError(f"{field}: {name} must be in [0, {high}], got {value}")
    return first, second


def run_cost(args: argparse.Namespace) -> int:
    """Handler of ``schedgym cost``."""
    from schedgym.costmodels.inference import InferenceCostModel, engine_overhead

    if len(args.prefill) > MAX_PREFILL_CHUNKS:
        raise ConfigError(f"prefill: at most {MAX_PREFILL_CHUNKS} chunks, got {len(args.prefill)}")
    chunks = [_parse_pair(text, "prefill", 0) for text in args.prefill]
    # A decode batch enters the cost model only through its size and total KV length, so
    # BATCH identical requests are summed in closed form, never listed one by one.
    num_decodes = 0
    sum_decode_kv_tokens = 0
    for text in args.decode:
        batch, kv = _parse_pair(text, "decode", None)
        num_decodes += batch
        sum_decode_kv_tokens += batch * kv
    if num_decodes > MAX_DECODE_BATCH:
        raise ConfigError(
            f"decode: at most {MAX_DECODE_BATCH} decoding requests in all, got {num_decodes}"
        )
    model = InferenceCostModel(args.model, args.gpu, args.tp, overhead=engine_overhead(args.engine))
    total_s = model.time_from_summary_s(num_decodes, float(sum_decode_kv_tokens), chunks)
    breakdown = model.breakdown_from_summary_s(num_decodes, float(sum_decode_kv_tokens), chunks)
    if args.json:
        payload = {
            "model": model.model.name,
            "gpu": model.gpu.name,
            "tp": model.tp,
            "engine": args.engine,
            "prefill_chunks": [list(c) for c in chunks],
            "num_decodes": num_decodes,
            "sum_decode_kv_tokens": sum_decode_kv_tokens,
            "iteration_time_s": total_s,
            "breakdown_s": breakdown,
        }
        print(dumps_strict(payload, indent=1))
        return 0
    print(f"model {model.model.name}  gpu {model.gpu.name}  tp {model.tp}  engine {args.engine}")
    print(f"iteration_time_s {total_s:.6f}")
    for group, seconds in breakdown.items():
        share = seconds / total_s * 100 if total_s else 0.0
        print(f"  {group:<16} {seconds * 1e3:10.3f} ms  {share:5.1f}%")
    return 0


def run_profile(args: argparse.Namespace) -> int:
    """Handler of ``schedgym profile``."""
    from schedgym.core.jsonio import require_writable_dir
    from schedgym.costmodels.calibration.profiler import profile_device

    require_writable_dir(args.out, "--out")

    out = profile_device(
        model=args.model,
        device=args.device,
        out_dir=args.out,
        grid=args.grid,
        tp=args.tp,
        scale=args.scale,
        repeats=args.repeats,
    )
    print(f"wrote {out / 'operator_profiles.csv'}, {out / 'attention_profiles.csv'}")
    return 0


def calibration_report(profiles_dir: str | None) -> dict[str, Any]:
    """Fits from the shipped profiles (or ``profiles_dir``) and gathers every error figure."""
    from schedgym.costmodels.calibration import (
        fitting,
        nccl_fit,
        profiles,
        validation,
        whole_forward,
    )

    profile_set = profiles.load_profiles(profiles_dir)
    calibration = fitting.fit_calibration(profile_set, holdout=True)
    report: dict[str, Any] = {
        "source": profiles_dir or "shipped",
        "holdout": "every fifth distinct token count (KV length for attention)",
        "operator_groups": [
            row.to_dict() for row in fitting.error_report(calibration, profile_set)
        ],
    }
    if profiles_dir is None:
        report["network_holdout"] = "every fifth message size held out, laws refitted on the rest"
        report["network"] = [row.to_dict() for row in nccl_fit.holdout_errors()]
        overhead = validation.fit_engine_overhead(calibration)
        report["engine_overhead"] = {
            "per_iteration_s": overhead.per_iteration_s,
            "per_sequence_s": overhead.per_sequence_s,
            "overlap_sharpness": overhead.overlap_sharpness,
        }
        report["sarathi"] = [p.to_dict() for p in validation.sarathi_check(calibration, overhead)]
        report["cross_model"] = validation.cross_model_check(profile_set)
        report["whole_forward"] = whole_forward.error_report(calibration=calibration)
        report["shared_prefix_kernel"] = _shared_prefix_kernel_report()
    report["_calibration"] = calibration
    return report


def _shared_prefix_kernel_report() -> dict[str, Any]:
    from schedgym.costmodels.calibration.shared_prefix_fit import kernel_report

    return kernel_report()


def _print_shared_prefix_kernel(kernel: dict[str, Any]) -> None:
    print(
        f"\nshared-prefix (cascade) attention kernel: fixed {kernel['fixed_s'] * 1e6:.1f} us per "
        f"layer, overlap p={kernel['overlap_sharpness']:.1f}; cascade rows MAPE "
        f"{kernel['cascade_mape_pct']:.1f}% (fitted), plain-kernel rows MAPE "
        f"{kernel['no_cascade_mape_pct_prefix_ge_256']:.1f}% from 256 tokens (unfitted)"
    )
    for row in kernel["rows"]:
        claim = row["kernel"] == "speedup_claim"
        scale, unit = (1.0, "x") if claim else (1e6, "us")
        print(
            f"  {row['source']:<24} {row['kernel']:<13} prefix {row['prefix_tokens']:>6}  "
            f"published {row['published'] * scale:>8.1f} {unit:<2}  predicted "
            f"{row['predicted'] * scale:>8.1f} {unit:<2}  {row['error'] * 100:>+7.1f}%"
        )


def run_calibrate(args: argparse.Namespace) -> int:
    """Handler of ``schedgym calibrate``."""
    from schedgym.core.jsonio import require_writable_file

    if args.out:
        # Checked before the fit or the measurement runs, so a bad --out wastes nothing.
        require_writable_file(args.out, "--out")
    if args.env:
        from schedgym.envs.datagen.calibration import calibrate_env

        return calibrate_env(args.env, args.out)
    from schedgym.costmodels.calibration.fitting import fit_calibration, save_calibration
    from schedgym.costmodels.calibration.profiles import load_profiles

    report = calibration_report(args.profiles)
    report.pop("_calibration")
    if args.out:
        # Shipped coefficients use every point; the report's fit leaves the held-out ones out.
        save_calibration(fit_calibration(load_profiles(args.profiles), holdout=False), args.out)
    if args.json:
        print(dumps_strict(report, indent=1))
        return 0
    if not args.report:
        print("fitted; add --report for the held-out error, --out FILE to save coefficients")
        return 0
    print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    """Prints a :func:`calibration_report` as the text of `schedgym calibrate --report`."""
    print(f"held-out error ({report['holdout']}), profiles: {report['source']}")
    print(f"{'gpu':<16} {'model':<14} {'group':<12} {'points':>6} {'MAPE%':>7} {'max%':>7}")
    for row in report["operator_groups"]:
        print(
            f"{row['gpu']:<16} {row['model']:<14} {row['group']:<12} {row['points']:>6} "
            f"{row['mape_pct']:>7.2f} {row['max_ape_pct']:>7.2f}"
        )
    if report.get("network"):
        print(
            f"\nNCCL latency-bandwidth laws ({report['network_holdout']}); MAPE of the laws, "
            "their median error, and, on the same points, the interpolation's MAPE; 'uses' is "
            "what the cost model runs on (laws for all-reduce, interpolation for send/recv)"
        )
        print(
            f"{'gpu':<16} {'collective':<20} {'uses':<13} {'regimes':>7} {'points':>6} "
            f"{'MAPE%':>7} {'max%':>7} {'median%':>8} {'interp%':>8} {'in-sample%':>10}"
        )
    for row in report.get("network", []):
        name = f"{row['collective']} x{row['num_workers']}/{row['devices_per_node']}pn"
        print(
            f"{row['gpu']:<16} {name:<20} {row['runtime']:<13} {row['regimes']:>7} "
            f"{row['points']:>6} {row['held_out_mape_pct']:>7.2f} "
            f"{row['held_out_max_ape_pct']:>7.2f} "
            f"{row['held_out_median_ape_pct']:>8.2f} {row['interpolation_mape_pct']:>8.2f} "
            f"{row['in_sample_mape_pct']:>10.2f}"
        )
    if "sarathi" in report:
        print(
            "\nSarathi-Serve Yi-34B TP2 A100 whole iterations (engine overhead fit on 'fit' rows)"
        )
        for p in report["sarathi"]:
            tag = "fit" if p["used_in_fit"] else ("held-out" if p["scored"] else "cold-start")
            print(
                f"  {p['source']:<9} prefill {p['prefill_tokens']:>5}"
                f" decode {p['decode_tokens']:>4}  measured {p['measured_ms']:>8.1f} ms"
                f"  predicted {p['predicted_ms']:>8.1f} ms"
                f"  {p['error_pct']:>+6.1f}%  {tag}"
            )
        cross = report["cross_model"]
        print(
            f"\ncross-model: fitted on {cross['fit_model']} only, {cross['target_model']} "
            f"per-layer time MAPE {cross['mape_pct']}% (max {cross['max_ape_pct']}%) "
            f"over {cross['points']} points"
        )
    if "whole_forward" in report:
        _print_whole_forward(report["whole_forward"])
    if "shared_prefix_kernel" in report:
        _print_shared_prefix_kernel(report["shared_prefix_kernel"])


def _print_whole_forward(result: dict[str, Any]) -> None:
    scales = ", ".join(
        f"{gpu} fitted {fitted:.3f} applied {result['compute_scale'][gpu]:.3f}"
        for gpu, fitted in result["fitted_compute_scale"].items()
    )
    print(
        "\nindependent whole-forward measurements (data/whole_forward.csv); compute scale: "
        f"{scales} (applied where the split-half held-out MAPE drops by >= "
        f"{result['apply_min_gain_pct']} points)"
    )
    print(
        f"{'gpu':<16} {'source':<12} {'points':>6} {'profiles mean%':>14} {'MAPE%':>6} "
        f"{'applied mean%':>13} {'MAPE%':>6} {'engine ms':>9} {'+engine MAPE%':>13}"
    )
    for row in result["independent"]:
        print(
            f"{row['gpu']:<16} {row['source']:<12} {row['points']:>6} "
            f"{row['operator_profiles_mean_error_pct']:>+14.1f} "
            f"{row['operator_profiles_mape_pct']:>6.1f} "
            f"{row['applied_scale_mean_error_pct']:>+13.1f} "
            f"{row['applied_scale_mape_pct']:>6.1f} {row['engine_constant_ms']:>9.2f} "
            f"{row['with_engine_constant_mape_pct']:>13.1f}"
        )
    print(
        "held out, leave one source out (scale from the other sources, the source's engine "
        "constant from its even rows, odd rows scored):"
    )
    for row in result["leave_one_source_out"]:
        print(
            f"  {row['gpu']:<16} {row['held_out_source']:<12} "
            f"scale {row['scale_from_other_sources']:.3f}"
            f"  {row['scored_points']:>3} points  MAPE {row['compute_scaled_mape_pct']:.1f}%"
            f" (no compute scale: {row['operator_profiles_mape_pct']:.1f}%)"
        )
    print("held out, split half (scale and constants from every source's even rows):")
    for row in result["split_half"]:
        print(
            f"  {row['gpu']:<16} scale {row['scale_from_even_rows']:.3f}  {row['scored_points']:>3}"
            f" points  MAPE {row['compute_scaled_mape_pct']:.1f}%"
            f" (no compute scale: {row['operator_profiles_mape_pct']:.1f}%)"
        )
    engine = result["tensorrt_llm_overhead"]
    print(f"tensorrt-llm engine preset: {engine['per_iteration_ms']:.2f} ms per iteration")
    for row in engine["leave_one_source_out"]:
        print(
            f"  {row['held_out_source']:<12} predicted with "
            f"{row['per_iteration_ms_from_other']:.2f} ms"
            f" from the other source: MAPE {row['mape_pct']:.1f}%"
            f" (GPU time alone {row['gpu_time_only_mape_pct']:.1f}%) over {row['points']} points"
        )
