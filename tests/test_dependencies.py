"""Every third-party module that app/ imports is declared in pyproject.toml's dependencies, and no private module
of a dependency is imported: an undeclared import works here only because something else pulled it in."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"


def imported_top_level_modules() -> dict[str, str]:
    """Each absolute top-level module imported anywhere in app/, with one place that imports it."""
    found: dict[str, str] = {}
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def imported_modules() -> dict[str, str]:
    """Each absolute dotted module name imported in app/, with one place that imports it."""
    found: dict[str, str] = {}
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.setdefault(alias.name, f"{path.relative_to(ROOT)}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.setdefault(node.module, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements() -> dict[str, str]:
    """Distribution name (normalized) -> its requirement line, from [project] dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared: dict[str, str] = {}
    for requirement in project["dependencies"]:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        declared[normalize(match.group(0))] = requirement
    return declared


def test_every_third_party_import_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    declared = declared_requirements()
    third_party = {
        module: where
        for module, where in imported_top_level_modules().items()
        if module != "app" and module not in sys.stdlib_module_names and module != "__future__"
    }
    print(f"third-party modules imported by app/: {sorted(third_party)}")
    assert "llama_cpp" in third_party  # the walk found the imports at all
    undeclared = []
    for module, where in sorted(third_party.items()):
        providers = {normalize(d) for d in distributions.get(module, [])}
        assert providers, f"{module} (imported at {where}) is not installed by any distribution"
        if not providers & declared.keys():
            undeclared.append(f"{module} (imported at {where}, from {sorted(providers)})")
    assert not undeclared, "imported but not in pyproject.toml dependencies: " + ", ".join(undeclared)


def test_declared_floors_are_satisfied_by_what_is_installed_and_tested() -> None:
    """A floor the installed version does not reach, or one of an older major version than the one installed
    (whose APIs the code may not have), is a floor nobody tested."""
    too_low = []
    for name, requirement in declared_requirements().items():
        floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", requirement)
        if floor is None:
            continue
        installed = importlib.metadata.version(name)
        floor_major, installed_major = int(floor.group(1).split(".")[0]), int(installed.split(".")[0])
        print(f"{name}: floor {floor.group(1)}, installed {installed}")
        if floor_major != installed_major:
            too_low.append(f"{requirement} (installed and tested: {installed})")
    assert not too_low, "floors of another major version than the one tested: " + ", ".join(too_low)


def test_no_private_module_of_a_dependency_is_imported() -> None:
    private = [
        f"{module} at {where}"
        for module, where in imported_modules().items()
        if module.split(".")[0] != "app" and any(part.startswith("_") for part in module.split(".")[1:])
    ]
    assert not private, "private modules of dependencies imported: " + ", ".join(private)
