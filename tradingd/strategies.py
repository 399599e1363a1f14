"""Strategies from Python: the contract, the decorator, and registration for this process."""

from __future__ import annotations

from typing import Any, TypeVar

from composer.registry import load_registry, register_for_process, unregister_for_process
from composer.strategy import Strategy

S = TypeVar("S", bound=type[Strategy[Any]])


def register(cls: S) -> S:
    """Register a `@strategy`-marked class for this process, so configs can name it.

    For a strategy defined where no package declares it, such as a notebook cell: the next
    cell's [`load_config`][tradingd.load_config] and [`replay`][tradingd.replay] find it by its
    `@strategy` name. Running the cell again replaces the class. Nothing outlives the process.
    Use it as a decorator, above `@strategy`:

    ```python
    @tradingd.register
    @tradingd.strategy("gap_fade", params=GapParams)
    class GapFade(tradingd.Strategy[GapParams]):
        ...
    ```

    Raises:
        ConfigError: not a marked, concrete `Strategy` subclass, or a built-in's name.
    """
    register_for_process(cls)
    return cls


def unregister(name: str) -> None:
    """Forget a strategy [`register`][tradingd.register]ed in this process (no error if none)."""
    unregister_for_process(name)


def strategy_names() -> list[str]:
    """Every strategy name a config may use here: built-ins, installed plugins, registered."""
    return load_registry().names()
