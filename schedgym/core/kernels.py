"""Numeric kernels held to one instruction set, so published numbers do not depend on the CPU.

numpy, OpenBLAS and torch pick their SIMD kernels per CPU at import (AVX-512 where there is
some, and OpenBLAS one of several per CPU family). Those kernels round differently in the last
bit, and an episode whose decisions feed back into what it computes amplifies that:
OnlineDataGen's surrogate (numpy matrix products) ended 0.8% apart on two AVX-512 CPUs whose
OpenBLAS picked different kernels, and the quick leaderboard's OnlineDataGen score read 6.32x on
an AMD EPYC and 6.36x on an Intel Xeon. Held to their AVX2 kernels (environment variables read at
import, so only a new process is affected), every x86-64 CPU with AVX2 computes the same
episodes. Used by the shipped checkpoints' reproducibility checks and by the ``schedgym``
commands that publish numbers (``leaderboard``, ``validate``, ``evaluate``, ``capacity``).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence

# numpy's AVX-512 dispatch targets (numpy 2.x names; naming one the CPU lacks is harmless).
_NUMPY_AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"
# Set to 1 to run the commands with the CPU's own kernels (faster on some CPUs; numbers may
# then differ in the last bits from other machines').
NATIVE_KERNELS_VARIABLE = "SCHEDGYM_NATIVE_KERNELS"


def pinned_kernel_environment() -> dict[str, str]:
    """Environment variables holding numpy, OpenBLAS and torch to their AVX2 kernels, or none
    where that cannot be done (not x86-64, or a CPU without AVX2, where OpenBLAS's Haswell
    kernels would not run). They take effect in a new process only."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # another numpy layout: leave the kernels alone
        return {}
    if not __cpu_features__.get("AVX2", False):
        return {}
    return {
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": _NUMPY_AVX512_TARGETS,
        "ATEN_CPU_CAPABILITY": "avx2",
    }


def kernels_pinned() -> bool:
    """Whether this process started with :func:`pinned_kernel_environment` (or none applies)."""
    return all(os.environ.get(k) == v for k, v in pinned_kernel_environment().items())


def kernel_set() -> str:
    """What numeric kernels this process runs: ``"avx2"`` when held to them by
    :func:`pinned_kernel_environment`, ``"native"`` when the CPU's own apply (opted out, called
    through the Python API, or nothing to pin). Recorded with published numbers: rows computed
    under different kernel sets may differ in the last bits."""
    pins = pinned_kernel_environment()
    return "avx2" if pins and kernels_pinned() else "native"


def reexec_pinned(module: str, argv: Sequence[str]) -> None:
    """Replace this process with ``python -m module argv...`` under the pinned kernels, unless
    it already runs under them, none apply, the user asked for native kernels, or the platform
    cannot replace a process in place (then it returns and the caller runs as it is).

    ``os.execve`` keeps the process id, so signals (Ctrl-C, a scheduler's SIGTERM) reach the
    command as before and no parent is left waiting.
    """
    if os.environ.get(NATIVE_KERNELS_VARIABLE) == "1" or os.name != "posix" or kernels_pinned():
        return
    environment = {**os.environ, **pinned_kernel_environment()}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], environment)


if __name__ == "__main__":  # `python -m schedgym.core.kernels`: how this process's kernels stand
    import json

    print(
        json.dumps(
            {
                "pinned": kernels_pinned(),
                "kernels": kernel_set(),
                "variables": pinned_kernel_environment(),
            }
        )
    )
