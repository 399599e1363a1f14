"""The registry: built-ins, real entry points of an installed (fake) distribution, errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from composer.registry import StrategyRegistry, UnknownStrategyError, load_registry
from composer.strategies import SmaCross
from feeds.errors import ConfigError
from tests.composer.helpers import bars

BUILTINS = ["breakout", "mean_reversion", "momentum", "sma_cross"]

PLUGIN_SOURCE = """
from pydantic import BaseModel, ConfigDict

from composer.strategy import Strategy, strategy


class MyParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    level: float = 1.0


@strategy("my_strat", params=MyParams)
class MyStrat(Strategy[MyParams]):
    @property
    def warmup_bars(self):
        return 1

    def on_bar(self, bar):
        self.signals[bar.symbol] = self.params.level


class NotAStrategy:
    pass


class Unmarked(MyStrat):
    pass


@strategy("sma_cross", params=MyParams)
class Clash(MyStrat):
    pass
"""


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Installer]:
    installer = _Installer(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield installer
    for module in installer.modules:
        sys.modules.pop(module, None)


class _Installer:
    """Writes a module and a dist-info folder, as pip would install a distribution."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def __call__(self, dist: str, module: str, source: str, entry_points: str) -> None:
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[tradingd.strategies]\n{entry_points}\n")
        self.modules.append(module)


def test_builtins_are_registered_sorted() -> None:
    assert load_registry(entry_points=False).names() == BUILTINS


def test_unknown_strategy_lists_what_exists() -> None:
    registry = load_registry(entry_points=False)
    with pytest.raises(UnknownStrategyError) as info:
        registry.get("sma_crss")
    assert str(info.value) == (
        "unknown strategy 'sma_crss'; registered: breakout, mean_reversion, momentum, sma_cross"
    )
    assert isinstance(info.value, ConfigError)


def test_create_validates_params_and_binds_symbols() -> None:
    strat = load_registry(entry_points=False).create(
        "sma_cross", {"fast": 3, "slow": 5, "allow_short": True}, ["A", "B"]
    )
    assert isinstance(strat, SmaCross)
    assert strat.params.fast == 3
    assert strat.symbols == ("A", "B")
    assert strat.signals == {"A": 0.0, "B": 0.0}


def test_create_lets_the_validation_error_through_unchanged() -> None:
    registry = load_registry(entry_points=False)
    with pytest.raises(ValidationError) as info:
        registry.create("momentum", {"lookback": 0, "lookbak": 3}, ["A"])
    locs = sorted(e["loc"] for e in info.value.errors())
    assert locs == [("lookback",), ("lookbak",)]


def test_an_entry_point_strategy_is_found_and_works(install: _Installer) -> None:
    install("my_strats", "my_strats", PLUGIN_SOURCE, "my_strat = my_strats:MyStrat")
    registry = load_registry()
    assert registry.names() == sorted([*BUILTINS, "my_strat"])
    strat = registry.create("my_strat", {"level": 0.5}, ["A"])
    for b in bars("A", [1.0]):
        strat.on_bar(b)
    assert strat.signals == {"A": 0.5}
    assert load_registry(entry_points=False).names() == BUILTINS


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        ("bad_strats:NotAStrategy", "is not a subclass of composer.strategy.Strategy"),
        ("bad_strats:Unmarked", "is not marked with @strategy"),
        ("bad_strats:Clash", "strategy name 'sma_cross' is already registered by built-in"),
        ("bad_strats:Missing", "cannot be loaded: AttributeError"),
    ],
)
def test_a_broken_entry_point_names_itself_and_its_distribution(
    install: _Installer, target: str, complaint: str
) -> None:
    install("bad_strats", "bad_strats", PLUGIN_SOURCE, f"broken = {target}")
    with pytest.raises(ConfigError) as info:
        load_registry()
    message = str(info.value)
    assert f"entry point 'broken' = '{target}' of bad_strats 0.1" in message
    assert complaint in message


def test_an_entry_point_that_fails_to_import_is_a_config_error(install: _Installer) -> None:
    install(
        "crashing_strats",
        "crashing_strats",
        "import no_such_module_here\n",
        "x = crashing_strats:X",
    )
    with pytest.raises(
        ConfigError, match=r"entry point 'x' .* of crashing_strats 0.1.*ModuleNotFoundError"
    ):
        load_registry()


def test_two_plugins_with_one_name_clash(install: _Installer) -> None:
    install("my_strats", "my_strats", PLUGIN_SOURCE, "my_strat = my_strats:MyStrat")
    install("other_strats", "other_strats", PLUGIN_SOURCE, "my_strat = other_strats:MyStrat")
    with pytest.raises(ConfigError, match="strategy name 'my_strat' is already registered by"):
        load_registry()


def test_a_registry_refuses_unmarked_classes_and_duplicates() -> None:
    class Unmarked(SmaCross):
        pass

    with pytest.raises(ConfigError, match="not marked with @strategy"):
        StrategyRegistry([Unmarked])
    assert StrategyRegistry([SmaCross, SmaCross]).names() == ["sma_cross"]
