"""The strategy registry: the built-ins plus the classes of the `tradingd.strategies` entry points.

A third-party package registers a strategy by decorating a `Strategy` subclass with
`@strategy("name", params=Model)` and declaring, in its packaging metadata:

    [project.entry-points."tradingd.strategies"]
    my_strat = "my_package.module:MyStrat"

The class is registered under its `@strategy` name. Nothing is registered at import time: each
`load_registry()` builds a fresh registry.

A class defined where no package declares it (a notebook's cell) is registered for the current
process only with `register_for_process(cls)`: every later `load_registry()` of this process
(and of the processes it forks) includes it, until `unregister_for_process(name)`.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from composer.strategies import BUILTIN_STRATEGIES
from composer.strategy import Strategy
from feeds.errors import ConfigError

ENTRY_POINT_GROUP = "tradingd.strategies"
_PROCESS_ORIGIN = "this process (register_for_process)"
# name -> class, registered for this process only; defining the class again (a cell run twice)
# replaces it.
_process_classes: dict[str, type[Strategy[Any]]] = {}


class UnknownStrategyError(ConfigError):
    """A strategy name that nothing registered; the message lists the registered names."""


class StrategyRegistry:
    """Strategy classes by their registered name.

    Args:
        classes: the strategy classes, each marked with `@strategy`.

    Raises:
        ConfigError: a class has no `@strategy` mark, or two classes share a name.
    """

    def __init__(self, classes: Iterable[type[Strategy[Any]]]) -> None:
        self._classes: dict[str, type[Strategy[Any]]] = {}
        for cls in classes:
            name = _mark_of(cls)
            if name is None:
                raise ConfigError(f"{_qualname(cls)} is not marked with @strategy(name, params=)")
            other = self._classes.get(name)
            if other is not None and other is not cls:
                raise ConfigError(
                    f"strategy name {name!r} is registered twice: "
                    f"{_qualname(other)} and {_qualname(cls)}"
                )
            self._classes[name] = cls

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str) -> type[Strategy[Any]]:
        """The class registered as `name`.

        Raises:
            UnknownStrategyError: nothing is registered as `name`.
        """
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownStrategyError(
                f"unknown strategy {name!r}; registered: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, params: Mapping[str, Any], symbols: Sequence[str]) -> Strategy[Any]:
        """A new instance of the strategy `name`, with its params validated.

        Raises:
            UnknownStrategyError: nothing is registered as `name`.
            pydantic.ValidationError: the params do not fit the class's params model (unchanged,
                so the caller can prefix the file and key path).
        """
        cls = self.get(name)
        model = cls.params_model.model_validate(dict(params))
        return cls(model, symbols)


def register_for_process(cls: type[Strategy[Any]]) -> type[Strategy[Any]]:
    """Register a `@strategy`-marked class for this process only, and return it.

    The same name registered again replaces the earlier class (a notebook cell run twice).

    Raises:
        ConfigError: `cls` is not a marked, concrete `Strategy` subclass, or its name is a
            built-in strategy's.
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"{cls!r} is not a subclass of composer.strategy.Strategy")
    name = _mark_of(cls)
    if name is None:
        raise ConfigError(f"{_qualname(cls)} is not marked with @strategy(name, params=)")
    if inspect.isabstract(cls):
        raise ConfigError(f"{_qualname(cls)} is abstract (implement warmup_bars and on_bar)")
    if any(b.strategy_name == name for b in BUILTIN_STRATEGIES):
        raise ConfigError(f"strategy name {name!r} is a built-in strategy's; choose another")
    _process_classes[name] = cls
    return cls


def unregister_for_process(name: str) -> None:
    """Forget a strategy registered with `register_for_process` (nothing if it is not)."""
    _process_classes.pop(name, None)


def load_registry(*, entry_points: bool = True) -> StrategyRegistry:
    """A registry of the built-in strategies, the classes registered for this process and, if
    `entry_points`, the installed plugins.

    Raises:
        ConfigError: an entry point cannot be imported, does not name a `Strategy` subclass
            marked with `@strategy`, names an abstract class, or reuses a registered name. The
            message names the entry point and its distribution.
    """
    classes: dict[str, type[Strategy[Any]]] = {}
    origin: dict[str, str] = {}
    for cls in BUILTIN_STRATEGIES:
        classes[cls.strategy_name] = cls
        origin[cls.strategy_name] = "built-in"
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            cls = _load_entry_point(ep)
            name = cls.strategy_name
            other = classes.get(name)
            if other is not None and other is not cls:
                raise ConfigError(
                    f"{_describe(ep)}: strategy name {name!r} is already registered by "
                    f"{origin[name]} ({_qualname(other)})"
                )
            classes[name] = cls
            origin[name] = _describe(ep)
    for name, cls in _process_classes.items():
        other = classes.get(name)
        if other is not None and other is not cls:
            raise ConfigError(
                f"{_PROCESS_ORIGIN}: strategy name {name!r} is already registered by "
                f"{origin[name]} ({_qualname(other)})"
            )
        classes[name] = cls
    return StrategyRegistry(classes.values())


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> type[Strategy[Any]]:
    where = _describe(ep)
    try:
        obj = ep.load()
    except Exception as e:  # any import-time failure of a plugin is a configuration problem
        raise ConfigError(f"{where}: cannot be loaded: {type(e).__name__}: {e}") from e
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ConfigError(f"{where}: {obj!r} is not a subclass of composer.strategy.Strategy")
    if _mark_of(obj) is None:
        raise ConfigError(f"{where}: {_qualname(obj)} is not marked with @strategy(name, params=)")
    if inspect.isabstract(obj):
        raise ConfigError(
            f"{where}: {_qualname(obj)} is abstract (implement warmup_bars and on_bar)"
        )
    return obj


def _mark_of(cls: type[Strategy[Any]]) -> str | None:
    # The mark must be on the class itself: a subclass of a marked class inherits its name.
    name = cls.__dict__.get("strategy_name")
    return name if isinstance(name, str) and name else None


def _describe(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    dist_name = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"entry point {ep.name!r} = {ep.value!r} of {dist_name} (group {ENTRY_POINT_GROUP})"


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
