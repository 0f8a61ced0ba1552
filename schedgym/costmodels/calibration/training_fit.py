"""Fitting the training cost model's efficiency curves, and the shipped table they go into.

:mod:`schedgym.costmodels.training` reads the fitted curves from the shipped
``data/training_efficiency.json`` and never fits at run time. This module fits them (the steps
are described in that module's docstring) from the shipped data:

- ``data/operator_profiles.csv``, the Vidur rows at tp=1 (Llama-2-7B and -70B on A100 and H100):
  the GEMM efficiency curve per GPU;
- ``data/attention_profiles.csv``, the LLMServingSim FlashAttention prefill rows (H100): the
  attention efficiency's shape;
- ``data/hardware.json``: the GPUs' peak FLOPs, and Llama 3's reported MFU (``achieved_mfu_
  examples``, the constants below), which fix ``kappa`` and ``rho``.

Regenerate the table (after any of those changes; ``tests/costmodels/test_training.py`` fails
while the shipped table differs from a refit) with::

    python -m schedgym.costmodels.calibration.training_fit
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from schedgym.core.jsonio import dumps_strict, write_text_atomic
from schedgym.costmodels.hardware import GpuSpec, ModelSpec, get_gpu
from schedgym.costmodels.training import (
    TRAINING_TABLE_FILE,
    GemmCurve,
    LinkTable,
    TrainingCalibration,
    non_embedding_params,
    shipped_training_calibration,
    training_flops,
)

# Llama 3's reported pre-training MFU on H100 (Llama 3 paper, Table 4; hardware.json).
LLAMA3_MFU_8K = 0.43
LLAMA3_MFU_131K_CP16 = 0.38
LLAMA3_GPU = "H100-SXM-80GB"
# Llama 3 405B architecture (Llama 3 paper, Table 3), the model those MFU figures were measured on.
LLAMA3_405B = ModelSpec(
    name="Llama-3-405B",
    layers=126,
    hidden=16384,
    heads=128,
    kv_heads=8,
    ffn=53248,
    vocab=128256,
    params_b=405.0,
)
TABLE_PATH = Path(__file__).parent.parent / "data" / TRAINING_TABLE_FILE
TABLE_ABOUT = (
    "Efficiency curves of the training cost model (schedgym.costmodels.training), fitted by "
    "schedgym.costmodels.calibration.training_fit.fit_training_calibration: gemm is the Hill "
    "curve eta(T) = eta_inf T^power / (T^power + half_tokens^power) of the forward efficiency "
    "(fraction of peak) against tokens per rank, per GPU, from data/operator_profiles.csv "
    "(source vidur, tp 1); kappa (training overhead) and rho (attention asymptote over the "
    "GEMM one) reproduce Llama 3's reported MFU (0.43 at 8K tokens per H100, 0.38 at 131K with "
    "context parallelism 16; data/hardware.json); attn_half_flops (forward FLOPs of one "
    "attention call at half its asymptote) from the prefill rows of "
    "data/attention_profiles.csv. mape_pct: fit errors; points: measured points used. Floats "
    "are Python's shortest round-trip repr: the runtime reads the fitted values exactly. "
    "Regenerate: python -m schedgym.costmodels.calibration.training_fit"
)


def _hill(tokens: NDArray[np.float64], half: float, power: float) -> NDArray[np.float64]:
    scaled = (tokens / half) ** power
    return np.asarray(scaled / (1.0 + scaled))


def fit_hill(
    tokens: NDArray[np.float64], eff: NDArray[np.float64]
) -> tuple[float, float, float, float]:
    """Relative-least-squares Hill fit by grid search; returns (eta_inf, half, power, mape_pct)."""
    best = (math.inf, 0.0, 1.0, 1.0)
    for power in np.linspace(0.5, 3.0, 26):
        for half in np.geomspace(8.0, 4096.0, 120):
            shape = _hill(tokens, half, power)
            # Minimise sum((eta_inf * shape / eff - 1)^2): closed form in eta_inf.
            ratio = shape / eff
            eta_inf = float(ratio.sum() / (ratio * ratio).sum())
            err = float(np.mean(np.abs(eta_inf * ratio - 1.0)))
            if err < best[0]:
                best = (err, eta_inf, float(half), float(power))
    err, eta_inf, half, power = best
    return eta_inf, half, power, 100.0 * err


def gemm_points() -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Measured forward efficiency of all token ops per GPU, pooled over models (tp=1)."""
    from schedgym.costmodels.calibration.profiles import load_profiles
    from schedgym.costmodels.roofline import LINEAR_OPS, TOKEN_OPS, op_work

    profiles = load_profiles()
    pooled: dict[str, tuple[list[float], list[float]]] = {}
    for curve in profiles.operators:
        if curve.tp != 1:
            continue
        gpu = profiles.gpu(curve.gpu)
        tokens = curve.num_tokens
        flops = sum(op_work(curve.model, 1, op, tokens)[0] for op in LINEAR_OPS)
        times = sum(np.nan_to_num(curve.times_s[op]) for op in TOKEN_OPS)
        eff = flops / (np.asarray(times) * gpu.peak_flops)
        keep = np.isfinite(eff) & (eff > 0)
        xs, ys = pooled.setdefault(gpu.calibrated_as, ([], []))
        xs.extend(tokens[keep].tolist())
        ys.extend(eff[keep].tolist())
    return {k: (np.array(v[0]), np.array(v[1])) for k, v in pooled.items()}


def attention_points() -> tuple[NDArray[np.float64], NDArray[np.float64], str]:
    """Forward FLOPs per call and achieved efficiency of measured FlashAttention prefills."""
    from schedgym.costmodels.calibration.profiles import load_profiles

    profiles = load_profiles()
    flops_all: list[float] = []
    eff_all: list[float] = []
    gpu_name = LLAMA3_GPU
    for curve in profiles.attention:
        if curve.phase != "prefill":
            continue
        gpu = profiles.gpu(curve.gpu)
        gpu_name = gpu.calibrated_as
        heads = curve.model.heads / curve.tp
        q = curve.chunk_tokens
        # Causal prefill of q new tokens after kv cached ones: q (kv + q/2) score pairs.
        flops = 4.0 * q * (curve.kv_tokens + q / 2.0) * heads * curve.model.head_dim
        eff = flops / (curve.times_s * gpu.peak_flops)
        flops_all.extend(flops.tolist())
        eff_all.extend(eff.tolist())
    return np.array(flops_all), np.array(eff_all), gpu_name


def step_mfu(
    model: ModelSpec,
    gpu: GpuSpec,
    curve: GemmCurve,
    kappa: float,
    attn_inf: float,
    attn_half: float,
    seq_tokens: float,
    degree: int,
) -> float:
    """MFU of one sequence sharded over ``degree`` ranks, communication ignored."""
    tokens = seq_tokens / degree
    shard_sq = degree * tokens * tokens
    linear_s = (
        6.0
        * non_embedding_params(model)
        * tokens
        / (gpu.peak_flops * kappa * curve.efficiency(tokens))
    )
    call = 2.0 * model.hidden * tokens * tokens
    attn_eff = attn_inf * call / (call + attn_half)
    attn_s = 6.0 * model.layers * model.hidden * shard_sq / (gpu.peak_flops * kappa * attn_eff)
    flops = float(training_flops(model, seq_tokens)) / degree
    return flops / ((linear_s + attn_s) * gpu.peak_flops)


def fit_training_calibration() -> TrainingCalibration:
    """Fit the efficiency curves from the shipped Vidur, LLMServingSim and Llama 3 figures."""
    gemm = {}
    for gpu_name, (tokens, eff) in sorted(gemm_points().items()):
        eta_inf, half, power, mape = fit_hill(tokens, eff)
        gemm[gpu_name] = GemmCurve(gpu_name, eta_inf, half, power, mape, int(tokens.size))
    gpu = get_gpu(LLAMA3_GPU)
    curve = gemm[gpu.calibrated_as]
    flops, eff, _ = attention_points()

    def fit_attention(attn_inf: float) -> tuple[float, float]:
        # W_half from each point is W (eta_inf / eta - 1); the median is robust to launch noise.
        halves = flops * np.maximum(attn_inf / eff - 1.0, 1e-9)
        half = float(np.median(halves))
        pred = attn_inf * flops / (flops + half)
        return half, 100.0 * float(np.mean(np.abs(pred / eff - 1.0)))

    # kappa and rho are coupled only weakly (attention is 4% of the FLOPs at 8K for 405B), so a
    # few rounds of alternating one-dimensional solves converge.
    kappa, rho = LLAMA3_MFU_8K / curve.eta_inf, 0.7
    for _ in range(30):
        attn_inf = rho * curve.eta_inf
        half, _ = fit_attention(attn_inf)
        mfu_8k = step_mfu(LLAMA3_405B, gpu, curve, 1.0, attn_inf, half, 8192.0, 1)
        kappa = LLAMA3_MFU_8K / mfu_8k
        low, high = 0.05, 2.0
        for _ in range(60):  # bisection: MFU at 131K rises with rho
            mid = 0.5 * (low + high)
            mfu = step_mfu(LLAMA3_405B, gpu, curve, kappa, mid * curve.eta_inf, half, 131072.0, 16)
            low, high = (mid, high) if mfu < LLAMA3_MFU_131K_CP16 else (low, mid)
        rho = 0.5 * (low + high)
    attn_inf = rho * curve.eta_inf
    half, attn_mape = fit_attention(attn_inf)
    return TrainingCalibration(
        gemm=gemm,
        kappa=kappa,
        rho=rho,
        attn_half_flops=half,
        attn_mape_pct=attn_mape,
        attn_points=int(flops.size),
        llama3_mfu_8k_pred=step_mfu(LLAMA3_405B, gpu, curve, kappa, attn_inf, half, 8192.0, 1),
        llama3_mfu_131k_pred=step_mfu(LLAMA3_405B, gpu, curve, kappa, attn_inf, half, 131072.0, 16),
    )


def training_table_json(calibration: TrainingCalibration) -> str:
    """The shipped table's text for ``calibration`` (strict JSON, floats exact)."""
    payload = {"about": TABLE_ABOUT, "calibration": calibration.to_dict()}
    return dumps_strict(payload, indent=1) + "\n"


def derive_training_table(path: str | Path = TABLE_PATH) -> TrainingCalibration:
    """Refit the curves and write them as the table at ``path`` (atomically)."""
    calibration = fit_training_calibration()
    write_text_atomic(path, training_table_json(calibration))
    return calibration


def calibration_report(calibration: TrainingCalibration | None = None) -> str:
    """The fitted constants (default: the shipped ones) and their errors, as text."""
    cal = calibration if calibration is not None else shipped_training_calibration()
    lines = ["GEMM efficiency (forward, all token ops) vs tokens per rank, Hill fit:"]
    for curve in cal.gemm.values():
        lines.append(
            f"  {curve.gpu}: eta_inf={curve.eta_inf:.3f} half={curve.half_tokens:.0f} tokens "
            f"power={curve.power:.2f}  MAPE {curve.mape_pct:.1f}% on {curve.points} Vidur points"
        )
    lines.append(
        f"training overhead kappa={cal.kappa:.3f}; attention/GEMM asymptote rho={cal.rho:.3f}; "
        f"attention W_half={cal.attn_half_flops:.3g} FLOPs (MAPE {cal.attn_mape_pct:.1f}% on "
        f"{cal.attn_points} LLMServingSim prefill points)"
    )
    lines.append(
        f"Llama 3 405B on H100: MFU at 8K {cal.llama3_mfu_8k_pred:.3f} (reported "
        f"{LLAMA3_MFU_8K}); at 131K CP16 {cal.llama3_mfu_131k_pred:.3f} (reported "
        f"{LLAMA3_MFU_131K_CP16})"
    )
    for name in ("A100-SXM-80GB", "H100-SXM-80GB"):
        gpu = get_gpu(name)
        for same in (True, False):
            err = LinkTable(gpu, same).max_grid_error()
            where = "NVLink" if same else "network"
            lines.append(f"  send/recv grid vs network module, {name} {where}: max error {err:.2%}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    derive_training_table()
    print(f"wrote {TABLE_PATH}")
