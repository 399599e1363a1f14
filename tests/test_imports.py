"""The one-way imports of DESIGN.md, between the packages and between the rooms of `daemon/`.

    feeds <- brokers, composer <- portfolio <- daemon <- tradingd;  sandbox uses only feeds and
    brokers

`tradingd` (the public Python API) adapts the packages below it and holds no logic; nothing
below imports it, and it does not go through the command line (the CLI and the API call the
same functions of `daemon`).

Inside `daemon/`: the engine imports no other room; the service and research rooms import no
driver; the live driver never imports the replay room; the replay room takes from `daemon/live/`
only what is shared on purpose (recovery, controls).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("feeds", "brokers", "composer", "portfolio", "daemon", "sandbox", "tradingd")
ALLOWED = {
    "feeds": set(),
    "brokers": {"feeds"},
    "composer": {"feeds"},
    "portfolio": {"feeds", "brokers", "composer"},
    "daemon": {"feeds", "brokers", "composer", "portfolio"},
    "sandbox": {"feeds", "brokers"},
    "tradingd": {"feeds", "brokers", "composer", "portfolio", "daemon"},
}
# The command line starts every program the distribution ships, the sandbox included.
ALSO_ALLOWED = {"daemon.cli": {"sandbox"}}
# Room of daemon/ (a module path prefix) -> the daemon modules it must not import (prefixes).
DRIVERS = ("daemon.live", "daemon.replay", "daemon.cli")
FORBIDDEN_IN_DAEMON = {
    "daemon.engine": (*DRIVERS, "daemon.service", "daemon.research", "daemon.wiring"),
    "daemon.wiring": (*DRIVERS, "daemon.research"),
    "daemon.recorder": (*DRIVERS, "daemon.service", "daemon.wiring"),
    "daemon.service": (*DRIVERS, "daemon.research", "daemon.wiring"),
    "daemon.research": (*DRIVERS, "daemon.service", "daemon.wiring"),
    "daemon.live": ("daemon.replay", "daemon.research", "daemon.cli"),
    "daemon.replay": ("daemon.cli", "daemon.live.lifecycle"),
    "tradingd": ("daemon.cli",),
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module path `path` imports (`from a.b import c` gives `a.b` and `a.b.c`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_packages(path: Path) -> set[str]:
    return {m.split(".")[0] for m in imported_modules(path) if m.split(".")[0] in PACKAGES}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    bad = {
        str(f.relative_to(ROOT)): sorted(
            imported_packages(f)
            - ALLOWED[package]
            - {package}
            - next((v for k, v in ALSO_ALLOWED.items() if _under(module_name(f), k)), set())
        )
        for f in files
    }
    assert {f: b for f, b in bad.items() if b} == {}


@pytest.mark.parametrize("room", sorted(FORBIDDEN_IN_DAEMON))
def test_daemon_room_imports_only_what_it_may(room: str) -> None:
    base = ROOT / Path(*room.split("."))
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files, f"{room} has no modules"
    assert files[0].exists(), f"{room} has no modules"
    bad: dict[str, list[str]] = {}
    for path in files:
        wrong = sorted(
            m
            for m in imported_modules(path)
            if any(_under(m, f) for f in FORBIDDEN_IN_DAEMON[room])
        )
        if wrong:
            bad[module_name(path)] = wrong
    assert bad == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nfrom portfolio.ledger import Ledger\nimport daemon.cli\n"
        "from daemon.live import driver\n"
    )
    assert imported_packages(module) == {"portfolio", "daemon"}
    assert "daemon.live.driver" in imported_modules(module)
