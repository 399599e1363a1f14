"""The one-way imports of DESIGN.md: feeds <- brokers, composer <- portfolio <- daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("feeds", "brokers", "composer", "portfolio", "daemon")
ALLOWED = {
    "feeds": set(),
    "brokers": {"feeds"},
    "composer": {"feeds"},
    "portfolio": {"feeds", "brokers", "composer"},
    "daemon": {"feeds", "brokers", "composer", "portfolio"},
}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    bad = {
        str(f.relative_to(ROOT)): sorted(imported_packages(f) - ALLOWED[package] - {package})
        for f in files
    }
    assert {f: b for f, b in bad.items() if b} == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom portfolio.ledger import Ledger\nimport daemon.cli\n")
    assert imported_packages(module) == {"portfolio", "daemon"}
