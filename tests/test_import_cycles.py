"""No two modules of the package import each other at module level, directly or through a longer cycle.

A cycle makes the import order matter: whichever module is imported first sees the other half
initialised, and a name it needs at import time is missing (an ImportError that appears only
for some entry points). Read from the sources with ast: imports inside functions are lazy and do
not count, nor those under ``if TYPE_CHECKING:`` (never run). Importing ``a.b.c`` also runs the
packages ``a.b`` and ``a`` first, unless the importer is inside them already.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "azure_agent_mcp"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
    return name == "TYPE_CHECKING"


def _eager_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (class bodies run; functions do not)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _eager_imports(node.orelse)
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            nested = getattr(node, field, None)
            if isinstance(nested, list):
                yield from _eager_imports([n for n in nested if isinstance(n, ast.AST)])  # type: ignore[misc]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the package's modules it imports at module level."""
    paths = {_module_name(root, p): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _eager_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in paths}
                continue
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in paths:  # `from pkg import submodule`
                    targets.add(f"{source}.{alias.name}")
                elif source in paths:
                    targets.add(source)
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        for target in list(targets):
            parts = target.split(".")
            targets |= {p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in paths and p not in ancestors}
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(graph: dict[str, set[str]], component: list[str]) -> str:
    members = set(component)
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & members))}" for m in component)


def test_the_package_has_no_import_cycle():
    graph = import_graph(SRC, PACKAGE)
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300, "the graph was read"
    found = cycles(graph)
    assert not found, "module-level import cycles (move the shared type below both users): " + " | ".join(
        _describe(graph, c) for c in found)


# -- the check itself sees what it must, and only that -------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in {"pkg/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return import_graph(tmp_path, "pkg")


@pytest.mark.parametrize("files", [
    {"pkg/a.py": "from pkg.b import B\nA = 1\n", "pkg/b.py": "from pkg.a import A\nB = 2\n"},
    {"pkg/a.py": "import pkg.b\n", "pkg/b.py": "from pkg import c\n", "pkg/c.py": "from . import a\n"},
    {"pkg/a.py": "try:\n    from .b import x\nexcept ImportError:\n    x = None\n", "pkg/b.py": "from .a import x\n"},
    {"pkg/a.py": "class A:\n    from pkg.b import B\n", "pkg/b.py": "from pkg.a import A\n"},
    {"pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    from pkg.b import B\n",
     "pkg/b.py": "from pkg.a import A\n"},
    {"pkg/sub/__init__.py": "from pkg.sub.x import X\n", "pkg/sub/x.py": "from pkg.y import Y\nX = 1\n",
     "pkg/y.py": "from pkg.sub.z import Z\nY = 1\n", "pkg/sub/z.py": "Z = 1\n"},  # through the package sub
])
def test_a_cycle_is_found(tmp_path, files):
    assert cycles(_package(tmp_path, files))


@pytest.mark.parametrize("files", [
    {"pkg/a.py": "from pkg.b import B\n", "pkg/b.py": "def f():\n    from pkg.a import A\n"},
    {"pkg/a.py": "from pkg.b import B\n", "pkg/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import A\n"},
    {"pkg/a.py": "from pkg.b import B\n", "pkg/b.py": "async def f():\n    import pkg.a\n"},
    {"pkg/sub/__init__.py": "from pkg.sub.x import X\n", "pkg/sub/x.py": "from pkg.sub.z import Z\nX = 1\n",
     "pkg/sub/z.py": "Z = 1\n"},  # a submodule importing a sibling: its package is already running
])
def test_lazy_and_type_only_imports_are_no_cycle(tmp_path, files):
    graph = _package(tmp_path, files)
    assert sum(map(len, graph.values())) >= 1 and not cycles(graph)
