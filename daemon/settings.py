"""The settings tree: each component's model lives beside the component; this composes them."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokers.simulated import SimulatedBrokerSettings
from composer.settings import ComposerSettings, StrategySpec
from feeds.replay import DataSettings
from feeds.sanity import SanitySettings
from portfolio.rebalance import RebalanceSettings
from portfolio.risk import RiskSettings

_PREFIX = re.compile(r"^[A-Za-z0-9]{1,16}$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-/]{0,15}$")


class RunSettings(BaseModel):
    """What one run is: its money, its window, where it writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_cash: Decimal = Field(Decimal(100_000), gt=0)
    # Client order ids start with this. None: "td" and a hash of the resolved config, so a
    # restart of the same config makes the same ids (idempotent) and another config does not.
    order_id_prefix: str | None = None
    start: date | None = None
    end: date | None = None  # inclusive
    out_dir: str = "out"

    @field_validator("order_id_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not _PREFIX.match(value):
            raise ValueError("must be 1 to 16 ASCII letters or digits")
        return value

    @model_validator(mode="after")
    def _window(self) -> RunSettings:
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class LogSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


# The live issue adds the Alpaca brokers here as a union discriminated by `type`.
BrokerSettings: TypeAlias = SimulatedBrokerSettings


class Settings(BaseModel):
    """The whole resolved configuration of one daemon or replay."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The universe. Empty: every symbol the data has.
    symbols: list[str] = Field(default_factory=list)
    data: DataSettings
    sanity: SanitySettings = SanitySettings()
    strategies: dict[str, StrategySpec] = Field(min_length=1)
    composer: ComposerSettings = ComposerSettings()
    rebalance: RebalanceSettings = RebalanceSettings()
    risk: RiskSettings = RiskSettings()
    broker: BrokerSettings = SimulatedBrokerSettings()
    run: RunSettings = RunSettings()
    log: LogSettings = LogSettings()

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for raw in value:
            symbol = str(raw).strip().upper()
            if not _SYMBOL.match(symbol):
                raise ValueError(f"{raw!r} is not a symbol")
            if symbol in out:
                raise ValueError(f"{symbol} is listed twice")
            out.append(symbol)
        return out
