"""The recipe logic's import graph, read from the source (function-level imports included):
wings import downward only, no module imports itself through a circle, and every name is
imported from the module that defines it, so no module is a re-export hub."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from recipe_runs import ROOT

PACKAGE = "invariance_recipes"
# A wing may import the wings before it in this order, never those after it.
WINGS = ("common", "run", "measure", "compare", "publish", "benchmarks")


def recipe_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the recipe logic."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = recipe_modules()


@cache
def tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text())


def imported(module: str) -> list[tuple[str, str | None]]:
    """(module, name) for each import in ``module``, ``name`` None for ``import x.y``."""
    found = []
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, None) if sub in MODULES else (node.module, alias.name))
    return [(m, n) for m, n in found if m in MODULES]


def defined_names(module: str) -> set[str]:
    """Names a module binds itself (definitions and assignments), not the ones it imports."""
    names = set()
    for node in tree(module).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_wings_import_downward_only(module: str) -> None:
    here = wing(module)
    if here is None:
        return
    upward = [
        target
        for target, _ in imported(module)
        if wing(target) is not None and WINGS.index(wing(target)) > WINGS.index(here)
    ]
    assert not upward, f"{module} ({here}) imports a later wing: {upward}"


def test_no_import_circle() -> None:
    graph = {m: {t for t, _ in imported(m) if t != m} for m in MODULES}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        if node in path:
            circle = (*path[path.index(node) :], node)
            pytest.fail("import circle: " + " -> ".join(circle))
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, (*path, node))
        done.add(node)

    for module in sorted(graph):
        visit(module, ())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_names_come_from_their_defining_module(module: str) -> None:
    relayed = [
        f"{name} from {target}"
        for target, name in imported(module)
        if name is not None
        and MODULES[target].name != "__init__.py"
        and name not in defined_names(target)
    ]
    assert not relayed, f"{module} imports names its source only re-exports: {relayed}"


def test_package_inits_of_the_wings_define_nothing() -> None:
    inits = [m for m, p in MODULES.items() if p.name == "__init__.py" and wing(m)]
    for module in inits:
        body = [n for n in tree(module).body if not isinstance(n, ast.Expr)]
        assert not body, f"{module}/__init__.py should hold a docstring only"
