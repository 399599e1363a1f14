"""The shape ARCHITECTURE.md promises, kept true: small modules, short functions, daemon/ in
rooms with none holding a third of its code, and every path the document names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("feeds", "brokers", "composer", "portfolio", "daemon", "sandbox", "tradingd")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100
# Functions allowed to be longer, each with the reason. Tables read best whole.
LONG_FUNCTIONS: dict[str, str] = {}
ROOMS = ("live", "replay", "service", "research", "cli")


def product_modules() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def long_functions(path: Path) -> dict[str, int]:
    """Qualified name -> lines, for every function longer than the limit."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}.{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    lines = child.end_lineno - child.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        found[name] = lines
                visit(child, name)

    visit(tree, dotted(path))
    return found


def test_no_module_is_over_the_limit() -> None:
    sizes = {dotted(p): len(p.read_text(encoding="utf-8").splitlines()) for p in product_modules()}
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_is_over_the_limit() -> None:
    found: dict[str, int] = {}
    for path in product_modules():
        found.update(long_functions(path))
    assert {f: n for f, n in found.items() if f not in LONG_FUNCTIONS} == {}


def test_daemon_is_rooms_and_none_holds_a_third() -> None:
    daemon = ROOT / "daemon"
    lines: dict[str, int] = {}
    for path in daemon.rglob("*.py"):
        parts = path.relative_to(daemon).parts
        room = parts[0] if len(parts) > 1 else "core"
        lines[room] = lines.get(room, 0) + len(path.read_text(encoding="utf-8").splitlines())
    assert set(ROOMS) <= set(lines), f"rooms missing: {set(ROOMS) - set(lines)}"
    total = sum(lines.values())
    assert max(lines.values()) < total / 3, lines


def test_every_room_says_what_it_is_for() -> None:
    for package in [*(ROOT / "daemon" / room for room in ROOMS), ROOT / "sandbox"]:
        init = package / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


def test_the_architecture_document_names_only_what_exists() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+(?:\.py)?/?)`", text))
    assert named, "ARCHITECTURE.md names no paths"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert missing == []
