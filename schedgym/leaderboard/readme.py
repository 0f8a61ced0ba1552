"""Rewrite the generated leaderboard section of a README between two marker comments.

The README's quick-suite table is never typed: ``schedgym leaderboard --readme README.md`` puts
the summary of the run between ``<!-- leaderboard:start -->`` and ``<!-- leaderboard:end -->``.
"""

from __future__ import annotations

from pathlib import Path

from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import write_text_atomic

START = "<!-- leaderboard:start -->"
END = "<!-- leaderboard:end -->"


def replace_section(text: str, generated: str) -> str:
    """``text`` with everything between the markers replaced by ``generated``."""
    start = text.find(START)
    end = text.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"--readme: the file needs the markers {START} ... {END}, in order")
    return text[: start + len(START)] + "\n" + generated.strip() + "\n" + text[end:]


def update_readme(path: str | Path, generated: str) -> None:
    """Rewrite the marked section of the README at ``path`` (atomically)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--readme: {file} is not a file")
    write_text_atomic(file, replace_section(file.read_text(encoding="utf-8"), generated))
