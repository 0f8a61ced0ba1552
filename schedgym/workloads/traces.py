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
from schedgym.core.textfiles import iter_csv, parse_number

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


# Bounds of a trace row: arrivals within ~3 years of the trace start (so that times, even
# compressed or stretched by trace_time_scale, stay finite and meaningful in float32
# observations) and requests of at most ten million tokens each way.
MAX_ARRIVAL_S = 1e8
MAX_REQUEST_TOKENS = 10_000_000


def read_trace_csv(path: str | os.PathLike[str], name: str | None = None) -> Trace:
    """Read and validate a trace CSV (UTF-8; a leading byte-order mark is fine).

    Raises:
        TraceError: the file is missing or unreadable, not UTF-8, lacks a column, has a line
            over 64 KiB, or a row is malformed or out of range (``arrived_at`` in
            ``[0, MAX_ARRIVAL_S]`` and non-decreasing, token counts integers in
            ``[1, MAX_REQUEST_TOKENS]``); the message names the file and the line number,
            1-based, the header being line 1.
    """
    path = os.fspath(path)
    arrived: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    rows = iter_csv(path, error=TraceError)
    header_row = next(rows, None)
    if header_row is None:
        raise TraceError(f"{path}, line 1: empty file; expected a header {TRACE_COLUMNS}")
    header = [column.strip() for column in header_row[1]]
    missing = [column for column in TRACE_COLUMNS if column not in header]
    if missing:
        shown = header if len(str(header)) <= 200 else f"{str(header)[:200]}..."
        raise TraceError(f"{path}, line 1: missing column(s) {missing}; header is {shown}")
    i_at, i_p, i_d = (header.index(column) for column in TRACE_COLUMNS)
    width = max(i_at, i_p, i_d) + 1
    previous = -math.inf
    for line, row in rows:
        if not row or all(not cell.strip() for cell in row):
            continue
        where = f"{path}, line {line}"
        if len(row) < width:
            raise TraceError(f"{where}: expected {len(header)} columns, got {len(row)}")
        at = parse_number(row[i_at], "arrived_at", where, 0.0, MAX_ARRIVAL_S, error=TraceError)
        if at < previous:
            raise TraceError(
                f"{where}: arrived_at {at} is earlier than the previous row's {previous}"
            )
        previous = at
        arrived.append(at)
        for column, index, values in (
            ("num_prefill_tokens", i_p, prompts),
            ("num_decode_tokens", i_d, outputs),
        ):
            tokens = parse_number(
                row[index], column, where, 1, MAX_REQUEST_TOKENS, integer=True, error=TraceError
            )
            values.append(int(tokens))
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


def load_trace_csv(path: str | os.PathLike[str]) -> Trace:
    """:func:`read_trace_csv`, cached while the file is unchanged (same size and modification
    time), with read-only arrays: configs validate a trace and every reset replays it."""
    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read ({exc.strerror})") from None
    return _cached_trace(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _cached_trace(path: str, mtime_ns: int, size_bytes: int) -> Trace:
    trace = read_trace_csv(path)
    for array in (trace.arrived_at_s, trace.prompt_tokens, trace.output_tokens):
        array.setflags(write=False)
    return trace


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
