"""Fitting the roofline efficiency coefficients to measured profiles, and held-out error reports.

The fit minimises squared log error (relative error, so the 1-token and the 4096-token points weigh
the same) with a small Levenberg-Marquardt solver in numpy. Every fifth distinct token count (or KV
length, for attention) is held out of the fit and used only for the reported error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from schedgym.costmodels.calibration.profiles import (
    ALL_TOKEN_OPS,
    AttentionCurve,
    OperatorCurve,
    ProfileSet,
    holdout_mask,
)
from schedgym.costmodels.coefficients import Calibration
from schedgym.costmodels.hardware import GpuSpec
from schedgym.costmodels.roofline import (
    GROUPS,
    LINEAR_OPS,
    RooflineCoefficients,
    decode_attention_time_s,
    op_work,
    prefill_attention_time_s,
    token_op_time_s,
)

FloatArray = NDArray[np.float64]
ATTENTION_OPS = ("attn_prefill", "attn_decode")
# Starting points; the fit works in log space so every coefficient stays positive.
_INITIAL = {
    "compute_eff": 0.6,
    "memory_eff": 0.6,
    "floor_s": 5e-6,
    "sharpness": 3.0,
    "cta_latency_s": 2e-6,
    "rows_per_sm": 1.0,
}


def levenberg_marquardt(
    residuals: Callable[[FloatArray], FloatArray], start: FloatArray, iterations: int = 200
) -> FloatArray:
    """Minimises ``sum(residuals(x)**2)`` from ``start`` (forward-difference Jacobian).

    Args:
        residuals: maps a parameter vector to a residual vector.
        start: initial parameters.
        iterations: maximum accepted steps.

    Returns:
        The parameters with the lowest cost found.
    """
    params = np.asarray(start, dtype=float).copy()
    current = residuals(params)
    cost = float(current @ current)
    damping = 1e-2
    for _ in range(iterations):
        jacobian = np.empty((current.size, params.size))
        for index in range(params.size):
            shifted = params.copy()
            shifted[index] += 1e-6
            jacobian[:, index] = (residuals(shifted) - current) / 1e-6
        normal = jacobian.T @ jacobian
        gradient = jacobian.T @ current
        improved = False
        while damping < 1e12:
            lhs = normal + damping * (np.diag(np.diag(normal)) + 1e-9 * np.eye(params.size))
            step = np.linalg.solve(lhs, -gradient)
            candidate = params + step
            trial = residuals(candidate)
            trial_cost = float(trial @ trial)
            if np.isfinite(trial_cost) and trial_cost < cost:
                relative_gain = (cost - trial_cost) / max(cost, 1e-300)
                params, current, cost = candidate, trial, trial_cost
                damping = max(damping * 0.3, 1e-9)
                improved = relative_gain > 1e-10
                break
            damping *= 10.0
        if not improved:
            break
    return params


def _coefficients_from(names: tuple[str, ...], log_values: FloatArray) -> RooflineCoefficients:
    values = dict(_INITIAL)
    values["compute_eff"] = 1.0  # unused terms are neutral
    values["rows_per_sm"] = 0.0
    for name, log_value in zip(names, log_values, strict=True):
        values[name] = float(np.exp(np.clip(log_value, -60.0, 6.0)))
    if "sharpness" not in names:
        values["sharpness"] = 4.0
    return RooflineCoefficients(**values)


def _fit(
    names: tuple[str, ...],
    predict: Callable[[RooflineCoefficients], FloatArray],
    measured_s: FloatArray,
) -> RooflineCoefficients:
    """Fits the named coefficients so that ``predict`` matches ``measured_s`` in log space."""
    keep = np.isfinite(measured_s) & (measured_s > 0)
    log_measured = np.log(measured_s[keep])

    def residuals(log_values: FloatArray) -> FloatArray:
        coeffs = _coefficients_from(names, log_values)
        if coeffs.sharpness < 1.0:
            return np.full(log_measured.size, 1e3)
        return np.log(np.maximum(predict(coeffs)[keep], 1e-30)) - log_measured

    best: FloatArray | None = None
    best_cost = np.inf
    for sharpness in (1.5, 3.0, 8.0):  # the knee's shape has local minima: try a few
        start = np.log([sharpness if n == "sharpness" else _INITIAL[n] for n in names])
        solution = levenberg_marquardt(residuals, start)
        final = residuals(solution)
        if float(final @ final) < best_cost:
            best, best_cost = solution, float(final @ final)
        if "sharpness" not in names:
            break
    assert best is not None
    return _coefficients_from(names, best)


def _token_names(op: str) -> tuple[str, ...]:
    if op in LINEAR_OPS:
        return ("compute_eff", "memory_eff", "floor_s", "sharpness")
    if op == "emb":
        return ("memory_eff", "floor_s")
    return ("memory_eff", "floor_s", "sharpness", "rows_per_sm")


def _operator_predictor(
    curves: list[OperatorCurve], masks: list[NDArray[np.bool_]], op: str, gpu: GpuSpec
) -> Callable[[RooflineCoefficients], FloatArray]:
    work = [
        op_work(curve.model, curve.tp, op, curve.num_tokens[mask])
        for curve, mask in zip(curves, masks, strict=True)
    ]
    flops = np.concatenate([w[0] for w in work])
    moved = np.concatenate([w[1] for w in work])
    tokens = np.concatenate([c.num_tokens[m] for c, m in zip(curves, masks, strict=True)])
    return lambda coeffs: token_op_time_s(gpu, coeffs, flops, moved, tokens)


def predict_attention(
    curve: AttentionCurve, gpu: GpuSpec, coeffs: RooflineCoefficients, mask: Any = None
) -> FloatArray:
    """Predicted times (s) of the rows of an attention curve."""
    select = slice(None) if mask is None else mask
    if curve.phase == "prefill":
        return prefill_attention_time_s(
            curve.model, curve.tp, gpu, coeffs, curve.chunk_tokens[select], curve.kv_tokens[select]
        )
    return decode_attention_time_s(
        curve.model, curve.tp, gpu, coeffs, curve.batch_size[select], curve.kv_tokens[select]
    )


def _attention_key(curve: AttentionCurve) -> FloatArray:
    return curve.kv_tokens


def fit_calibration(
    profiles: ProfileSet,
    holdout: bool = True,
    models: Iterable[str] | None = None,
) -> Calibration:
    """Fits every operator's coefficients per device.

    Args:
        profiles: measured curves.
        holdout: leave every fifth token count (KV length for attention) out of the fit.
        models: fit only on curves of these model names (for cross-model checks).
    """
    allowed = None if models is None else set(models)
    calibration = Calibration()
    devices = sorted({c.gpu for c in profiles.operators} | {c.gpu for c in profiles.attention})
    for device in devices:
        gpu = profiles.gpu(device)
        fitted: dict[str, RooflineCoefficients] = {}
        curves = [
            c
            for c in profiles.operators
            if c.gpu == device and (allowed is None or c.model.name in allowed)
        ]
        if curves:
            masks = [
                ~holdout_mask(c.num_tokens) if holdout else np.ones(c.num_tokens.size, bool)
                for c in curves
            ]
            for op in ALL_TOKEN_OPS:
                measured = np.concatenate(
                    [c.times_s[op][m] for c, m in zip(curves, masks, strict=True)]
                )
                if not np.isfinite(measured).any():
                    continue
                predictor = _operator_predictor(curves, masks, op, gpu)
                fitted[op] = _fit(_token_names(op), predictor, measured)
        for phase in ("prefill", "decode"):
            attention = [
                c
                for c in profiles.attention
                if c.gpu == device
                and c.phase == phase
                and (allowed is None or c.model.name in allowed)
            ]
            if not attention:
                continue
            masks = [
                ~holdout_mask(_attention_key(c)) if holdout else np.ones(c.kv_tokens.size, bool)
                for c in attention
            ]
            measured = np.concatenate([c.times_s[m] for c, m in zip(attention, masks, strict=True)])

            def predictor(
                coeffs: RooflineCoefficients,
                attention: list[AttentionCurve] = attention,
                masks: list[Any] = masks,
                gpu: GpuSpec = gpu,
            ) -> FloatArray:
                return np.concatenate(
                    [
                        predict_attention(c, gpu, coeffs, m)
                        for c, m in zip(attention, masks, strict=True)
                    ]
                )

            names = (
                ("compute_eff", "memory_eff", "floor_s", "sharpness")
                if phase == "prefill"
                else ("memory_eff", "floor_s", "sharpness", "cta_latency_s")
            )
            fitted[f"attn_{phase}"] = _fit(names, predictor, measured)
        calibration.devices[device] = fitted
    calibration.default = _geometric_default(calibration.devices)
    return calibration


def _geometric_default(
    devices: dict[str, dict[str, RooflineCoefficients]],
) -> dict[str, RooflineCoefficients]:
    default: dict[str, RooflineCoefficients] = {}
    for op in (*ALL_TOKEN_OPS, *ATTENTION_OPS):
        found = [ops[op] for ops in devices.values() if op in ops]
        if not found:
            continue
        values = {
            name: float(np.exp(np.mean([np.log(getattr(c, name) or 1e-30) for c in found])))
            for name in _INITIAL
        }
        default[op] = RooflineCoefficients(**values)
    return default


@dataclass(frozen=True)
class ErrorRow:
    """Held-out error of one (device, model, operator group)."""

    gpu: str
    model: str
    group: str
    points: int
    mape_pct: float
    max_ape_pct: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return {
            "gpu": self.gpu,
            "model": self.model,
            "group": self.group,
            "points": self.points,
            "mape_pct": round(self.mape_pct, 2),
            "max_ape_pct": round(self.max_ape_pct, 2),
        }


def _ape(predicted: FloatArray, measured: FloatArray) -> FloatArray:
    keep = np.isfinite(measured) & (measured > 0)
    return np.abs(predicted[keep] / measured[keep] - 1.0) * 100.0


def error_report(
    calibration: Calibration, profiles: ProfileSet, held_out_only: bool = True
) -> list[ErrorRow]:
    """Error of every operator group per (device, model) on the held-out points.

    A group's time is the sum of its operators' times (what an iteration pays), compared with the
    sum of the measured times of the same operators.
    """
    rows: list[ErrorRow] = []
    per_key: dict[tuple[str, str, str], list[FloatArray]] = {}
    for curve in profiles.operators:
        gpu = profiles.gpu(curve.gpu)
        coeffs = calibration.for_device(curve.gpu)
        mask = (
            holdout_mask(curve.num_tokens)
            if held_out_only
            else np.ones(curve.num_tokens.size, bool)
        )
        for group, ops in GROUPS.items():
            present = [
                op for op in ops if op in curve.times_s and np.isfinite(curve.times_s[op]).any()
            ]
            if not present or group.startswith("attn"):
                continue
            measured = sum(curve.times_s[op][mask] for op in present)
            tokens = curve.num_tokens[mask]
            predicted = sum(
                token_op_time_s(
                    gpu, coeffs[op], *op_work(curve.model, curve.tp, op, tokens), tokens
                )
                for op in present
            )
            key = (curve.gpu, curve.model.name, group)
            per_key.setdefault(key, []).append(_ape(np.asarray(predicted), np.asarray(measured)))
    for attention in profiles.attention:
        gpu = profiles.gpu(attention.gpu)
        coeffs = calibration.for_device(attention.gpu)
        held = holdout_mask(_attention_key(attention))
        select = held if held_out_only else np.ones_like(held)
        predicted = predict_attention(attention, gpu, coeffs[f"attn_{attention.phase}"], select)
        key = (attention.gpu, attention.model.name, f"attn_{attention.phase}")
        per_key.setdefault(key, []).append(_ape(predicted, attention.times_s[select]))
    for (gpu_name, model_name, group), chunks in sorted(per_key.items()):
        errors = np.concatenate(chunks)
        if errors.size:
            rows.append(
                ErrorRow(
                    gpu_name,
                    model_name,
                    group,
                    int(errors.size),
                    float(errors.mean()),
                    float(errors.max()),
                )
            )
    return rows


def save_calibration(calibration: Calibration, path: str | Path) -> None:
    """Writes a calibration as JSON (strict, atomically)."""
    from schedgym.core.jsonio import write_text_atomic

    write_text_atomic(path, calibration.to_json() + "\n")
