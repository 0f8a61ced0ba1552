"""Compact, portable action traces: the integer actions of one episode, zlib-compressed.

A trace is stored in a row as ``{"encoding": ..., "count": n, "data": base64}``: the actions as
little-endian int32, deflated. A SoCDAG episode of 4000 decisions takes a few kilobytes.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from schedgym.core.errors import TraceError

ENCODING = "int32-le+zlib+base64"


def encode_actions(actions: Sequence[int]) -> dict[str, Any]:
    """The trace of ``actions`` (integers that fit in int32)."""
    array = np.asarray(actions, dtype=np.int64)
    if array.size and (
        array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max
    ):
        raise TraceError("actions: every action must fit in int32")
    raw = array.astype("<i4").tobytes()
    data = base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    return {"encoding": ENCODING, "count": int(array.size), "data": data}


def decode_actions(trace: Any) -> list[int]:
    """The actions stored in ``trace``; raises TraceError when it is malformed."""
    if not isinstance(trace, dict) or trace.get("encoding") != ENCODING:
        raise TraceError(f"actions: expected a trace with encoding {ENCODING!r}")
    try:
        raw = zlib.decompress(base64.b64decode(trace["data"], validate=True))
    except (KeyError, ValueError, zlib.error) as error:
        raise TraceError(f"actions: cannot decode the trace ({error})") from None
    actions = np.frombuffer(raw, dtype="<i4")
    if actions.size != trace.get("count"):
        raise TraceError(
            f"actions: the trace holds {actions.size} actions, its count says {trace.get('count')}"
        )
    return [int(a) for a in actions]
