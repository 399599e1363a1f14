"""The strategy contract and the decorator that registers a strategy class.

A strategy receives the accepted bars of its symbols, keeps its own state, and keeps a signal
per symbol in [-1, 1] that the composer reads at each rebalance. Indicators are incremental:
`on_bar` is O(1).

    from pydantic import BaseModel, ConfigDict
    from composer.strategy import Strategy, strategy

    class MyParams(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        lookback: int = 20

    @strategy("my_strategy", params=MyParams)
    class MyStrategy(Strategy[MyParams]):
        def on_bar(self, bar: Bar) -> None:
            ...
            self.signals[bar.symbol] = 1.0
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from feeds.bar import Bar

P = TypeVar("P", bound=BaseModel)
S = TypeVar("S", bound="type[Strategy[Any]]")


class Strategy(abc.ABC, Generic[P]):
    """Base class of every strategy.

    Attributes:
        params: the validated params model.
        symbols: the symbols this strategy sees bars of and signals for.
        signals: the current signal per symbol, in [-1, 1]; 0.0 until the strategy knows better.
    """

    strategy_name: ClassVar[str] = ""
    params_model: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, params: P, symbols: Sequence[str]) -> None:
        self.params = params
        self.symbols = tuple(symbols)
        self.signals: dict[str, float] = dict.fromkeys(self.symbols, 0.0)

    @property
    @abc.abstractmethod
    def warmup_bars(self) -> int:
        """Bars per symbol needed before the signal means anything (the lookback to preload)."""

    @abc.abstractmethod
    def on_bar(self, bar: Bar) -> None:
        """Take one accepted bar of one of `symbols` and update `signals[bar.symbol]`."""


def strategy(name: str, *, params: type[BaseModel]) -> Callable[[S], S]:
    """Mark a Strategy subclass as registrable under `name` with its params model.

    The mark is an attribute of the class; `composer.registry.load_registry()` collects the
    built-ins and the classes named in the `tradingd.strategies` entry-point group. No
    module-level registry is mutated.
    """

    def mark(cls: S) -> S:
        cls.strategy_name = name
        cls.params_model = params
        return cls

    return mark
