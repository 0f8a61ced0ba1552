"""Errors raised across schedgym.

Every error names the offending field or action so that a user sees what to fix without reading a
traceback. The CLI turns them into one line on stderr and exit code 2.
"""

from __future__ import annotations


class SchedGymError(Exception):
    """Base class of every error schedgym raises on purpose."""


class ConfigError(SchedGymError, ValueError):
    """A configuration field (or CLI argument) has a value outside its allowed range.

    The message always starts with the field name, e.g. ``job_rate_per_ms: must be in [0, 1000],
    got -1``.
    """


class InvalidActionError(SchedGymError, ValueError):
    """An action that the current action mask forbids, or outside the action space."""


class TraceError(ConfigError):
    """A workload trace file is malformed; the message names the file and line."""
