"""Shared test helpers: paths of the repository and small data writers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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


# Hypothesis (the user-error guard, tests/daemon/test_error_guard.py): `fast` for every run, the
# same examples each time; `deep` for a long search (HYPOTHESIS_PROFILE=deep), examples kept in
# .hypothesis/ so a failure found once is tried first next time.
settings.register_profile(
    "fast",
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    max_examples=2_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
