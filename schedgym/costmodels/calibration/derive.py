"""Derive the compact package tables in ``data/`` from the original reference measurements.

This is a maintainer tool, run once when the reference data changes::

    python -m schedgym.costmodels.calibration.derive /path/to/reference

It reads the original files (Vidur, LLMServingSim, Sarathi-Serve; see ``data/NOTICE``) from the
directory given on the command line and writes compact CSVs (medians only, fewer grid points) next
to this module. The package itself never reads the reference directory at run time.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from schedgym.costmodels.calibration.profiles import ATTENTION_COLUMNS, PROFILE_KEY_COLUMNS

DATA_DIR = Path(__file__).parent.parent / "data"

# Vidur operator names, in the order the profiler and the shipped table use.
VIDUR_OPS = (
    "emb",
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
VIDUR_MODELS = {"Llama-2-7b-hf": "Llama-2-7B", "Llama-2-70b-hf": "Llama-2-70B"}
# hidden, heads, kv heads, ffn of Llama-3.1-70B (its model card), which LLMServingSim profiled.
LLAMA3_70B = ("8192", "64", "8", "28672")
KEEP_LSS_OPS = ("emb", "attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
GPU_NAMES = {"a100": "A100-SXM-80GB", "h100": "H100-SXM-80GB"}
# LLMServingSim layer names mapped onto the Vidur operator they correspond to; q/k/v and
# gate/up are separate kernels there, fused here, so their times are summed.
LSS_TO_VIDUR = {
    "embedding": "emb",
    "input_layernorm": "input_layernorm",
    "q_proj": "attn_pre_proj",
    "k_proj": "attn_pre_proj",
    "v_proj": "attn_pre_proj",
    "rope": "attn_rope",
    "o_proj": "attn_post_proj",
    "post_layernorm": "post_attention_layernorm",
    "gate_proj": "mlp_up_proj",
    "up_proj": "mlp_up_proj",
    "act_fn": "mlp_act",
    "down_proj": "mlp_down_proj",
}


def _sig(value: float, digits: int = 5) -> str:
    """Formats a float with a fixed number of significant digits (keeps the CSVs small)."""
    return f"{value:.{digits}g}"


def _keep_token_count(num_tokens: int) -> bool:
    """Keeps every token count up to 512, then every other one: the curve is smooth there."""
    return num_tokens <= 512 or (num_tokens // 32) % 2 == 0


def derive_operator_profiles(src: Path) -> list[list[str]]:
    """Median per-operator times (ms) from the Vidur and LLMServingSim operator profiles."""
    rows: list[list[str]] = []
    for path in sorted((src / "llm").glob("vidur_mlp_*.csv")):
        _, _, model_raw, gpu_raw = path.stem.split("_", 3)
        with path.open(newline="") as handle:
            for record in csv.DictReader(handle):
                tokens = int(record["num_tokens"])
                if not _keep_token_count(tokens):
                    continue
                times = [_sig(float(record[f"time_stats.{op}.median"])) for op in VIDUR_OPS]
                rows.append(
                    [
                        "vidur",
                        GPU_NAMES[gpu_raw],
                        VIDUR_MODELS[model_raw],
                        record["n_embd"],
                        record["n_head"],
                        record["n_kv_head"],
                        record["n_expanded_embd"],
                        record["num_tensor_parallel_workers"],
                        str(tokens),
                        *times,
                    ]
                )
    lss = src / "llm" / "llmservingsim_layers_Llama-3.1-70B_tp4_h100.csv"
    sums: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with lss.open(newline="") as handle:
        for record in csv.DictReader(handle):
            op = LSS_TO_VIDUR.get(record["layer_name"])
            if op is None or int(record["kv_cache"]) != 0:
                continue
            # LLMServingSim layer latencies are nanoseconds; the table is milliseconds.
            sums[int(record["input"])][op] += float(record["latency(ns)"]) * 1e-6
    for tokens in sorted(sums):
        if tokens % 8 and tokens > 16:
            continue
        # Only the GEMMs and the embedding are kept: this profile hooks Hugging Face's eager
        # modules, whose unfused RMSNorm and RoPE take 5-7x the fused serving kernels (136 us
        # against Vidur's 20 us for a 1024-token RMSNorm), so they describe another engine.
        times = [_sig(sums[tokens][op]) if op in KEEP_LSS_OPS else "" for op in VIDUR_OPS]
        rows.append(
            [
                "llmservingsim",
                "H100-SXM-80GB",
                "Llama-3.1-70B",
                *LLAMA3_70B,
                "4",
                str(tokens),
                *times,
            ]
        )
    return rows


def derive_attention_profiles(src: Path) -> list[list[str]]:
    """Median attention times (ms) per layer from LLMServingSim's FlashAttention profile."""
    path = src / "llm" / "llmservingsim_attention_Llama-3.1-70B_tp4_h100.csv"
    keep_batches = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256}
    rows: list[list[str]] = []
    head = ["llmservingsim", "H100-SXM-80GB", "Llama-3.1-70B", "8192", "64", "8", "4"]
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            kv_tokens = int(record["kv_cache_size"])
            if record["is_prefill"] == "True":
                chunk = int(record["prefill_chunk_size"])
                if chunk % 64 and chunk != 32:
                    continue
                time_ms = float(record["time_stats.attn_prefill.median"])
                # Here kv_cache_size counts the chunk itself: (1024, 1024) costs what (32, 1024)
                # does, which only holds if both attend to about 1024 keys. Store the context
                # cached before the chunk instead.
                context = kv_tokens - chunk
                rows.append([*head, "prefill", "1", str(chunk), str(context), _sig(time_ms)])
            else:
                batch = int(record["batch_size"])
                if kv_tokens < batch:
                    # Fewer cached tokens than sequences: not a real batch (the kernel returns at
                    # once: 2.6 us at batch 128 against 41 us with one token each).
                    continue
                # Keep a log-spaced subset of KV sizes: the curves are piecewise linear.
                step = 2 ** max(0, int(math.log2(max(kv_tokens, 1))) - 3)
                if batch not in keep_batches or kv_tokens % step:
                    continue
                time_ms = float(record["time_stats.attn_decode.median"])
                # kv_cache_size is the batch's total: time falls as 1/batch at a fixed value
                # while batch * 8 <= SMs, and reading it per sequence would need 12.8 TB/s at
                # batch 128, four times the H100's HBM. So the column is the sum over the batch.
                rows.append([*head, "decode", str(batch), "0", str(kv_tokens), _sig(time_ms)])
    return rows


def derive_nccl(src: Path) -> list[list[str]]:
    """Median NCCL all-reduce and send/recv times (ms) on a log-spaced subset of sizes."""
    rows: list[list[str]] = []
    for path in sorted((src / "llm").glob("vidur_*_dgx.csv")):
        gpu = GPU_NAMES[path.stem.split("_")[-2]]
        with path.open(newline="") as handle:
            records = list(csv.DictReader(handle))
        collective = records[0]["collective"]
        sizes = sorted({int(r["size"]) for r in records})
        # Roughly 12 sizes per octave: enough for interpolation, far smaller than the source.
        keep: set[int] = set()
        for octave_start in range(11, 27):
            lo, hi = 2**octave_start, 2 ** (octave_start + 1)
            in_octave = [s for s in sizes if lo <= s < hi]
            keep.update(in_octave[:: max(1, len(in_octave) // 12)])
        keep.add(sizes[-1])
        for record in records:
            size = int(record["size"])
            if size not in keep:
                continue
            time_ms = float(record[f"time_stats.{collective}.median"])
            rows.append(
                [
                    collective,
                    gpu,
                    record["num_workers"],
                    record["devices_per_node"],
                    str(size),
                    _sig(time_ms),
                ]
            )
    return rows


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def derive_all(src: Path) -> None:
    """Writes every derived table into ``data/``."""
    _write(
        DATA_DIR / "operator_profiles.csv",
        # The shipped file keeps Vidur's operator order (the reader goes by column name).
        [*PROFILE_KEY_COLUMNS, "n_expanded_embd", "tp", "num_tokens"]
        + [f"{op}_ms" for op in VIDUR_OPS],
        derive_operator_profiles(src),
    )
    _write(
        DATA_DIR / "attention_profiles.csv",
        list(ATTENTION_COLUMNS),
        derive_attention_profiles(src),
    )
    _write(
        DATA_DIR / "nccl.csv",
        ["collective", "gpu", "num_workers", "devices_per_node", "size_bytes", "time_ms"],
        derive_nccl(src),
    )
    sarathi_rows: list[list[str]] = []
    for kind in ("prefill", "decode"):
        with (src / "llm" / f"sarathi_figure-2_{kind}.csv").open(newline="") as handle:
            for record in csv.DictReader(handle):
                sarathi_rows.append(
                    [
                        "figure-2",
                        record["batch_num_prefill_tokens"],
                        record["batch_num_decode_tokens"],
                        record["batch_size"].split(".")[0],
                        # Figure-2 times are seconds; the table is milliseconds.
                        _sig(float(record["batch_execution_time"]) * 1e3),
                    ]
                )
    with (src / "llm" / "sarathi_table-2_results.csv").open(newline="") as handle:
        for record in csv.DictReader(handle):
            sarathi_rows.append(
                [
                    "table-2",
                    record["batch_num_prefill_tokens"],
                    record["batch_num_decode_tokens"],
                    record["batch_size"],
                    _sig(float(record["batch_execution_time"])),
                ]
            )
    _write(
        DATA_DIR / "sarathi_iterations.csv",
        ["source", "prefill_tokens", "decode_tokens", "batch_size", "time_ms"],
        sarathi_rows,
    )
    hardware = json.loads((src / "hardware.json").read_text())
    print(f"derived tables in {DATA_DIR}; hardware.json has {len(hardware['gpus'])} GPUs")


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    derive_all(Path(sys.argv[1]))
