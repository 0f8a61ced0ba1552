"""The shape of the package (../shared/ARCHITECTURE.md), checked on the source with ``ast``.

- No module touches another object's underscore names: ``x._name`` only on ``self``/``cls``
  (or on an object of a class the same module defines, e.g. the copy a ``fork()`` builds), no
  ``from a import _b``, no ``getattr(x, "_name")``. When a module needs more, the owner grows a
  public method.
- The layer rule: no import (module-level or lazy) runs back up a layer.
- Only ``agents/`` and ``training/`` import torch (plus the device profiler, which measures the
  local device with torch and imports it inside its functions).
- The runtime cost models never import their calibration (``costmodels/calibration/``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "schedgym"

# Layer of each top-level part of the package; a module may import from its own layer and the
# layers with smaller numbers only. `registration` (and the package's `__init__`, which runs it)
# names the environments and baselines by string only, so it sits with the environments.
LAYERS = {
    "core": 1,
    "costmodels": 2,
    "workloads": 3,
    "serving": 3,
    "envs": 4,
    "registration": 4,
    "__init__": 4,
    "baselines": 5,
    "agents": 6,
    "training": 7,
    "leaderboard": 7,
    "commands": 8,
    "cli": 8,
}
TORCH_PACKAGES = ("torch", "torch_geometric", "stable_baselines3", "sb3_contrib")
# Parts of the package that may import torch, and single modules allowed to (lazily).
TORCH_LAYERS = ("agents", "training")
TORCH_MODULES = {"schedgym.costmodels.calibration.profiler"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> list[tuple[str, Path, ast.Module]]:
    return [
        (_module_name(path), path, ast.parse(path.read_text(), filename=str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def _own_private_names(tree: ast.Module) -> set[str]:
    """Underscore names the module itself defines: functions, classes, methods, class and
    module attributes, ``self._x`` assignments and ``__slots__`` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__slots__":
                        names.update(
                            c.value
                            for c in ast.walk(node.value)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)
                        )
    return {name for name in names if _is_private(name)}


def private_access_violations(tree: ast.Module, where: str) -> list[str]:
    """Every place ``tree`` touches an underscore name it does not own, as ``where:line: code``."""
    own = _own_private_names(tree)
    imported: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                imported.add(alias.asname or alias.name)
                if _is_private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                imported.add((alias.asname or alias.name).split(".")[0])
                if any(_is_private(part) for part in alias.name.split(".")):
                    found.append(f"{where}:{node.lineno}: import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id in ("super", "type")
            ):
                continue  # the object's own class
            from_import = isinstance(value, ast.Name) and value.id in imported
            if node.attr in own and not from_import:
                continue  # an object of a class this module defines (a fork's copy, `other`)
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            target = node.args[0]
            if isinstance(target, ast.Name) and target.id in ("self", "cls"):
                continue
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def _imported_modules(module: str, path: Path, tree: ast.Module) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, lazy ones included."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from schedgym import x` imports the module schedgym.x when x is one.
            out.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return out


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "schedgym":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1] if parts[1] in LAYERS else None


@pytest.mark.parametrize(
    ("code", "flagged"),
    [
        ("def f(sim):\n    return sim._queue\n", True),
        ("def f(sim):\n    sim._queue = []\n", True),
        ("from schedgym.serving.engine import _helper\n", True),
        ("import schedgym.core.rng as r\nr._seed\n", True),
        ("def f(sim):\n    return getattr(sim, '_queue')\n", True),
        ("class A:\n    def f(self):\n        return self._queue\n", False),
        ("class A:\n    def f(self):\n        return self.__class__\n", False),
        # The owner's own class: a fork's copy or the other operand.
        (
            "class A:\n    def __init__(self):\n        self._q = []\n"
            "    def fork(self):\n        out = A()\n        out._q = list(self._q)\n",
            False,
        ),
        # A name the module owns, reached through an imported module: still someone else's.
        ("import other\nclass A:\n    _q = 1\nother._q\n", True),
    ],
)
def test_private_access_checker(code: str, flagged: bool) -> None:
    assert bool(private_access_violations(ast.parse(code), "snippet")) is flagged


def test_no_module_touches_another_objects_underscore_names() -> None:
    found = []
    for _module, path, tree in _sources():
        found.extend(private_access_violations(tree, str(path.relative_to(PACKAGE.parent))))
    assert found == [], "\n".join(found)


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists()) or path.suffix == ".py"
    }
    assert parts == set(LAYERS)


def test_no_import_runs_back_up_a_layer() -> None:
    found = []
    for module, path, tree in _sources():
        source_part = _part(module)
        assert source_part is not None, module
        for line, imported in _imported_modules(module, path, tree):
            target_part = _part(imported)
            if target_part is not None and LAYERS[target_part] > LAYERS[source_part]:
                found.append(f"{module}:{line} imports {imported}")
    assert found == [], "\n".join(found)


def test_only_agents_and_training_import_torch() -> None:
    found = []
    for module, path, tree in _sources():
        if _part(module) in TORCH_LAYERS or module in TORCH_MODULES:
            continue
        for line, imported in _imported_modules(module, path, tree):
            if imported.split(".")[0] in TORCH_PACKAGES:
                found.append(f"{module}:{line} imports {imported}")
    assert found == [], "\n".join(found)


def test_importing_everything_below_agents_does_not_import_torch() -> None:
    modules = [
        module
        for module, _path, _tree in _sources()
        if LAYERS[_part(module) or "cli"] < LAYERS["agents"]
    ]
    code = "import importlib, sys\n"
    code += f"for m in {modules!r}:\n    importlib.import_module(m)\n"
    code += "print(sorted(p for p in " + repr(TORCH_PACKAGES) + " if p in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_runtime_cost_model_does_not_import_its_calibration() -> None:
    code = (
        "import sys\n"
        "import schedgym.costmodels, schedgym.costmodels.inference, schedgym.costmodels.network\n"
        "import schedgym.costmodels.training, schedgym.costmodels.coefficients\n"
        "import schedgym.serving.engine\n"
        "from schedgym.costmodels import get_cost_model, kv_blocks_capacity\n"
        "model = get_cost_model('Llama-2-7B', 'A100', 2, 'sarathi')\n"
        "assert model.time_from_summary_s(4, 4000) > 0\n"
        "assert kv_blocks_capacity('Llama-2-7B', 'A100', 1) > 0\n"
        "from schedgym.costmodels.training import get_training_cost_model\n"
        "training = get_training_cost_model('Llama-2-7B', 'H100')\n"
        "assert training.sequence(32768.0, 8, True).total_s > 0\n"
        "assert training.microbatch_totals_s([4096.0], [4096.0**2], 4, False)[0] > 0\n"
        "assert training.allreduce_s(16) > 0 and training.peak_mfu > 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('schedgym.costmodels.calibration')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
