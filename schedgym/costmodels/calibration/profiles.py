"""Reading operator and attention profiles (the shipped tables or a ``schedgym profile`` output).

Two CSV layouts, shared by the shipped data and the profiler:

- ``operator_profiles.csv``: one row per (device, model, tp, num_tokens) with the median time in
  milliseconds of every token-level operator of one layer (Vidur's operator names), plus the
  embedding (once per model).
- ``attention_profiles.csv``: one row per measured attention call of one layer: ``phase`` prefill
  (one chunk of ``chunk_tokens`` with ``kv_tokens`` already cached) or decode (``batch_size``
  single-token queries whose KV lengths sum to ``kv_tokens``), time in milliseconds.

A directory may also hold ``device.json`` with the roofline figures of a device that is not in the
catalogue (the profiler writes one, measured, for the CPU or an unknown GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from schedgym.core.errors import ConfigError
from schedgym.core.textfiles import iter_csv, parse_number, read_json
from schedgym.costmodels.hardware import GpuSpec, ModelSpec, get_gpu, get_model
from schedgym.costmodels.roofline import TOKEN_OPS

OPERATOR_FILE = "operator_profiles.csv"
ATTENTION_FILE = "attention_profiles.csv"
DEVICE_FILE = "device.json"
ALL_TOKEN_OPS = ("emb", *TOKEN_OPS)
# The columns that say whose measurement a row is (both tables start with them).
PROFILE_KEY_COLUMNS = ("source", "gpu", "model", "n_embd", "n_head", "n_kv_head")
OPERATOR_COLUMNS = (
    *PROFILE_KEY_COLUMNS,
    "n_expanded_embd",
    "tp",
    "num_tokens",
    *(f"{op}_ms" for op in ALL_TOKEN_OPS),
)
ATTENTION_COLUMNS = (
    *PROFILE_KEY_COLUMNS,
    "tp",
    "phase",
    "batch_size",
    "chunk_tokens",
    "kv_tokens",
    "time_ms",
)


@dataclass
class OperatorCurve:
    """Times of every token-level operator of one (device, model, tp) against token count."""

    source: str
    gpu: str
    model: ModelSpec
    tp: int
    num_tokens: NDArray[np.float64]  # shape [n]
    times_s: dict[str, NDArray[np.float64]]  # op -> shape [n]; NaN where not measured


@dataclass
class AttentionCurve:
    """Attention measurements of one (device, model, tp, phase)."""

    source: str
    gpu: str
    model: ModelSpec
    tp: int
    phase: str
    batch_size: NDArray[np.float64]  # shape [n]
    chunk_tokens: NDArray[np.float64]  # shape [n]
    kv_tokens: NDArray[np.float64]  # shape [n]
    times_s: NDArray[np.float64]  # shape [n]


@dataclass
class ProfileSet:
    """Every curve of a profile directory, plus figures of devices outside the catalogue."""

    operators: list[OperatorCurve] = field(default_factory=list)
    attention: list[AttentionCurve] = field(default_factory=list)
    devices: dict[str, GpuSpec] = field(default_factory=dict)

    def gpu(self, name: str) -> GpuSpec:
        """Figures of a device: the profile's own ``device.json`` first, then the catalogue."""
        return self.devices[name] if name in self.devices else get_gpu(name)


def _model_from_row(row: dict[str, str], path: str) -> ModelSpec:
    """The catalogue model when the name is known (for layers and vocab), else from columns."""
    hidden, heads, kv_heads = int(row["n_embd"]), int(row["n_head"]), int(row["n_kv_head"])
    ffn = int(row.get("n_expanded_embd") or 4 * hidden)
    try:
        known = get_model(row["model"])
    except ConfigError:
        known = None
    if known and (known.hidden, known.heads, known.kv_heads) == (hidden, heads, kv_heads):
        return known
    if hidden <= 0 or heads <= 0 or kv_heads <= 0 or hidden % heads:
        raise ConfigError(f"n_head: {path}: bad shape hidden={hidden} heads={heads}")
    params = 12.0 * hidden * hidden  # one layer's order of magnitude; unused by the fit
    return ModelSpec(row["model"], 1, hidden, heads, kv_heads, ffn, 32000, params / 1e9)


# Ranges of the numeric columns (inclusive): (low, high, integer, blank allowed). Times are in
# milliseconds; a blank time means "not measured". The bounds are far beyond any real layer and
# keep every derived quantity finite.
_MAX_WIDTH = 10_000_000
_MAX_TOKENS = 10_000_000_000
_MAX_TIME_MS = 1e7
_NUMERIC_COLUMNS: dict[str, tuple[float, float, bool, bool]] = {
    "n_embd": (1, _MAX_WIDTH, True, False),
    "n_head": (1, _MAX_WIDTH, True, False),
    "n_kv_head": (1, _MAX_WIDTH, True, False),
    "n_expanded_embd": (1, _MAX_WIDTH, True, True),
    "tp": (1, 1024, True, False),
    "num_tokens": (1, _MAX_TOKENS, True, False),
    "batch_size": (0, _MAX_TOKENS, True, False),
    "chunk_tokens": (0, _MAX_TOKENS, True, False),
    "kv_tokens": (0, _MAX_TOKENS, True, False),
    "time_ms": (0.0, _MAX_TIME_MS, False, False),
    **{f"{op}_ms": (0.0, _MAX_TIME_MS, False, True) for op in ALL_TOKEN_OPS},
}
# Longest name in a text column (source, gpu, model, phase).
_MAX_NAME_CHARS = 200


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a profile CSV as dicts, every numeric cell checked (see _NUMERIC_COLUMNS)."""
    rows = iter_csv(path, label="profiles: ")
    header_row = next(rows, None)
    header = [name.strip() for name in header_row[1]] if header_row else []
    missing = [name for name in required if name not in header]
    if missing:
        raise ConfigError(f"{missing[0]}: column missing from {path}, line 1")
    records = []
    for line, cells in rows:
        if not cells or all(not cell.strip() for cell in cells):
            continue
        where = f"profiles: {path}, line {line}"
        if len(cells) != len(header):
            raise ConfigError(f"{where}: expected {len(header)} columns, got {len(cells)}")
        record = dict(zip(header, (cell.strip() for cell in cells), strict=True))
        for name in required:
            value = record[name]
            if name in _NUMERIC_COLUMNS:
                low, high, integer, blank_ok = _NUMERIC_COLUMNS[name]
                if not (blank_ok and value == ""):
                    number = parse_number(value, name, where, low, high, integer=integer)
                    if integer:  # "4096.0" and "4.096e3" become "4096" for int() below
                        record[name] = str(int(number))
            elif not 0 < len(value) <= _MAX_NAME_CHARS:
                raise ConfigError(
                    f"{where}: {name} must be 1 to {_MAX_NAME_CHARS} characters, got {len(value)}"
                )
        records.append(record)
    return records


def _read_devices(path: Path) -> dict[str, GpuSpec]:
    """The ``device.json`` of a profile folder: name -> GpuSpec figures, checked."""
    raw = read_json(path, "profiles")
    if not isinstance(raw, dict):
        raise ConfigError(f"profiles: {path}: must map device names to their figures")
    numbers = (
        *("peak_flops", "hbm_bytes", "hbm_bytes_per_s", "nvlink_bytes_per_s"),
        *("internode_bytes_per_s", "pcie_bytes_per_s", "sm_count"),
    )
    devices = {}
    for name, figures in raw.items():
        where = f"profiles: {path}: device {name[:_MAX_NAME_CHARS]!r}"
        if not isinstance(figures, dict) or set(figures) - {*numbers, "calibration_name"}:
            raise ConfigError(f"{where}: must be an object with the keys {list(numbers)}")
        for key in numbers:
            value = figures.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0 <= value <= 1e30):
                raise ConfigError(f"{where}: {key} must be in [0, 1e30], got {value!r}")
        if not isinstance(figures.get("calibration_name", ""), str):
            raise ConfigError(f"{where}: calibration_name must be a string")
        devices[name] = GpuSpec(name=name, **{**figures, "sm_count": int(figures["sm_count"])})
    return devices


def _float(value: str) -> float:
    return float(value) if value not in ("", None) else float("nan")


def _group_rows(rows: list[dict[str, str]], keys: tuple[str, ...]) -> dict[tuple, list]:
    groups: dict[tuple, list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    return groups


def load_profiles(directory: str | Path | None = None) -> ProfileSet:
    """Loads the profiles of a directory, or the shipped ones when ``directory`` is None.

    Raises:
        ConfigError: ``profiles: ...`` when the directory holds no profile, or ``<column>: ...``
            when a file lacks a required column.
    """
    profiles = ProfileSet()
    if directory is None:
        base = resources.files("schedgym.costmodels").joinpath("data")
        operator_path = Path(str(base.joinpath(OPERATOR_FILE)))
        attention_path = Path(str(base.joinpath(ATTENTION_FILE)))
        device_path = None
    else:
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(f"profiles: {root} is not a directory")
        operator_path, attention_path = root / OPERATOR_FILE, root / ATTENTION_FILE
        device_path = root / DEVICE_FILE
        if not operator_path.exists() and not attention_path.exists():
            raise ConfigError(f"profiles: neither {OPERATOR_FILE} nor {ATTENTION_FILE} in {root}")
    if device_path is not None and device_path.exists():
        profiles.devices.update(_read_devices(device_path))
    if operator_path.exists():
        rows = _read_rows(operator_path, OPERATOR_COLUMNS)
        for (source, gpu, _, tp), group in _group_rows(
            rows, ("source", "gpu", "model", "tp")
        ).items():
            model = _model_from_row(group[0], str(operator_path))
            tokens = np.array([_float(r["num_tokens"]) for r in group])
            times = {
                op: np.array([_float(r[f"{op}_ms"]) * 1e-3 for r in group]) for op in ALL_TOKEN_OPS
            }
            order = np.argsort(tokens, kind="stable")
            profiles.operators.append(
                OperatorCurve(
                    source,
                    gpu,
                    model,
                    int(tp),
                    tokens[order],
                    {op: values[order] for op, values in times.items()},
                )
            )
    if attention_path.exists():
        rows = _read_rows(attention_path, ATTENTION_COLUMNS)
        for (source, gpu, _, tp, phase), group in _group_rows(
            rows, ("source", "gpu", "model", "tp", "phase")
        ).items():
            if phase not in ("prefill", "decode"):
                raise ConfigError(f"phase: must be prefill or decode, got {phase!r}")
            columns = {
                name: np.array([_float(r[name]) for r in group])
                for name in ("batch_size", "chunk_tokens", "kv_tokens", "time_ms")
            }
            profiles.attention.append(
                AttentionCurve(
                    source,
                    gpu,
                    _model_from_row(group[0], str(attention_path)),
                    int(tp),
                    phase,
                    columns["batch_size"],
                    columns["chunk_tokens"],
                    columns["kv_tokens"],
                    columns["time_ms"] * 1e-3,
                )
            )
    return profiles


def holdout_mask(keys: NDArray[np.float64], every: int = 5) -> NDArray[np.bool_]:
    """Marks every ``every``-th distinct key (in sorted order) as held out from the fit."""
    distinct = np.unique(keys)
    held = distinct[every - 1 :: every]
    return np.isin(keys, held)
