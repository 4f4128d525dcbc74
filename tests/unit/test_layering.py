"""Imports go one way: schemas <- core <- runtime <- ingest / api <- wattstream. Read from the
source itself, so a stray import fails here before it confuses a reader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("schemas", "core", "runtime", "ingest", "api", "wattstream", "loadtest")
# what each package may import of ours (itself always)
ALLOWED = {
    "schemas": set(),
    "core": {"schemas"},
    "runtime": {"schemas"},
    "ingest": {"schemas", "core", "runtime"},
    "api": {"schemas", "core", "runtime"},
    # benchmarks and the battery drive the product from outside; the CLI hands them what they need
    "loadtest": {"schemas", "core", "runtime", "ingest", "api"},
    "wattstream": {"schemas", "core", "runtime", "ingest", "api", "loadtest"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(OURS)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    wrong = {
        str(f.relative_to(ROOT)): sorted(_imports(f) - ALLOWED[package] - {package})
        for f in files
        if _imports(f) - ALLOWED[package] - {package}
    }
    assert not wrong, f"{package} imports what it may not: {wrong}"


def test_every_package_is_covered() -> None:
    assert set(ALLOWED) == set(OURS)
