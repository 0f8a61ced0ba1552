"""Request traces: CSV files with one request per row, replayed as recorded.

Format (a header row, then one row per request)::

    arrived_at,num_prefill_tokens,num_decode_tokens
    0.0,374,44

``arrived_at`` is seconds from the trace start (non-decreasing), the token counts positive
integers. Other columns are ignored. A malformed row raises :class:`TraceError` naming the file
and the line. The shipped Azure conversation trace (``data/azure_conv_trace.csv``, one hour,
19,366 requests; licence in ``data/NOTICE``) is :func:`azure_conv_trace`.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from schedgym.core.errors import TraceError

TRACE_COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")


@dataclass(frozen=True)
class Trace:
    """A replayable request trace; all arrays have shape ``(num_requests,)``."""

    name: str
    arrived_at_s: np.ndarray  # float64, non-decreasing, seconds
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1

    @property
    def num_requests(self) -> int:
        return int(self.arrived_at_s.size)

    @property
    def duration_s(self) -> float:
        """Time of the last arrival, seconds."""
        return float(self.arrived_at_s[-1]) if self.arrived_at_s.size else 0.0


def _positive_int(text: str, column: str, where: str) -> int:
    try:
        number = float(text)
    except ValueError:
        raise TraceError(f"{where}: {column} must be a number, got {text!r}") from None
    if not math.isfinite(number) or number < 1 or number != int(number):
        raise TraceError(f"{where}: {column} must be a positive integer, got {text!r}")
    return int(number)


def read_trace_csv(path: str | os.PathLike[str], name: str | None = None) -> Trace:
    """Read and validate a trace CSV.

    Raises:
        TraceError: the file is missing, lacks a column, or a row is malformed (the message
            names the file and the line number, 1-based, the header being line 1).
    """
    path = os.fspath(path)
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise TraceError(f"trace: cannot read {path}: {exc.strerror}") from None
    arrived: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}, line 1: empty file; expected a header {TRACE_COLUMNS}")
        header = [column.strip() for column in header]
        missing = [column for column in TRACE_COLUMNS if column not in header]
        if missing:
            raise TraceError(f"{path}, line 1: missing column(s) {missing}; header is {header}")
        i_at, i_p, i_d = (header.index(column) for column in TRACE_COLUMNS)
        width = max(i_at, i_p, i_d) + 1
        previous = -math.inf
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path}, line {line}"
            if len(row) < width:
                raise TraceError(f"{where}: expected {len(header)} columns, got {len(row)}")
            try:
                at = float(row[i_at])
            except ValueError:
                raise TraceError(
                    f"{where}: arrived_at must be a number, got {row[i_at]!r}"
                ) from None
            if not math.isfinite(at) or at < 0:
                raise TraceError(f"{where}: arrived_at must be finite and >= 0, got {row[i_at]!r}")
            if at < previous:
                raise TraceError(
                    f"{where}: arrived_at {at} is earlier than the previous row's {previous}"
                )
            previous = at
            arrived.append(at)
            prompts.append(_positive_int(row[i_p], "num_prefill_tokens", where))
            outputs.append(_positive_int(row[i_d], "num_decode_tokens", where))
    if not arrived:
        raise TraceError(f"{path}, line 2: the trace has no requests")
    return Trace(
        name or os.path.basename(path),
        np.array(arrived, np.float64),
        np.array(prompts, np.int64),
        np.array(outputs, np.int64),
    )


def write_trace_csv(path: str | os.PathLike[str], trace: Trace) -> None:
    """Write ``trace`` in the format :func:`read_trace_csv` reads."""
    with open(os.fspath(path), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACE_COLUMNS)
        for at, prompt, output in zip(
            trace.arrived_at_s.tolist(),
            trace.prompt_tokens.tolist(),
            trace.output_tokens.tolist(),
            strict=True,
        ):
            writer.writerow((repr(at), prompt, output))


@lru_cache(maxsize=1)
def azure_conv_trace() -> Trace:
    """The shipped Azure LLM conversation trace (2023): one hour, 19,366 requests."""
    ref = resources.files("schedgym.workloads").joinpath("data/azure_conv_trace.csv")
    with resources.as_file(ref) as file:
        trace = read_trace_csv(file, name="azure_conv")
    for array in (trace.arrived_at_s, trace.prompt_tokens, trace.output_tokens):
        array.setflags(write=False)
    return trace


SHIPPED_TRACES = {"azure_conv": azure_conv_trace}
