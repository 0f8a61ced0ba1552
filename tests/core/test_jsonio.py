"""Strict atomic JSON and the output-folder check."""

import json
import math
import os

import numpy as np
import pytest

from schedgym.core.errors import ConfigError
from schedgym.core.jsonio import dumps_strict, require_writable_dir, write_json_atomic


def _strict_loads(text: str):
    def reject(token: str):
        raise ValueError(f"non-strict token {token}")

    return json.loads(text, parse_constant=reject)


def test_non_finite_values_become_null_and_numpy_becomes_plain():
    payload = {"a": math.nan, "b": [np.float64(np.inf), np.int64(3)], "c": np.array([1.5, np.nan])}
    assert _strict_loads(dumps_strict(payload)) == {"a": None, "b": [None, 3], "c": [1.5, None]}


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"x": 1})
    write_json_atomic(target, {"x": float("nan")})
    assert _strict_loads(target.read_text()) == {"x": None}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_writable_dir_checks(tmp_path):
    assert require_writable_dir(tmp_path / "new" / "deeper").is_dir()
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"--out: .* not a folder"):
        require_writable_dir(a_file)
    with pytest.raises(ConfigError, match=r"--out: .*not a folder"):
        require_writable_dir("/dev/null")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            require_writable_dir(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_folder_on_read_only_filesystem_is_refused():
    # /proc refuses new files even to root, which CI runs as.
    with pytest.raises(ConfigError, match="not writable"):
        require_writable_dir("/proc")


def test_atomic_write_gives_plain_open_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "shared.json", {"x": 1})
    finally:
        os.umask(umask)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644
