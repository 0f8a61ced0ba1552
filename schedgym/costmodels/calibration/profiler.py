"""Measure the operator groups of one transformer layer on the local device with torch.

``profile_device`` builds one layer with a model's shapes (random weights), times every
token-level operator over a grid of token counts and the attention kernel over chunk sizes,
context lengths and decode batches, measures the device's own roofline (a large GEMM and a large
copy), and writes ``operator_profiles.csv``, ``attention_profiles.csv`` and ``device.json`` in the
layout of the shipped profiles, so ``schedgym calibrate --profiles DIR`` can fit them.

torch is imported inside the functions: importing this module does not need it.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import write_json_atomic, write_text_atomic
from schedgym.costmodels.calibration.profiles import (
    ALL_TOKEN_OPS,
    ATTENTION_COLUMNS,
    ATTENTION_FILE,
    DEVICE_FILE,
    OPERATOR_COLUMNS,
    OPERATOR_FILE,
)
from schedgym.costmodels.hardware import ModelSpec, check_tp, get_model

# A model small enough to profile on a laptop CPU in seconds (Llama layout, GQA 2:1).
TINY_MODEL = ModelSpec("tiny", 1, 256, 4, 2, 688, 1024, 0.002)
GRIDS: dict[str, dict[str, list[int]]] = {
    "small": {
        "tokens": [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128],
        "chunks": [16, 32, 64],
        "contexts": [0, 32, 64, 128, 256],
        "batches": [1, 2, 4, 8],
        "kv_per_seq": [16, 32, 64, 128, 256],
    },
    "default": {
        "tokens": [
            1,
            2,
            4,
            8,
            16,
            32,
            48,
            64,
            96,
            128,
            192,
            256,
            384,
            512,
            768,
            1024,
            1536,
            2048,
            3072,
            4096,
        ],
        "chunks": [64, 128, 256, 512, 1024, 2048],
        "contexts": [0, 256, 512, 1024, 2048, 4096],
        "batches": [1, 2, 4, 8, 16, 32, 64, 128, 256],
        "kv_per_seq": [128, 256, 512, 1024, 2048, 4096],
    },
}


def resolve_profile_model(name: str, scale: int = 1) -> ModelSpec:
    """A catalogue model (or ``tiny``), with widths and heads divided by ``scale``.

    Raises:
        ConfigError: ``model``/``scale`` invalid.
    """
    spec = TINY_MODEL if name.lower() == "tiny" else get_model(name)
    if isinstance(scale, bool) or scale < 1 or spec.heads % scale or spec.kv_heads % scale:
        raise ConfigError(
            f"scale: must be a positive divisor of the heads of {spec.name}, got {scale}"
        )
    if scale == 1:
        return spec
    return replace(
        spec,
        name=f"{spec.name}/{scale}",
        hidden=spec.hidden // scale,
        heads=spec.heads // scale,
        kv_heads=spec.kv_heads // scale,
        ffn=spec.ffn // scale,
    )


def _timer(torch: Any, device: str, repeats: int) -> Callable[[Callable[[], object]], float]:
    """Returns a function timing a callable: median of ``repeats`` runs after a warm-up, seconds."""

    def measure(run: Callable[[], object]) -> float:
        run()
        samples = []
        for _ in range(repeats):
            if device == "cuda":
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                run()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) * 1e-3)
            else:
                begin = time.perf_counter()
                run()
                samples.append(time.perf_counter() - begin)
        return statistics.median(samples)

    return measure


def _device_figures(torch: Any, device: str, dtype: Any, measure: Callable) -> dict[str, float]:
    """The device's own roofline: achieved GEMM FLOP/s and copy bandwidth (bytes/s)."""
    size = 4096 if device == "cuda" else 512
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    peak_flops = 2.0 * size**3 / measure(lambda: left @ right)
    elements = (256 if device == "cuda" else 32) * 2**20 // 4
    source = torch.randn(elements, device=device, dtype=torch.float32)
    target = torch.empty_like(source)
    bandwidth = 2.0 * source.numel() * 4 / measure(lambda: target.copy_(source))
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        memory, units = float(props.total_memory), int(props.multi_processor_count)
    else:
        memory, units = 0.0, int(os.cpu_count() or 1)
    return {
        "peak_flops": peak_flops,
        "hbm_bytes": memory,
        "hbm_bytes_per_s": bandwidth,
        "nvlink_bytes_per_s": 0.0,
        "internode_bytes_per_s": 0.0,
        "pcie_bytes_per_s": 0.0,
        "sm_count": units,
    }


def profile_device(
    model: str = "tiny",
    device: str = "cpu",
    out_dir: str | Path = "profiles",
    grid: str = "small",
    tp: int = 1,
    scale: int = 1,
    repeats: int = 5,
) -> Path:
    """Profiles one layer of ``model`` on ``device`` and writes the CSVs into ``out_dir``.

    Args:
        model: catalogue model name or ``tiny``.
        device: ``cpu`` or ``cuda``.
        out_dir: output directory (created).
        grid: ``small`` (seconds on a CPU) or ``default``.
        tp: emulated tensor-parallel degree (one rank's shard of every weight).
        scale: divide widths and heads by this (to fit a big model's layer on a small device).
        repeats: timed runs per point (the median is kept).

    Returns:
        The output directory.

    Raises:
        ConfigError: bad device, grid, model, tp or scale; ``device: cuda`` without a GPU.
    """
    import torch  # lazy: the profiler is the one place below agents/ that needs torch

    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device: must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but torch sees no GPU")
    if grid not in GRIDS:
        raise ConfigError(f"grid: must be one of {', '.join(GRIDS)}, got {grid!r}")
    if isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats: must be >= 1, got {repeats!r}")
    spec = resolve_profile_model(model, scale)
    check_tp(spec, tp)
    points = GRIDS[grid]
    # bf16 is what serving runs on a GPU; CPU kernels for it are slow emulation, so use fp32 there.
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    measure = _timer(torch, device, repeats)
    label = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu-{platform.machine()}"
    figures = _device_figures(torch, device, dtype, measure)

    hidden, head_dim = spec.hidden, spec.head_dim
    heads, kv_heads = spec.heads // tp, max(1, spec.kv_heads // tp)
    ffn = spec.ffn // tp

    def weight(rows: int, cols: int) -> Any:
        return torch.randn(rows, cols, device=device, dtype=dtype) / rows**0.5

    embedding = weight(spec.vocab, hidden)
    qkv_w = weight(hidden, (heads + 2 * kv_heads) * head_dim)
    out_w = weight(heads * head_dim, hidden)
    up_w = weight(hidden, 2 * ffn)
    down_w = weight(ffn, hidden)
    norm_w = torch.ones(hidden, device=device, dtype=dtype)

    def rms_norm(x: Any) -> Any:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm_w

    def rope(x: Any, cos: Any, sin: Any) -> Any:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = ["torch", label, spec.name, str(hidden), str(spec.heads), str(spec.kv_heads)]
    operator_rows = []
    with torch.inference_mode():
        for tokens in points["tokens"]:
            ids = torch.randint(0, spec.vocab, (tokens,), device=device)
            x = torch.randn(tokens, hidden, device=device, dtype=dtype)
            qk = torch.randn(tokens, heads + kv_heads, head_dim, device=device, dtype=dtype)
            cos = torch.randn(tokens, 1, head_dim, device=device, dtype=dtype)
            gate_up = torch.randn(tokens, 2 * ffn, device=device, dtype=dtype)
            attn_out = torch.randn(tokens, heads * head_dim, device=device, dtype=dtype)
            act = torch.randn(tokens, ffn, device=device, dtype=dtype)
            silu = torch.nn.functional.silu
            # Each closure is timed right away, so late binding of the loop variables is safe.
            runs: dict[str, Callable[[], object]] = {
                "emb": lambda: embedding[ids],  # noqa: B023
                "input_layernorm": lambda: rms_norm(x),  # noqa: B023
                "attn_pre_proj": lambda: x @ qkv_w,  # noqa: B023
                "attn_rope": lambda: rope(qk, cos, cos),  # noqa: B023
                "attn_post_proj": lambda: attn_out @ out_w,  # noqa: B023
                "post_attention_layernorm": lambda: rms_norm(x),  # noqa: B023
                "mlp_up_proj": lambda: x @ up_w,  # noqa: B023
                "mlp_act": lambda: silu(gate_up[:, :ffn]) * gate_up[:, ffn:],  # noqa: B023
                "mlp_down_proj": lambda: act @ down_w,  # noqa: B023
                "add": lambda: x + x,  # noqa: B023
            }
            times = {op: measure(runs[op]) for op in ALL_TOKEN_OPS}
            operator_rows.append(
                [*head, str(spec.ffn), str(tp), str(tokens)]
                + [f"{times[op] * 1e3:.6g}" for op in ALL_TOKEN_OPS]
            )
        attention_rows = []
        sdpa = torch.nn.functional.scaled_dot_product_attention
        group = heads // kv_heads
        for chunk in points["chunks"]:
            for context in points["contexts"]:
                q = torch.randn(1, heads, chunk, head_dim, device=device, dtype=dtype)
                kv = torch.randn(1, kv_heads, context + chunk, head_dim, device=device, dtype=dtype)
                # Causal over the chunk, full over the cached context.
                mask = torch.ones(chunk, context + chunk, device=device, dtype=torch.bool).tril(
                    context
                )

                def prefill(q: Any = q, kv: Any = kv, mask: Any = mask) -> Any:
                    keys = kv.repeat_interleave(group, dim=1)
                    return sdpa(q, keys, keys, attn_mask=mask)

                elapsed = measure(prefill)
                attention_rows.append(
                    [
                        *head,
                        str(tp),
                        "prefill",
                        "1",
                        str(chunk),
                        str(context),
                        f"{elapsed * 1e3:.6g}",
                    ]
                )
        for batch in points["batches"]:
            for kv_len in points["kv_per_seq"]:
                q = torch.randn(batch, heads, 1, head_dim, device=device, dtype=dtype)
                kv = torch.randn(batch, kv_heads, kv_len, head_dim, device=device, dtype=dtype)

                def decode(q: Any = q, kv: Any = kv) -> Any:
                    keys = kv.repeat_interleave(group, dim=1)
                    return sdpa(q, keys, keys)

                elapsed = measure(decode)
                # kv_tokens is the batch's total, as in the shipped decode table.
                attention_rows.append(
                    [
                        *head,
                        str(tp),
                        "decode",
                        str(batch),
                        "0",
                        str(batch * kv_len),
                        f"{elapsed * 1e3:.6g}",
                    ]
                )
    for name, columns, rows in (
        (OPERATOR_FILE, OPERATOR_COLUMNS, operator_rows),
        (ATTENTION_FILE, ATTENTION_COLUMNS, attention_rows),
    ):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        write_text_atomic(out / name, text.getvalue())
    meta = {
        label: figures,
    }
    write_json_atomic(out / DEVICE_FILE, meta)
    provenance = {
        "device": label,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device == "cuda" else None,
        "dtype": str(dtype),
        "model": spec.name,
        "tp": tp,
        "grid": grid,
        "repeats": repeats,
    }
    write_json_atomic(out / "provenance.json", provenance)
    return out
