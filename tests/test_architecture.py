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
    """Library code raises plain errors and reports through srprune.progress; only srprune/cli knows click."""
    users = [p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in _modules(pkg) if "click" in _imports(p)]
    assert users and all(u.startswith("srprune/cli/") for u in users), users
