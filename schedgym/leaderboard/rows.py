"""The rows file: one strict-JSON line per episode, appended atomically, read back tolerantly.

Each row is written with a single ``write`` of one whole line on a file opened for appending,
then flushed to disk, so a run killed at any moment leaves every finished episode on disk and at
most one unterminated line at the end. Reading drops such a line (and ``--resume`` cuts it off
before appending), and rows are keyed by (suite, version, environment, scenario, seed, policy),
so a resumed run neither loses nor repeats an episode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import dumps_strict
from schedgym.leaderboard.episode import row_key

ROWS_FILE = "rows.jsonl"


def rows_path(out_dir: str | Path) -> Path:
    """Where the rows of a results folder live."""
    return Path(out_dir) / ROWS_FILE


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every complete row of ``path`` in file order (a torn last line is ignored).

    Raises:
        ConfigError: when a complete line in the middle of the file is not a JSON row.
    """
    return [row for _, row in iter_rows(path)]


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for each complete row of ``path``."""
    file = Path(path)
    if not file.exists():
        return
    text = file.read_text(encoding="utf-8")
    lines = text.split("\n")
    # Everything after the last newline is a line a killed run did not finish.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{file}: line {number} is not a JSON row ({error.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{file}: line {number} is not a JSON object")
        yield number, row


def drop_torn_tail(path: str | Path) -> int:
    """Cut an unterminated last line off ``path``; return how many bytes were dropped."""
    file = Path(path)
    if not file.exists():
        return 0
    data = file.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
        return 0
    with open(file, "r+b") as stream:
        stream.truncate(keep)
        stream.flush()
        os.fsync(stream.fileno())
    return len(data) - keep


class RowWriter:
    """Appends rows to a rows file, one atomic line each, skipping keys already present."""

    def __init__(self, path: str | Path, existing: list[dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.keys = {row_key(row) for row in existing or []}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, row: dict[str, Any]) -> bool:
        """Write ``row`` unless its key is already in the file; True if written."""
        key = row_key(row)
        if key in self.keys:
            return False
        line = (dumps_strict(row, separators=(",", ":")) + "\n").encode("utf-8")
        written = os.write(self._fd, line)
        if written != len(line):  # a full disk: fail loudly rather than leave half a row
            raise OSError(f"{self.path}: wrote {written} of {len(line)} bytes of a row")
        os.fsync(self._fd)
        self.keys.add(key)
        return True

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
