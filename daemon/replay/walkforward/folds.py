"""The folds of a walk-forward, the sessions they are cut from, and the parameter grid."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import yaml

from composer.composer import Composer
from composer.registry import load_registry
from daemon.config import LoadedConfig, Loc, build_strategies, load_config
from daemon.memory import arrow_on_system_heap
from daemon.timeutil import NS, day_index
from daemon.wiring import DAY_TZ, open_source
from feeds.bar import NS_PER_DAY, NS_PER_MINUTE
from feeds.errors import ConfigError
from feeds.replay import ReplaySource

GridPoint: TypeAlias = dict[str, Any]  # dotted key path -> value

# Extra sessions read before the lookbacks strictly need, so that the first traded slice
# already sees fully warmed indicators (the sanity check's rolling window warms up too).
WARMUP_MARGIN_SESSIONS = 10
_SESSION_NS = 390 * NS_PER_MINUTE


@dataclass(frozen=True, slots=True, kw_only=True)
class Fold:
    """One fold's windows, as inclusive trading dates."""

    index: int
    train_start: date
    train_end: date
    test_start: date
    test_end: date


def make_folds(sessions: Sequence[date], *, train_days: int, test_days: int) -> list[Fold]:
    """Rolling `[train | test]` windows over `sessions`, stepped by `test_days`.

    The last test window may be shorter (it ends with the data); no fold has an empty one.
    """
    folds = []
    k = 0
    while (lo := k * test_days) + train_days < len(sessions):
        mid = lo + train_days
        hi = min(mid + test_days, len(sessions))
        folds.append(
            Fold(
                index=k,
                train_start=sessions[lo],
                train_end=sessions[mid - 1],
                test_start=sessions[mid],
                test_end=sessions[hi - 1],
            )
        )
        k += 1
    return folds


def read_grid(
    path: str,
    config_paths: Sequence[str],
    overrides: Mapping[Loc, Any] | None = None,
    *,
    universe: Sequence[str] | None = None,
) -> list[GridPoint]:
    """The grid file's points: the cartesian product of its lists, in file order.

    Raises:
        ConfigError: the file is unreadable or not a mapping; a value is not a non-empty list;
            a key path is not a key of the config. Each message names the file and the key.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the grid: {e}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: the grid must be a mapping of key paths to lists of values")
    keys = [str(k) for k in data]
    for key, values in zip(keys, data.values(), strict=True):
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: {key}: must be a non-empty list of values")
        _check_key(path, key, values[0], config_paths, overrides or {}, universe=universe)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*data.values())]


def read_sessions(loaded: LoadedConfig) -> tuple[list[date], list[date], list[str]]:
    """Every New York date with bars, those within run.start..run.end, and the universe.

    All dates are kept for warm-up: a window may read bars from before `run.start`.
    """
    settings = loaded.settings
    arrow_on_system_heap()
    source = ReplaySource(
        Path(settings.data.path),
        symbols=settings.symbols or None,
        timezone=settings.data.timezone,
    )
    universe = list(settings.symbols or source.symbols)
    ts = np.sort(source.times())  # not the bars: their times alone
    if len(ts) == 0:
        return [], [], universe
    first = datetime.fromtimestamp(int(ts[0]) / NS, tz=ZoneInfo(DAY_TZ)).date()
    offsets = np.unique(day_index(ts, DAY_TZ)).tolist()
    every = [first + timedelta(days=int(o)) for o in offsets]
    lo, hi = settings.run.start or date.min, settings.run.end or date.max
    return every, [d for d in every if lo <= d <= hi], universe


def warmup_sessions(loaded: LoadedConfig, universe: list[str]) -> int:
    """Sessions to read before a window: the composer's lookback in bars, as sessions."""
    strategies = build_strategies(loaded, load_registry(), universe)
    try:
        bars = Composer(loaded.settings.composer, strategies, universe).warmup_bars
    except ConfigError as e:
        raise ConfigError(f"{loaded.files[-1]}: {e}") from None
    bar_ns = loaded.settings.data.bar_ns()
    per_session = 1 if bar_ns >= NS_PER_DAY else max(_SESSION_NS // bar_ns, 1)
    return -(-bars // per_session) + WARMUP_MARGIN_SESSIONS


def load_point(
    paths: Sequence[str], overrides: Mapping[Loc, Any], point: GridPoint
) -> LoadedConfig:
    """The config of `paths` with `overrides` and then the grid point applied."""
    return load_config(paths, {**overrides, **point_overrides(point)})


def point_overrides(point: GridPoint) -> dict[Loc, Any]:
    """A grid point as `load_config` overrides (dotted key path -> key tuple)."""
    return {tuple(key.split(".")): value for key, value in point.items()}


def _check_key(
    grid: str,
    key: str,
    value: Any,
    paths: Sequence[str],
    overrides: Mapping[Loc, Any],
    *,
    universe: Sequence[str] | None,
) -> None:
    """A key path must name a config key: probe it with its first value and look for an
    'unknown' complaint about the path or one of its prefixes (an unknown section, strategy
    or parameter). Any other complaint is about the value, and such points are skipped."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{grid}: {key}: not a dotted key path")
    try:
        loaded = load_point(paths, overrides, {key: value})
        # The data's symbols when the caller knows them (and the key is not about the data):
        # no second parse of the files.
        known = None if parts[0] == "data" else universe
        symbols = list(loaded.settings.symbols or known or open_source(loaded).symbols)
        build_strategies(loaded, load_registry(), symbols)
    except ConfigError as e:
        prefixes = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
        for line in str(e).splitlines():
            _, _, rest = line.partition(": ")
            dotted, _, message = rest.partition(": ")
            if dotted in prefixes and "unknown" in message:
                raise ConfigError(f"{grid}: {key}: not a key of the config ({message})") from None
    except (TypeError, AttributeError):
        # The path goes through a value that is not a mapping (e.g. `run.start_cash.x`).
        raise ConfigError(f"{grid}: {key}: not a key of the config") from None
