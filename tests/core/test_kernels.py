"""The commands that publish numbers re-execute themselves under the pinned numeric kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from schedgym.cli import build_parser
from schedgym.core.kernels import (
    NATIVE_KERNELS_VARIABLE,
    kernel_set,
    kernels_pinned,
    pinned_kernel_environment,
)

PINNED = pinned_kernel_environment()
needs_pinning = pytest.mark.skipif(
    not PINNED or os.name != "posix", reason="no kernels to pin on this machine"
)
# Re-execute under the pins, then report how the kernels stand in the (new) process; with the
# re-execution skipped, the script goes on and prints a marker instead.
SCRIPT = (
    "from schedgym.core.kernels import reexec_pinned\n"
    "reexec_pinned('schedgym.core.kernels', [])\n"
    "print('not re-executed')\n"
)


def _unpinned_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in PINNED}
    environment.pop(NATIVE_KERNELS_VARIABLE, None)
    return {**environment, **extra}


def _run(environment: dict[str, str]) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=environment, capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


@needs_pinning
def test_reexec_pins_the_kernels() -> None:
    report = json.loads(_run(_unpinned_environment()))
    assert report == {"pinned": True, "kernels": "avx2", "variables": PINNED}


@needs_pinning
def test_native_kernels_variable_skips_the_reexec() -> None:
    assert _run(_unpinned_environment(**{NATIVE_KERNELS_VARIABLE: "1"})) == "not re-executed"


@needs_pinning
def test_already_pinned_process_is_not_reexecuted() -> None:
    assert _run({**_unpinned_environment(), **PINNED}) == "not re-executed"


@pytest.mark.parametrize(
    ("argv", "pinned"),
    [
        (["leaderboard"], True),
        (["validate", "results"], True),
        (["evaluate", "SoCDAG-v0", "--policy", "fcfs"], True),
        (["capacity", "PrefillChunk-v0", "--policy", "vllm", "--slo-tbt-p99", "0.1"], True),
        (["train", "SoCDAG-v0"], False),
        (["list"], False),
    ],
)
def test_commands_publishing_numbers_ask_for_pinned_kernels(argv: list[str], pinned: bool) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, "pin_kernels", False) is pinned


def test_kernel_set_names_what_this_process_runs() -> None:
    assert kernel_set() == ("avx2" if PINNED and kernels_pinned() else "native")
