"""The guard of the user-error boundary: generated mistakes never become a traceback.

Hypothesis generates malformed config overlays (wrong types, out-of-range numbers, unknown keys,
bad dates), malformed data files (random bytes, ragged rows, missing and duplicate columns, bad
timestamps and values) and command lines of `replay` and `check-config`, runs
`daemon.cli.main` in-process on each, and asserts: exit 0 or 2; no exception escapes and stderr
has no traceback; with exit 2, stderr is one line `tradingd: error: <where>: <what>` that names
the file, the key or the command line.

Profiles (tests/conftest.py): `fast` by default, for every run; `HYPOTHESIS_PROFILE=deep` for a
long search, where these tests are also marked slow:

    HYPOTHESIS_PROFILE=deep .venv/bin/pytest tests/daemon/test_error_guard.py
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel

from composer.registry import load_registry
from daemon.cli import main
from daemon.settings import Settings
from tests.daemon.helpers import write_daily_csv, write_yaml

pytestmark = [pytest.mark.slow] if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else []

SYMBOLS = ("SPY", "QQQ")
STRATEGIES: dict[str, dict[str, Any]] = {
    "trend": {"type": "sma_cross", "params": {"fast": 3, "slow": 8}},
    "momentum": {"params": {"lookback": 5}},
    "reversion": {"type": "mean_reversion", "params": {"window": 5}},
    "breakout": {"params": {"entry": 5, "exit": 3}},
}
_runs = itertools.count()


# -- the runs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workspace:
    """A folder with good data and a good base config; every relative path lands in it."""

    root: Path
    data: Path
    base: Path


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    before = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="tradingd-guard-") as tmp:
        root = Path(tmp)
        data = root / "data"
        for i, symbol in enumerate(SYMBOLS):
            write_daily_csv(
                data / f"{symbol}.csv", [100.0 + ((j * (i + 3)) % 7) for j in range(40)]
            )
        base = write_yaml(
            root / "base.yaml",
            {
                "symbols": list(SYMBOLS),
                "data": {"path": str(data), "timeframe": "1Day"},
                "strategies": STRATEGIES,
                "composer": {"method": "inverse_vol", "vol_lookback": 5},
                "run": {"start_cash": 100000},
            },
        )
        os.chdir(root)
        try:
            yield Workspace(root=root, data=data, base=base)
        finally:
            os.chdir(before)


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str], places: list[str]) -> int:
    """Run the command line and check the promise; `places` are what a message may name."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refuses the command line itself
        code = e.code if isinstance(e.code, int) else 2
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("tradingd"), err
        assert ": error: " in last, err
        event("exit 2 (argparse)")
        return code
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    event(f"exit {code}")
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("tradingd: error: "), err
        assert any(p in lines[0] for p in places), (lines[0], places)
    return code


def out_dir(ws: Workspace) -> str:
    return str(ws.root / f"out{next(_runs)}")


# -- configs ----------------------------------------------------------------------------------


def _key_paths(model: type[BaseModel], prefix: tuple[str, ...]) -> dict[tuple[str, ...], Any]:
    """Every key path of `model`, sections and leaves, with its annotation."""
    paths: dict[tuple[str, ...], Any] = {}
    for name, field in model.model_fields.items():
        here = (*prefix, name)
        paths[here] = field.annotation
        inner = [a for a in (field.annotation, *get_args(field.annotation)) if a is not None]
        for a in inner:
            if isinstance(a, type) and issubclass(a, BaseModel) and get_origin(a) is None:
                paths.update(_key_paths(a, here))
    return paths


def _strategy_paths() -> dict[tuple[str, ...], Any]:
    registry = load_registry(entry_points=False)
    paths: dict[tuple[str, ...], Any] = {}
    for sid, spec in STRATEGIES.items():
        cls = registry.get(spec.get("type", sid))
        paths[("strategies", sid, "type")] = str
        paths[("strategies", sid, "symbols")] = list[str]
        paths.update(_key_paths(cls.params_model, ("strategies", sid, "params")))
    return paths


ANNOTATIONS = {
    **{p: a for p, a in _key_paths(Settings, ()).items() if p[0] != "strategies"},
    **_strategy_paths(),
}
KEY_PATHS = sorted(ANNOTATIONS)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 2, 100_000, 100_001, 10**11, 10**12, 10**13]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e27", "NaN", "-inf", "0.001", "100.005", "abc", "", "15:50", "XNYS"]),
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(str),
    st.sampled_from(["2024-13-45", "2024-02-30", "1990-01-01", "2012-06-01", "99999-01-01"]),
    st.text(max_size=12),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), scalars, max_size=2),
)


def _typed(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of the field's own type, small and edgy: a valid config that a replay then
    chokes on is the subtle case."""
    options = [a for a in (annotation, *get_args(annotation)) if a is not type(None)]
    found: list[st.SearchStrategy[Any]] = []
    for a in options:
        if get_origin(a) is Literal:
            found.append(st.sampled_from(get_args(a)))
        elif a is bool:
            found.append(st.booleans())
        elif a is int:
            found.append(st.integers(min_value=-2, max_value=400) | st.sampled_from([10**5]))
        elif a in (float, Decimal):
            found.append(st.floats(min_value=0, max_value=3) | st.sampled_from([0, 1e-9, 1e6]))
        elif a is date:
            found.append(st.dates(min_value=date(2020, 6, 1), max_value=date(2021, 6, 1)))
    return st.one_of(found) if found else values


key_paths = st.one_of(
    st.sampled_from(KEY_PATHS),
    # An unknown key, at the top or inside a known section.
    st.tuples(st.sampled_from([(), *KEY_PATHS]), st.text(min_size=1, max_size=8)).map(
        lambda t: (*t[0], t[1])
    ),
)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[tuple[str, ...], Any]:
    """A key path and a value for it: of the key's own type half of the time."""
    path = draw(key_paths)
    annotation = ANNOTATIONS.get(path)
    if annotation is not None and draw(st.booleans()):
        return path, draw(_typed(annotation))
    return path, draw(values)


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    tree: Any = value
    for key in reversed(path):
        tree = {key: tree}
    result: dict[str, Any] = tree
    return result


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _overlay(pairs: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in pairs:
        _merge(tree, _nest(path, value))
    return tree


overlays = st.lists(pairs(), min_size=1, max_size=3).map(_overlay)


@given(overlay=overlays, command=st.sampled_from(["check-config", "replay"]))
def test_malformed_configs(
    capsys: pytest.CaptureFixture[str], overlay: dict[str, Any], command: str
) -> None:
    with workspace() as ws:
        bad = ws.root / "overlay.yaml"
        bad.write_text(yaml.safe_dump(overlay, allow_unicode=True), encoding="utf-8")
        argv = [command, str(ws.base), str(bad)]
        if command == "replay":
            argv += ["--out", out_dir(ws), "--log-level", "error"]
        # A value that is a path (data.path) is named as given.
        paths = [str(v) for k, v in _leaves(overlay) if k and k[-1] == "path"]
        # A range that leaves no bar is named by the data it was asked of.
        run_cli(capsys, argv, [str(bad), str(ws.base), "command line", str(ws.data), *paths])


def _leaves(tree: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*prefix, str(k)))
    else:
        yield prefix, tree


# -- data files -------------------------------------------------------------------------------

COLUMNS = ["date", "open", "high", "low", "close", "volume"]
cells = st.one_of(
    st.sampled_from(["1", "0", "-1", "1e308", "nan", "inf", "", " ", "x", '"1"', "1,5"]),
    st.floats().map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=8),
)
times = st.one_of(
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(str),
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    st.sampled_from(
        ["2021-01-04", "2021-01-04T14:30:00Z", "2021-13-01", "1/4/2021", "", "2021-01-04 25:00"]
    ),
    st.text(max_size=12),
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV of daily bars with a few mutations, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    header = list(COLUMNS)
    match draw(st.integers(0, 6)):
        case 0:
            header.remove(draw(st.sampled_from(COLUMNS)))
        case 1:
            header.insert(draw(st.integers(0, 6)), draw(st.sampled_from(COLUMNS)))
        case 2:
            header[draw(st.integers(0, 5))] = draw(st.text(max_size=6))
        case _:
            pass
    rows = []
    for day in range(draw(st.integers(0, 12))):
        row = [f"2021-01-{4 + day:02d}", "10", "11", "9", "10.5", "1000"][: len(header)]
        row += ["1"] * (len(header) - len(row))
        if draw(st.integers(0, 3)) == 0:
            row[0] = draw(times)
        if draw(st.integers(0, 3)) == 0:
            row[draw(st.integers(0, len(row) - 1))] = draw(cells)
        if draw(st.integers(0, 7)) == 0:  # ragged
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(cells, max_size=2))
        rows.append(row)
    delimiter = draw(st.sampled_from([",", ",", ",", ";", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    text = newline.join(delimiter.join(r) for r in [header, *rows]) + newline
    encoded = text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])), "replace")
    if draw(st.integers(0, 9)) == 0:  # one stray byte somewhere
        at = draw(st.integers(0, len(encoded)))
        encoded = encoded[:at] + draw(st.binary(min_size=1, max_size=2)) + encoded[at:]
    return encoded


@st.composite
def parquet_files(draw: st.DrawFn) -> pa.Table:
    """A Parquet table with the bar columns in odd types, or missing and renamed ones."""
    n = draw(st.integers(0, 5))
    types = st.sampled_from(["string", "int", "float", "bool", "timestamp", "date", "null"])
    arrays, names = [], []
    for name in draw(st.lists(st.sampled_from([*COLUMNS, "symbol", "x"]), max_size=8)):
        kind = draw(types)
        if kind == "string":
            array = pa.array(draw(st.lists(st.text(max_size=6), min_size=n, max_size=n)))
        elif kind == "int":
            ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
            array = pa.array(draw(st.lists(ints, min_size=n, max_size=n)), pa.int64())
        elif kind == "float":
            array = pa.array(draw(st.lists(st.floats(), min_size=n, max_size=n)), pa.float64())
        elif kind == "bool":
            array = pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        elif kind == "timestamp":
            ns = st.integers(min_value=-(2**62), max_value=2**62)
            array = pa.array(draw(st.lists(ns, min_size=n, max_size=n)), pa.timestamp("ns"))
        elif kind == "date":
            days = st.integers(min_value=-(10**6), max_value=10**6)
            array = pa.array(draw(st.lists(days, min_size=n, max_size=n)), pa.date32())
        else:
            array = pa.nulls(n)
        arrays.append(array)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


@given(
    content=st.one_of(csv_files(), parquet_files(), st.binary(max_size=100)),
    timeframe=st.sampled_from(["1Day", "1Day", "1Min"]),
)
def test_malformed_data_files(
    capsys: pytest.CaptureFixture[str], content: bytes | pa.Table, timeframe: str
) -> None:
    with workspace() as ws:
        folder = ws.root / "bad"
        folder.mkdir()
        if isinstance(content, pa.Table):
            data = folder / "SPY.parquet"
            pq.write_table(content, data)
        else:
            data = folder / "SPY.csv"
            data.write_bytes(content)
        cfg = write_yaml(
            ws.root / "data.yaml",
            {"symbols": ["SPY"], "data": {"path": str(folder), "timeframe": timeframe}},
        )
        argv = ["replay", str(ws.base), str(cfg), "--out", out_dir(ws), "--log-level", "error"]
        run_cli(capsys, argv, [str(data), str(folder), str(cfg)])


# -- command lines ----------------------------------------------------------------------------

# argparse quotes a refused value as typed, and its message is the CLI's (not checked here to be
# one line); control characters would split it: printable text only.
words = st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=10)

dates_text = st.one_of(
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(str),
    st.sampled_from(["1990-01-01", "2021-01-10", "2021-02-30", "2021-1-4", "today", ""]),
    words,
)
# Output folders: new, a file, under a file, one that cannot be created, deeper than exists.
_OUTS = ["fresh", "base.yaml", "base.yaml/x", "/proc/tradingd-x", "a/b/c", ""]
flags = st.one_of(
    st.tuples(st.just("--start"), dates_text),
    st.tuples(st.just("--end"), dates_text),
    st.tuples(
        st.just("--symbols"),
        st.one_of(st.sampled_from(["SPY", "spy,QQQ", "X", ","]), words),
    ),
    st.tuples(
        st.just("--data"),
        st.sampled_from(["data", "data/SPY.csv", "nowhere", "", "base.yaml", "."]),
    ),
    st.tuples(st.just("--log-level"), st.sampled_from(["error", "warning", "loud"])),
    st.tuples(st.just("--log-format"), st.sampled_from(["json", "text", "xml"])),
    st.tuples(st.sampled_from(["--speed", "--port"]), st.sampled_from(["1", "-1", "x", "99999"])),
    st.tuples(st.just("--out"), st.sampled_from(_OUTS)),
    st.tuples(words.filter(bool).map(lambda t: f"--{t}"), words),
)


@given(
    command=st.sampled_from(["replay", "check-config"]),
    options=st.lists(flags, max_size=4),
    configs=st.lists(
        st.sampled_from(["base.yaml", "missing.yaml", "data", ""]), min_size=1, max_size=2
    ),
)
def test_malformed_command_lines(
    capsys: pytest.CaptureFixture[str],
    command: str,
    options: list[tuple[str, str]],
    configs: list[str],
) -> None:
    with workspace() as ws:
        argv = [command, *configs]
        for flag, value in options:
            argv += [flag, value]
        if command == "replay":
            if all(flag != "--out" for flag, _ in options):
                argv += ["--out", out_dir(ws)]
            argv += ["--log-level", "error"]
        places = [
            "command line",
            *configs,
            # argparse may take a flag or a value for a config file: the message names it.
            *(word for pair in options for word in pair if word),
            str(ws.base),
            str(ws.data),
        ]
        run_cli(capsys, argv, places)


synth_flags = st.one_of(
    st.tuples(st.just("--sessions"), st.sampled_from(["0", "1", "2", "-1", "x", "100000", ""])),
    st.tuples(st.just("--start"), dates_text),
    st.tuples(st.just("--symbols"), st.one_of(st.sampled_from(["A", "a,B", ",", "A/B"]), words)),
    st.tuples(st.just("--out"), st.sampled_from(_OUTS)),
    st.tuples(st.just("--format"), st.sampled_from(["csv", "parquet", "xls"])),
    st.tuples(st.just("--seed"), st.sampled_from(["0", "7", "x"])),
)


@given(options=st.lists(synth_flags, max_size=6))
def test_malformed_synth_command_lines(
    capsys: pytest.CaptureFixture[str], options: list[tuple[str, str]]
) -> None:
    """`bars synth`: its sessions, start, symbols and output folder, generated."""
    with workspace():
        argv = ["bars", "synth"]
        for flag, value in options:
            argv += [flag, value]
        places = ["command line", *(word for pair in options for word in pair if word)]
        run_cli(capsys, [*argv, "--log-level", "error"], places)
