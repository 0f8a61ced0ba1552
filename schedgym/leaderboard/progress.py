"""A per-episode progress bar with an ETA, on stderr.

On a terminal it redraws one line; elsewhere (a log file, CI) it prints a line at most every
``log_interval_s`` seconds and at the end, so logs show progress without thousands of lines.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Counts finished episodes out of ``total``; the ETA is the mean pace so far."""

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        width: int = 28,
        log_interval_s: float = 10.0,
    ) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.log_interval_s = log_interval_s
        self.started_s = time.monotonic()
        self.last_log_s = -float("inf")
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, label: str = "") -> str:
        """The progress line for the current count."""
        elapsed_s = time.monotonic() - self.started_s
        fraction = self.done / self.total if self.total else 1.0
        filled = round(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        if self.done and self.done < self.total:
            eta = format_duration(elapsed_s / self.done * (self.total - self.done))
        else:
            eta = "0:00" if self.done >= self.total else "?"
        return (
            f"[{bar}] {self.done}/{self.total} episodes {fraction:4.0%} "
            f"elapsed {format_duration(elapsed_s)} ETA {eta}  {label}"
        ).rstrip()

    def advance(self, label: str = "") -> None:
        """One more episode finished (``label`` names it)."""
        self.done += 1
        now = time.monotonic()
        if self.interactive:
            self.stream.write("\r\x1b[2K" + self.line(label))
            if self.done >= self.total:
                self.stream.write("\n")
        elif self.done >= self.total or now - self.last_log_s >= self.log_interval_s:
            self.stream.write(self.line(label) + "\n")
            self.last_log_s = now
        self.stream.flush()

    def start(self, message: str) -> None:
        """Print ``message`` and the empty bar."""
        self.stream.write(message + "\n")
        if self.total == 0:
            self.stream.write("nothing to run: every episode is already in the rows file\n")
        self.stream.flush()
