"""Shared test helpers: paths of the repository and small data writers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def in_repo() -> Iterator[Path]:
    """Run with the repository as the working directory (the shipped configs use relative
    paths, as a user running from the checkout would)."""
    before = Path.cwd()
    os.chdir(ROOT)
    try:
        yield ROOT
    finally:
        os.chdir(before)
