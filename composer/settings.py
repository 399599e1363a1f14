"""Configuration of the strategies and the composer (the `strategies:` and `composer:` keys)."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrategySpec(BaseModel):
    """One configured strategy, listed under its id in `strategies:`.

    Attributes:
        type: the registered strategy name; None: the id it is listed under.
        params: the strategy's params, validated by its params model when it is created.
        symbols: the symbols it trades, a subset of the universe; None: all of the universe.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str | None = Field(default=None, min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    symbols: list[str] | None = None

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must list at least one symbol (leave it out for all symbols)")
        seen: set[str] = set()
        for symbol in value:
            if symbol in seen:
                raise ValueError(f"{symbol} is listed twice")
            seen.add(symbol)
        return value


class RebalanceSchedule(BaseModel):
    """When the composer recomputes targets.

    Attributes:
        every: "slice": every slice; "minutes": the first slice of each `minutes`-long bucket of
            UTC epoch time (buckets are aligned to the epoch, so 60 means on UTC hours and 1440
            on UTC midnights); "daily": the first slice at or after `at` in `timezone`, once per
            local date.
        minutes: the bucket length, required for (and only allowed with) every="minutes".
        at: the local time of day, required for (and only allowed with) every="daily". Quote
            it in YAML ("15:50"): unquoted, YAML 1.1 reads 15:50 as the number 950.
        timezone: the IANA zone of `at`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    every: Literal["slice", "minutes", "daily"] = "slice"
    minutes: int | None = Field(default=None, gt=0)
    at: datetime.time | None = None
    timezone: str = "America/New_York"

    @field_validator("at", mode="before")
    @classmethod
    def _at_not_a_number(cls, value: object) -> object:
        # pydantic would read 950 as 950 seconds after midnight (00:15:50): never what was meant.
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(
                f"got the number {value}; write the time as a quoted string, e.g. '15:50' "
                "(unquoted, YAML reads 15:50 as the number 950)"
            )
        return value

    @field_validator("at")
    @classmethod
    def _at_naive(cls, value: datetime.time | None) -> datetime.time | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("give a local time without an offset; set the zone in `timezone`")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like 'America/New_York')"
            ) from e
        return value

    @model_validator(mode="after")
    def _fields_of_every(self) -> RebalanceSchedule:
        if self.every == "minutes" and self.minutes is None:
            raise ValueError("minutes: required when every is 'minutes'")
        if self.every != "minutes" and self.minutes is not None:
            raise ValueError(
                f"minutes: only used when every is 'minutes' (every is {self.every!r})"
            )
        if self.every == "daily" and self.at is None:
            raise ValueError("at: required when every is 'daily' (e.g. at: '15:50')")
        if self.every != "daily" and self.at is not None:
            raise ValueError(f"at: only used when every is 'daily' (every is {self.every!r})")
        return self


class ComposerSettings(BaseModel):
    """How the strategies' signals become one set of target weights.

    Attributes:
        method: "equal": each strategy gets 1/n of the capital, spread equally over its symbols;
            "static": capital weights from `strategy_weights`, spread equally; "inverse_vol":
            1/n per strategy, spread over its symbols in proportion to 1/volatility.
        strategy_weights: for "static": strategy id -> capital weight (>= 0). Strategies left
            out get 0; the weights need not sum to 1.
        max_gross: the cap on the sum of absolute target weights (1.0: no leverage).
        vol_lookback: close-to-close log returns in the volatility estimate of "inverse_vol".
        rebalance: when targets are recomputed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["equal", "static", "inverse_vol"] = "equal"
    strategy_weights: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    max_gross: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    vol_lookback: int = Field(default=20, ge=2)
    rebalance: RebalanceSchedule = RebalanceSchedule()

    @model_validator(mode="after")
    def _weights_for_static(self) -> ComposerSettings:
        if self.method == "static":
            if not self.strategy_weights:
                raise ValueError("strategy_weights: required for method 'static'")
            if not any(w > 0 for w in self.strategy_weights.values()):
                raise ValueError("strategy_weights: at least one weight must be > 0")
        elif self.strategy_weights:
            raise ValueError(
                f"strategy_weights: only used by method 'static' (method is {self.method!r})"
            )
        return self
