"""Reading user-supplied text files (CSV tables, small JSON files) defensively.

Every file option (a request trace, a cost table, a profile folder) goes through here, so that any
malformed file ends in one :class:`ConfigError` (or a subclass such as ``TraceError``) naming the
file and the line, never a ``UnicodeDecodeError``, ``csv.Error``, ``OverflowError`` or a runaway
read: lines are read with a bounded length, bytes must be UTF-8 (a leading byte-order mark is
skipped, as spreadsheets write one), numbers must be finite and inside the caller's range.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
from collections.abc import Iterator
from typing import IO, Any

from schedgym.core.errors import ConfigError

# Longest line accepted, bytes. The widest legitimate row (a profile with a dozen numbers) is
# under 300 bytes; 64 KiB leaves room for long names while keeping one line's read bounded.
MAX_LINE_BYTES = 65_536
# Largest JSON file accepted, bytes (the shipped cost table is ~5 KB).
MAX_JSON_BYTES = 1_048_576


def _decoded_lines(
    handle: IO[bytes], where: str, error: type[ConfigError], max_line_bytes: int
) -> Iterator[str]:
    number = 0
    while True:
        raw = handle.readline(max_line_bytes + 1)
        if not raw:
            return
        number += 1
        if len(raw) > max_line_bytes:
            raise error(f"{where}, line {number}: longer than {max_line_bytes} bytes")
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(
                f"{where}, line {number}: not UTF-8 text (byte {raw[exc.start]:#04x} at "
                f"column {exc.start + 1})"
            ) from None


def iter_csv(
    path: str | os.PathLike[str],
    label: str = "",
    error: type[ConfigError] = ConfigError,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, cells)`` for every row of a CSV file, the header first (line 1).

    Args:
        path: the file.
        label: prefix of every message (e.g. ``"profiles: "``); the file and line follow.
        error: the ConfigError subclass raised.
        max_line_bytes: longest line accepted.

    Raises:
        error: the file cannot be opened, a line is too long or not UTF-8, or the CSV is
            malformed; the message names the file and the line.
    """
    where = f"{label}{os.fspath(path)}"
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise error(f"{where}: cannot read ({exc.strerror})") from None
    with handle:
        reader = csv.reader(_decoded_lines(handle, where, error, max_line_bytes))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise error(f"{where}, line {reader.line_num}: malformed CSV ({exc})") from None
            yield reader.line_num, row


def parse_number(
    text: str,
    column: str,
    where: str,
    low: float,
    high: float,
    *,
    integer: bool = False,
    error: type[ConfigError] = ConfigError,
) -> float:
    """``text`` as a finite number in ``[low, high]`` (an integral one if ``integer``).

    Raises:
        error: ``"<where>: <column> must be ..."`` otherwise.
    """
    kind = "an integer" if integer else "a number"
    shown = text if len(text) <= 40 else text[:40] + "..."
    try:
        number = float(text)
    except ValueError:
        raise error(f"{where}: {column} must be {kind}, got {shown!r}") from None
    if not (math.isfinite(number) and low <= number <= high) or (integer and number != int(number)):
        raise error(f"{where}: {column} must be {kind} in [{low:g}, {high:g}], got {shown!r}")
    return number


def read_json(
    path: str | os.PathLike[str],
    label: str,
    max_bytes: int = MAX_JSON_BYTES,
) -> Any:
    """The strict JSON (no NaN/Infinity) in a small UTF-8 file (a byte-order mark is skipped).

    Raises:
        ConfigError: ``"<label>: <path>: ..."`` when the file is unreadable, too large, not
            UTF-8 or not strict JSON (with the line of the problem).
    """
    where = f"{label}: {os.fspath(path)}"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{where}: larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{where}, line {line}: not UTF-8 text") from None

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):  # 1e400 parses as inf
            raise ValueError(f"{literal[:40]} is out of range")
        return value

    try:
        return json.loads(text, parse_constant=reject_constant, parse_float=finite_float)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}, line {exc.lineno}: not JSON ({exc.msg})") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise ConfigError(f"{where}: not strict JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{where}: JSON nested too deeply") from None
