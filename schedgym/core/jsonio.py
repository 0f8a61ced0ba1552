"""Strict, atomic JSON output, and checking an output location before any work starts.

Every file schedgym writes is strict JSON (RFC 8259: no ``NaN`` or ``Infinity`` tokens; a missing
or non-finite value is ``null``) and appears whole or not at all: it is written to a temporary file
in the same folder and renamed over the target, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from schedgym.core.errors import ConfigError


def to_strict(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None and numpy scalars/arrays made plain."""
    if isinstance(value, float | np.floating):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(key): to_strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_strict(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_strict(value.tolist())
    return value


def dumps_strict(payload: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never emits NaN/Infinity (they become null)."""
    return json.dumps(to_strict(payload), allow_nan=False, **kwargs)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.fchmod(handle, 0o666 & ~_current_umask())
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_json_atomic(path: str | Path, payload: Any, indent: int | None = 1) -> None:
    """Write ``payload`` as strict JSON to ``path`` atomically."""
    write_text_atomic(path, dumps_strict(payload, indent=indent) + "\n")


def require_writable_dir(path: str | Path, field: str = "--out", create: bool = True) -> Path:
    """The folder ``path``, created if ``create`` and missing, after checking it can be written.

    Raises:
        ConfigError: naming ``field`` when ``path`` is a file, cannot be created, or is read-only.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{field}: {str(folder)!r} exists and is not a folder")
    if not folder.exists():
        if not create:
            raise ConfigError(f"{field}: folder {str(folder)!r} does not exist")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"{field}: cannot create folder {str(folder)!r} ({error.strerror})"
            ) from None
    try:
        handle, probe = tempfile.mkstemp(prefix=".schedgym-write-check.", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror
        raise ConfigError(f"{field}: folder {str(folder)!r} is not writable ({reason})") from None
    return folder


def require_writable_file(path: str | Path, field: str = "--out") -> Path:
    """The file ``path``, after checking it can be written: not a folder (nor a device such as
    ``/dev/null``), in an existing, writable folder. Nothing is created.

    Raises:
        ConfigError: naming ``field`` and saying what is wrong.
    """
    target = Path(path)
    if target.exists() and not target.is_file():
        raise ConfigError(f"{field}: {str(target)!r} exists and is not a regular file")
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"{field}: folder {str(folder)!r} of {str(target)!r} does not exist")
    require_writable_dir(folder, field, create=False)
    return target
