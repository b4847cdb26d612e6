"""The package's shape (issues #16, #42): no import cycle among cct_train's modules (imports under
``if TYPE_CHECKING:`` included), each sub-package importing only those below it, no private name imported from
another module, and no module at the package root besides ``__init__``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cct_train"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(tree: ast.AST, *, type_checking: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (function-level ones too); those under ``if TYPE_CHECKING:``
    only with ``type_checking`` (a cycle through them is still a cycle for a reader and for mypy, and the
    late-import tricks that hide one at run time are what this test exists to catch)."""
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


def _graph(*, type_checking: bool = False) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the cct_train modules it imports (at run time; ``type_checking``: also for the type checker
    only), and the private names imported from another module."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for name, path in modules.items():
        for node in _imports(ast.parse(path.read_text()), type_checking=type_checking):
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


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles a depth-first walk meets (each as ``[a, b, ..., a]``)."""
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
    return cycles


def test_no_import_cycle_among_cct_train_modules() -> None:
    cycles = _cycles(_graph(type_checking=True)[0])
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_imports_under_type_checking() -> None:
    """A cycle closed only by an ``if TYPE_CHECKING:`` import is found (the case of issue #42)."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cct_train.b import B\n")

    def modules(type_checking: bool) -> list[str | None]:
        return [
            n.module for n in _imports(tree, type_checking=type_checking) if isinstance(n, ast.ImportFrom)
        ]

    assert modules(type_checking=False) == ["typing"]
    assert modules(type_checking=True) == ["typing", "cct_train.b"]
    assert _cycles({"cct_train.a": {"cct_train.b"}, "cct_train.b": {"cct_train.a"}}) == [
        ["cct_train.a", "cct_train.b", "cct_train.a"]
    ]


def test_no_private_name_is_imported_across_modules() -> None:
    _, private = _graph(type_checking=True)
    assert private == []


def test_the_package_root_holds_only_its_init_and_the_sub_packages() -> None:
    """The 22 alias modules of the pre-0.3 paths (``cct_train.trainer`` ...) are gone (0.4, issue #42): every
    module has one import path, inside its sub-package."""
    files = sorted(p.name for p in PACKAGE.iterdir() if p.is_file())
    assert files == ["__init__.py", "py.typed"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert packages == sorted(LAYERS)


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
    graph, _ = _graph(type_checking=type_checking)
    assert {_layer(name) for name in graph} - {None} == set(LAYERS)
    upward = sorted(
        f"{name} -> {dep}"
        for name, deps in graph.items()
        for dep in deps
        if (a := _layer(name)) and (b := _layer(dep)) and LAYERS.index(b) > LAYERS.index(a)
    )
    assert upward == []


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's body lines, its docstring left out (the signature and docstring are not what a reader
    has to hold in their head)."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    return 0 if not body else (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def _functions() -> dict[str, int]:
    """``module:qualified name`` -> body lines, for every function and method of cct_train."""
    found: dict[str, int] = {}
    for name, path in _modules().items():

        def visit(node: ast.AST, prefix: str, module: str = name) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{module}:{prefix}{child.name}"] = _body_lines(child)
                    visit(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

        visit(ast.parse(path.read_text()), "")
    return found


def test_no_function_body_is_longer_than_60_lines() -> None:
    """Issue #42: a function a reader can hold at once (six were over 60 lines, the longest 113)."""
    long = {name: n for name, n in _functions().items() if n > 60}
    assert not long, f"function bodies over 60 lines: {long}"


def test_the_training_loop_fits_on_one_screen() -> None:
    functions = _functions()
    assert functions["cct_train.engine.trainer:Trainer._fit"] <= 30
    assert functions["cct_train.engine.trainer:Trainer.fit"] <= 30
