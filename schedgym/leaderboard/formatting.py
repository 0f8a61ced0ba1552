"""Numbers for people: three significant digits, a unit scaled to the value, and tables that
render to both Markdown and HTML from one description."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

# Time units and their size in seconds, smallest first.
TIME_UNITS = (("µs", 1e-6), ("ms", 1e-3), ("s", 1.0))
UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def sig3(value: float | None) -> str:
    """``value`` with three significant digits (scientific outside [1e-3, 1e4)); '—' if None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if -3 <= exponent < 4:
        rounded = round(value, 2 - exponent)
        decimals = max(0, 2 - exponent)
        # Rounding can carry into a new digit (999.6 -> 1000): re-derive the decimals.
        if rounded != 0 and math.floor(math.log10(abs(rounded))) != exponent:
            decimals = max(0, decimals - 1)
        return f"{rounded:.{decimals}f}"
    return f"{value:.2e}"


def time_scale(value: float | None, unit: str) -> tuple[str, float]:
    """The display unit for ``value`` given in ``unit`` and the factor to convert to it."""
    if unit not in UNIT_SECONDS:
        return unit, 1.0
    if value is None or not math.isfinite(value) or value == 0:
        return unit, 1.0
    seconds = abs(value) * UNIT_SECONDS[unit]
    chosen = TIME_UNITS[0]
    for name, size in TIME_UNITS:
        if seconds >= size:
            chosen = (name, size)
    return chosen[0], UNIT_SECONDS[unit] / chosen[1]


def quantity(value: float | None, unit: str, scale_from: float | None = None) -> str:
    """``value`` in ``unit`` with three significant digits and a readable unit ("812 µs")."""
    shown, factor = time_scale(scale_from if scale_from is not None else value, unit)
    text = sig3(None if value is None else value * factor)
    return f"{text} {shown}" if shown and text != "—" else text


def interval(
    low: float | None, high: float | None, unit: str, scale_from: float | None = None
) -> str:
    """``[low, high]`` in the unit chosen for ``scale_from`` (the mean it brackets)."""
    if low is None or high is None:
        return ""
    _, factor = time_scale(scale_from if scale_from is not None else low, unit)
    return f"[{sig3(low * factor)}, {sig3(high * factor)}]"


def score_text(score: float | None, low: float | None, high: float | None) -> str:
    """A normalised score with its interval: ``1.23× [1.10, 1.35]``."""
    if score is None:
        return "—"
    text = f"{sig3(score)}×"
    if low is not None and high is not None:
        text += f" [{sig3(low)}, {sig3(high)}]"
    return text


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    """A titled table with an optional caption, rendered as Markdown or HTML."""

    title: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""

    def markdown(self, level: int = 2) -> str:
        lines = [f"{'#' * level} {self.title}", ""]
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "---|" * len(self.header))
        for row in self.rows:
            cells = [f"**{c.text}**" if c.bold and c.text else c.text for c in row]
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
        return "\n".join(lines) + "\n"

    def html(self, level: int = 2) -> str:
        parts = [f"<h{level}>{html.escape(self.title)}</h{level}>"]
        if self.caption:
            parts.append(f"<p>{html.escape(self.caption)}</p>")
        parts.append("<table><thead><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in self.header]
        parts.append("</tr></thead><tbody>")
        for row in self.rows:
            cells = [
                f"<td><b>{html.escape(c.text)}</b></td>"
                if c.bold
                else f"<td>{html.escape(c.text)}</td>"
                for c in row
            ]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
        return "\n".join(parts)
