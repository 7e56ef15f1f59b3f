"""The dependency rules of docs/architecture.md, checked on the source: a change that breaks one fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("srprune", "supernet", "compiler", "srcommon")
# package -> the packages of ours it must never import
FORBIDDEN = {"supernet": {"srprune", "compiler"}, "compiler": {"srprune", "supernet"},
             "srcommon": {"srprune", "supernet", "compiler"}, "srprune": set()}


def _imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (at any depth of the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package):
    bad = [(p.relative_to(ROOT).as_posix(), sorted(_imports(p) & FORBIDDEN[package])) for p in _modules(package)]
    assert [b for b in bad if b[1]] == []


def test_click_only_in_the_cli():
    """Library code raises plain errors and reports through srcommon.progress; only srprune/cli knows click."""
    users = [p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in _modules(pkg) if "click" in _imports(p)]
    assert users and all(u.startswith("srprune/cli/") for u in users), users


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """Our modules that `path` imports when it runs (at any depth; `if TYPE_CHECKING:` blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for b in node.body for n in ast.walk(b)}

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(m for m in (ours(a.name) for a in node.names) if m)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # `from pkg import submodule` imports the submodule, `from mod import name` mod
                sub = f"{node.module}.{a.name}"
                m = sub if sub in modules else ours(node.module)
                if m:
                    out.add(m)
    return out


def test_no_import_cycles():
    """Modules form a DAG (docs/architecture.md): a cycle means two ideas that cannot be understood apart."""
    files = {}
    for pkg in PACKAGES:
        for p in _modules(pkg):
            parts = p.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {m: _runtime_imports(p, set(files)) - {m} for m, p in files.items()}
    # a package imports what its __init__ imports; a module importing its own package's __init__ is the parent
    # being initialised first, not a dependency
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []
