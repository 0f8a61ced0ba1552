"""Run the environment's numpy work on one BLAS thread.

The surrogate's matrices are small (tens to hundreds of rows), where OpenBLAS's worker threads
cost more than they save: on a busy 2-core machine an episode of the ``small`` preset took 20 s with
OpenBLAS's default threads and 1.8 s with one. One thread is also the cost table's convention (the
simulated trainer's speedup is modelled, not measured). The thread count is process-wide state of
OpenBLAS, so it is set to 1 only while the simulator computes and restored afterwards.

Best effort: without an OpenBLAS that numpy loaded (another BLAS, or no ``/proc/self/maps``), this
does nothing and the BLAS's own threading applies (``OMP_NUM_THREADS=1`` then has the same effect).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable, Iterator

# Imported for its side effect: numpy's OpenBLAS must be loaded before it can be found.
import numpy as np  # noqa: F401

# (setter, getter) symbol names, the scipy-openblas wheels' first.
_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


@functools.lru_cache(maxsize=1)
def _openblas_threads() -> tuple[Callable[[int], None], Callable[[], int]] | None:
    """The loaded OpenBLAS's thread setter and getter, if there is one."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted(
                {
                    line.split()[-1]
                    for line in maps
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")
                }
            )
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for setter_name, getter_name in _SYMBOLS:
            if hasattr(library, setter_name) and hasattr(library, getter_name):
                setter = getattr(library, setter_name)
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                getter = getattr(library, getter_name)
                getter.argtypes = []
                getter.restype = ctypes.c_int
                return setter, getter
    return None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within the block, OpenBLAS uses one thread; its previous setting is restored after."""
    handles = _openblas_threads()
    if handles is None:
        yield
        return
    setter, getter = handles
    before = int(getter())
    if before == 1:
        yield
        return
    setter(1)
    try:
        yield
    finally:
        setter(before)
