"""The command line's option types: text in, a value out, or a mistake named.

The types for `argparse` raise ArgumentTypeError (argparse prints its usage and exits 2);
`checked` wraps a parser so that its mistake is one line naming the option instead, as every
other user mistake is (`tradingd: error: command line: --cash abc: not a number`).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import NoReturn, TypeVar

from feeds.errors import ConfigError

_T = TypeVar("_T")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one line, as every other user mistake is.

    argparse prints its usage and the message on several lines; here the message goes up to
    `main` as a ConfigError naming the command (`tradingd: error: command line: replay:
    argument --speed: not a number: 'abc' (see tradingd replay --help)`), exit 2.
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("tradingd").strip()
        where = f"command line: {command}: " if command else "command line: "
        raise ConfigError(f"{where}{message} (see {self.prog} --help)")


def out_folder(option: str, path: Path) -> Path:
    """`path` as an output folder that can be written, checked before any work starts.

    Nothing is created: the run creates the folder once its config and data are valid. A
    probe folder made and removed in the nearest existing parent proves it can be.

    Raises:
        ConfigError: `path` is a file, sits under a file, or its parent refuses a new folder.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"command line: {option} {path}: a file, not a folder")
    parent = path if path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"command line: {option} {path}: {parent} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tradingd-probe-", dir=parent))
    except OSError as e:
        raise ConfigError(
            f"command line: {option} {path}: cannot create a folder in {parent} ({e.strerror or e})"
        ) from None
    return path


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def sessions(text: str) -> int:
    """A window length in trading sessions: `252d` or `252`."""
    return positive_int(text.removesuffix("d"))


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
    return value


def checked(option: str, parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type for `option` whose mistake is one line naming it, not a usage message.

    argparse reformats only ArgumentTypeError, TypeError and ValueError; the ConfigError raised
    here passes through `parse_args` to `main`, which prints it as every user mistake is.
    """

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as e:
            raise ConfigError(f"command line: {option} {text}: {e}") from None

    return convert


def speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be greater than 0 (market minutes per wall minute)")
    return value


def port(text: str) -> int:
    value = whole(text)
    if not 1 <= value <= 65535:
        raise ValueError("a port must be within 1..65535")
    return value


def any_port(text: str) -> int:
    """A port to listen on, or 0: any free port (the server logs the one it got)."""
    value = whole(text)
    if not 0 <= value <= 65535:
        raise ValueError("a port must be within 1..65535 (or 0: any free port)")
    return value


def minutes(text: str) -> int:
    value = whole(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def cash(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise ValueError("not a number") from None
    if not (value.is_finite() and value > 0):
        raise ValueError("the starting cash must be greater than 0")
    return value


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not a whole number") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
    return value
