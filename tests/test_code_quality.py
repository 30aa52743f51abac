"""The code-quality gate, part of every test run so a change that breaks it does not land: ruff and mypy
clean, no module in app/ over 800 lines, no import cycle in app/, and app/core free of Qt (read statically and
imported)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
MAX_MODULE_LINES = 800
# Top-level names of the Qt bindings; PyQt5, PyQt6 and any later PyQt share the prefix.
QT_PREFIXES = ("PySide6", "PyQt", "shiboken")


def test_ruff_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "app", "tests", "installers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "app", "tests", "installers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Reading the import graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One import statement's target, as an absolute dotted name."""

    target: str
    line: int
    type_checking_only: bool


def modules_under(package_dir: Path) -> dict[str, Path]:
    """Every module of a package tree by dotted name; a package's name stands for its __init__.py."""
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    """Collects imports at every level (module, function, try block), marking the type-checker-only ones."""

    def __init__(self, module: str, is_package: bool, known: Collection[str]) -> None:
        self.imports: list[Import] = []
        self._package = module.split(".") if is_package else module.split(".")[:-1]
        self._known = known
        self._type_checking_only = False

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        outer = self._type_checking_only
        self._type_checking_only = True
        for statement in node.body:
            self.visit(statement)
        self._type_checking_only = outer
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self._package[: len(self._package) - (node.level - 1)]
            base = ".".join([*package, node.module] if node.module else package)
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self._known else base, node.lineno)

    def _add(self, target: str, line: int) -> None:
        self.imports.append(Import(target, line, self._type_checking_only))


def imports_of(module: str, path: Path, known: Collection[str]) -> list[Import]:
    """The imports in one module's source, relative ones resolved against its package."""
    collector = _ImportCollector(module, path.name == "__init__.py", known)
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return collector.imports


def _nearest_module(target: str, known: Collection[str]) -> str | None:
    parts = target.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or None


def import_graph(modules: Mapping[str, Path]) -> dict[str, dict[str, int]]:
    """Module -> the modules of the same tree it imports at run time, each with the line of its first import.

    The edge goes to the module named: importing `a.b.c` also runs `a` and `a.b` first, but a package's
    __init__ that imports its own submodules is a normal pattern, not a cycle, so parents are not edges.
    """
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for found in imports_of(module, path, modules):
            target = _nearest_module(found.target, modules)
            if target is not None and target != module and not found.type_checking_only:
                edges.setdefault(target, found.line)
        graph[module] = edges
    return graph


def strongly_connected_components(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm: groups of nodes where each reaches every other; each group sorted."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                lowlink[node] = min(lowlink[node], lowlink[successor])
            elif successor in on_stack:
                lowlink[node] = min(lowlink[node], index[successor])
        if lowlink[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def shortest_cycle_through(start: str, graph: Mapping[str, Iterable[str]]) -> list[str]:
    """The shortest path start -> ... -> start (breadth first), or [] when start is on no cycle."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph.get(node, ())):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    return []


def cyclic_groups(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The groups of two or more nodes that reach one another: each holds at least one cycle."""
    return sorted(component for component in strongly_connected_components(graph) if len(component) > 1)


# --- The checks on app/ -------------------------------------------------------------------------------------


def test_no_module_is_over_800_lines() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in modules_under(APP).values()
    }
    too_long = sorted(
        ((lines, name) for name, lines in sizes.items() if lines > MAX_MODULE_LINES), reverse=True
    )
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them):\n" + "\n".join(
        f"  {name}: {lines} lines" for lines, name in too_long
    )


def test_no_import_cycle_in_app() -> None:
    modules = modules_under(APP)
    graph = import_graph(modules)
    report = []
    for group in cyclic_groups(graph):
        members = set(group)
        report.append(
            "cycle: "
            + " -> ".join(shortest_cycle_through(group[0], graph))
            + "\n"
            + "\n".join(
                f"    {modules[module].relative_to(ROOT).as_posix()}:{line} imports {target}"
                for module in group
                for target, line in sorted(graph[module].items())
                if target in members
            )
        )
    assert not report, (
        "import cycles in app/ (imports under `if TYPE_CHECKING:` do not count):\n" + "\n".join(report)
    )


def test_core_imports_no_qt_in_its_source() -> None:
    # Imports under TYPE_CHECKING count here: core must not even describe itself in Qt's types.
    modules = {
        name: path
        for name, path in modules_under(APP).items()
        if name == "app.core" or name.startswith("app.core.")
    }
    assert "app.core.errors" in modules  # the walk found core
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}:{found.line} imports {found.target}"
        for name, path in modules.items()
        for found in imports_of(name, path, modules)
        if found.target.startswith(QT_PREFIXES)
    ]
    assert not offenders, "app/core must not import Qt:\n" + "\n".join(offenders)


def test_core_imports_no_qt_at_run_time() -> None:
    code = (
        "import sys, pkgutil, importlib, app.core\n"
        "for m in pkgutil.walk_packages(app.core.__path__, 'app.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "qt = [n for n in sys.modules if n.startswith(('PySide6', 'PyQt', 'shiboken'))]\n"
        "assert not qt, qt\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


# --- The checkers, checked: each must be able to fail -------------------------------------------------------


def test_cycle_finder_on_a_synthetic_graph() -> None:
    graph = {
        "a": ["b"],
        "b": ["c", "e"],
        "c": ["a", "d"],
        "d": [],
        "e": ["f"],
        "f": ["e"],
        "g": ["a"],
    }
    assert sorted(strongly_connected_components(graph)) == [["a", "b", "c"], ["d"], ["e", "f"], ["g"]]
    assert cyclic_groups(graph) == [["a", "b", "c"], ["e", "f"]]
    assert shortest_cycle_through("a", graph) == ["a", "b", "c", "a"]
    assert shortest_cycle_through("e", graph) == ["e", "f", "e"]
    assert shortest_cycle_through("g", graph) == []
    assert cyclic_groups({"a": ["b"], "b": ["c"], "c": []}) == []


def test_import_graph_reads_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from .helpers import tool\n",
        "helpers.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from pkg.sub.deep import Thing\n"
            "else:\n"
            "    import json\n"
        ),
        "sub/__init__.py": "from .. import helpers\n",
        "sub/deep.py": "from pkg import tool\ndef later():\n    from .lazy import go\n",
        "sub/lazy.py": "import pkg.sub.deep\nimport PySide6.QtCore\nfrom pkg import sub\n",
    }
    for name, text in sources.items():
        (package / name).write_text(text, encoding="utf-8")
    modules = modules_under(package)
    assert set(modules) == {"pkg", "pkg.helpers", "pkg.sub", "pkg.sub.deep", "pkg.sub.lazy"}

    graph = import_graph(modules)
    assert graph == {
        "pkg": {"pkg.helpers": 1},
        "pkg.helpers": {},  # the TYPE_CHECKING import does not run
        "pkg.sub": {"pkg.helpers": 1},
        "pkg.sub.deep": {"pkg": 1, "pkg.sub.lazy": 3},  # `tool` is a name in pkg; `.lazy` in a function
        "pkg.sub.lazy": {"pkg.sub.deep": 1, "pkg.sub": 3},  # `sub` is a module of pkg
    }
    assert cyclic_groups(graph) == [["pkg.sub.deep", "pkg.sub.lazy"]]
    lazy_imports = imports_of("pkg.sub.lazy", modules["pkg.sub.lazy"], modules)
    assert [found.target for found in lazy_imports if found.target.startswith(QT_PREFIXES)] == [
        "PySide6.QtCore"
    ]
    helper_imports = imports_of("pkg.helpers", modules["pkg.helpers"], modules)
    assert [(found.target, found.type_checking_only) for found in helper_imports] == [
        ("typing", False),
        ("pkg.sub.deep", True),
        ("json", False),
    ]
