"""Configs from Python: the overlays and validation of the command line, as a value."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.config import LoadedConfig, Loc, redacted
from daemon.config import load_config as _load
from daemon.settings import Settings

# How messages name keyword overrides: `load_config keywords: composer.method: ...`.
KEYWORDS_ORIGIN = "load_config keywords"


@dataclass(frozen=True, slots=True)
class Config:
    """A validated config: YAML overlays merged left to right, then keyword overrides.

    Build one with [`load_config`][tradingd.load_config]; derive variants with
    [`with_overrides`][tradingd.Config.with_overrides]. A `Config` is immutable.

    Attributes:
        overlays: the YAML files, in the order they were merged.
        overrides: key path -> value, applied after the files (each replaces its key whole).
    """

    overlays: tuple[str, ...]
    overrides: Mapping[Loc, Any]
    loaded: LoadedConfig = field(repr=False)

    @property
    def settings(self) -> Settings:
        """The validated settings tree (pydantic models; see the configuration reference)."""
        return self.loaded.settings

    @property
    def digest(self) -> str:
        """A short hash of the resolved settings: the same config gives the same digest."""
        return self.loaded.digest

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, secrets redacted (what `check-config` prints)."""
        return redacted(self.loaded.settings)

    def with_overrides(self, **overrides: Any) -> Config:
        """This config with more keyword overrides (see [`load_config`][tradingd.load_config]).

        Raises:
            ConfigError: the result does not validate; the message names the key.
        """
        return _build(self.overlays, {**self.overrides, **keyword_paths(overrides)})


def load_config(*overlays: str | os.PathLike[str], **overrides: Any) -> Config:
    """Read, merge and validate YAML overlays, as `tradingd replay CONFIG ...` does.

    Mappings merge key by key and the later file wins; lists and other values are replaced
    whole. Each keyword then sets one key, replacing its value whole: a top-level key
    (`symbols=["SPX"]`, `strategies={...}`), or a key inside a section named with double
    underscores or, through `**{...}`, with dots (`composer__method="equal"`,
    `**{"run.start_cash": 50_000}`). Every strategy's type and params are checked against the
    registry (built-ins, installed plugins and strategies [`register`][tradingd.register]ed in
    this process).

    Args:
        *overlays: YAML files, merged left to right. Relative paths (here and inside them) are
            relative to the current directory.
        **overrides: key path -> value, applied after the files.

    Returns:
        The validated config.

    Raises:
        ConfigError: a file is missing or unreadable, or a key or value is wrong; one line per
            problem, naming the file (or `load_config keywords`) and the key path.

    Example:
        ```python
        cfg = tradingd.load_config("config/base.yaml", "config/risk_balanced.yaml",
                                   composer__method="equal", symbols=["SPX", "MSFT"])
        ```
    """
    return _build(tuple(os.fspath(p) for p in overlays), keyword_paths(overrides))


def keyword_paths(overrides: Mapping[str, Any]) -> dict[Loc, Any]:
    """Keyword names as key paths: `composer__method` and `composer.method` are one path."""
    out: dict[Loc, Any] = {}
    for name, value in overrides.items():
        out[tuple(name.replace("__", ".").split("."))] = value
    return out


def with_arguments(config: Config, overrides: Mapping[Loc, Any], origin: str) -> Config:
    """`config` with more overrides that messages attribute to `origin` (a function's
    arguments: `replay() arguments: run.start: ...`)."""
    if not overrides:
        return config
    return _build(config.overlays, {**config.overrides, **overrides}, origin)


def _build(
    overlays: tuple[str, ...], overrides: Mapping[Loc, Any], origin: str = KEYWORDS_ORIGIN
) -> Config:
    # A copy: merging writes into the mappings it is given, and a Config must stay as it was.
    loaded = _load(overlays, copy.deepcopy(dict(overrides)), overrides_origin=origin)
    return Config(overlays=overlays, overrides=dict(overrides), loaded=loaded)
