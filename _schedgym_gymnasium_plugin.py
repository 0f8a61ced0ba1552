"""Registers schedgym's environments with Gymnasium the first time Gymnasium is imported.

Gymnasium 1.x no longer loads ``gymnasium.envs`` entry points, so third-party code that calls
``gymnasium.make("schedgym/SoCDAG-v0")`` without importing schedgym would not find the ids. The
installed ``schedgym-gymnasium-plugin.pth`` imports this tiny module at interpreter start; it only
adds an import hook (no Gymnasium or numpy import happens here), which registers the ids right
after ``gymnasium`` finishes importing. The ``gymnasium.envs`` entry point in pyproject.toml stays
declared for tools that do read entry points.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any


def _register() -> None:
    try:
        from schedgym.registration import register_envs
    except ImportError:  # schedgym itself is mid-import: it registers on its own
        return
    register_envs()


class _GymnasiumImportHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)  # one-shot; also keeps find_spec below from recursing
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _register()

        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Add the hook unless Gymnasium is already imported (then register at once)."""
    if "gymnasium" in sys.modules:
        _register()
    elif not any(isinstance(f, _GymnasiumImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _GymnasiumImportHook())


install()
