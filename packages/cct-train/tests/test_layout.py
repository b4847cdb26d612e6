"""The package's shape (issue #16): no import cycle among cct_train's modules, no private name imported
from another module, and the pre-#16 module paths still the very same modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cct_train"

#: Module paths from before the restructuring: aliases of the moved modules (see each file's docstring).
MOVED = {
    "cct_train.trainer": "cct_train.engine.trainer",
    "cct_train.model": "cct_train.models.cct",
    "cct_train.multidomain": "cct_train.models.multidomain",
    "cct_train.encoders": "cct_train.models.encoders",
    "cct_train.decoders": "cct_train.models.decoders",
    "cct_train.checkpoint": "cct_train.common.checkpoint",
    "cct_train.machine": "cct_train.engine.machine",
    "cct_train.data_setup": "cct_train.data.setup",
    "cct_train.evaluate": "cct_train.eval.evaluate",
    "cct_train.inference": "cct_train.eval.inference",
    "cct_train.bench": "cct_train.tools.bench",
    "cct_train.cli_common": "cct_train.cli.common",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_imports(tree: ast.AST, type_checking: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (function-level ones too), except under ``if TYPE_CHECKING:``
    (those too with ``type_checking``)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if not type_checking and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _graph(type_checking: bool = False) -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for name, path in modules.items():
        if name in MOVED or _is_alias(path):
            continue  # an alias of its new module, imported by nobody in the package (asserted below)
        for node in _runtime_imports(ast.parse(path.read_text()), type_checking):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif node.module and node.level == 0:
                targets = [(node.module, alias.name) for alias in node.names]
            for module, imported in targets:
                if not module.startswith("cct_train"):
                    continue
                full = f"{module}.{imported}" if imported and f"{module}.{imported}" in modules else module
                if full in modules and full != name:
                    graph[name].add(full)
                if imported and imported.startswith("_") and full == module and module != name:
                    private.append(f"{name}: from {module} import {imported}")
    return graph, private


def _is_alias(path: Path) -> bool:
    return "sys.modules[__name__] = _moved" in path.read_text()


@pytest.mark.parametrize("type_checking", [False, True], ids=["runtime", "type-checking-too"])
def test_no_import_cycle_among_cct_train_modules(type_checking: bool) -> None:
    graph, _ = _graph(type_checking)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_modules() -> None:
    _, private = _graph()
    assert private == []


def test_the_package_imports_no_old_module_path() -> None:
    graph, _ = _graph()
    aliases = {name for name, path in _modules().items() if _is_alias(path)}
    assert aliases >= set(MOVED)
    users = sorted(f"{name} -> {dep}" for name, deps in graph.items() for dep in deps if dep in aliases)
    assert users == []


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_module_paths_are_the_moved_modules(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)


#: The sub-packages from the bottom up: each imports only those before it (and the small packages).
LAYERS = (
    "common",
    "config",
    "objectives",
    "models",
    "data",
    "eval",
    "engine",
    "weak",
    "study",
    "tools",
    "cli",
)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


@pytest.mark.parametrize("type_checking", [False, True], ids=["runtime", "type-checking-too"])
def test_each_sub_package_imports_only_the_ones_below_it(type_checking: bool) -> None:
    graph, _ = _graph(type_checking)
    assert {_layer(name) for name in graph} - {None} == set(LAYERS)
    upward = sorted(
        f"{name} -> {dep}"
        for name, deps in graph.items()
        for dep in deps
        if (a := _layer(name)) and (b := _layer(dep)) and LAYERS.index(b) > LAYERS.index(a)
    )
    assert upward == []
