"""Configuration of the strategies and the composer (the `strategies:` and `composer:` keys)."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from feeds.limits import MAX_LEVERAGE, MAX_WINDOW_BARS

MAX_STRATEGY_WEIGHT = 1_000_000.0
"""The largest relative capital weight of a strategy (static weights, regime table)."""
MINUTES_PER_YEAR = 366 * 24 * 60
""""every: minutes" buckets of up to a (leap) year."""
MAX_PERIODS_PER_YEAR = 10_000_000.0
"""Bars per year of vol targeting: one-second bars of regular sessions are about 5.9 million."""

_Weight = Annotated[float, Field(ge=0, le=MAX_STRATEGY_WEIGHT, allow_inf_nan=False)]


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
    minutes: int | None = Field(default=None, gt=0, le=MINUTES_PER_YEAR)
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


REGIMES: tuple[str, ...] = ("up_low_vol", "up_high_vol", "down_low_vol", "down_high_vol")
"""The regime labels of method "regime": trend direction crossed with the volatility level."""


class RiskParitySettings(BaseModel):
    """The `composer.risk_parity:` settings of method "risk_parity".

        risk_parity: {across: symbols, lookback: 60, shrinkage: 0.1}

    Attributes:
        across: "symbols": each strategy gets 1/n of the capital, split over its symbols so
            that each contributes the same risk; "strategies": the capital weights make each
            strategy's paper returns contribute the same risk, and each strategy splits
            equally over its symbols.
        lookback: the number of returns (bars, or slices for "strategies") in the covariance.
        shrinkage: weight of the diagonal in the covariance, (1 - k) * sample + k * diagonal:
            0 is the sample covariance, 1 ignores correlations (gives inverse volatility).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    across: Literal["symbols", "strategies"] = "symbols"
    lookback: int = Field(default=60, ge=2, le=MAX_WINDOW_BARS)
    shrinkage: float = Field(default=0.1, ge=0.0, le=1.0, allow_inf_nan=False)


class PerformanceSettings(BaseModel):
    """The `composer.performance:` settings of method "performance".

        performance: {lookback: 60, shrink: 0.5, floor: 0.05, cap: 0.6}

    Each strategy's score is the mean over std of its last `lookback` paper returns (one per
    slice; a Sharpe ratio without annualization); the positive scores, normalized to sum to
    1, are shrunk toward equal weights and then bounded by `floor` and `cap` (the weights sum
    to 1).

    Attributes:
        lookback: paper returns (slices) in the score.
        shrink: weight of the equal weights, (1 - shrink) * score weights + shrink / n.
        floor: the least capital weight of a strategy; floor * n must be <= 1.
        cap: the most capital weight of a strategy; cap * n must be >= 1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lookback: int = Field(default=60, ge=2, le=MAX_WINDOW_BARS)
    shrink: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    floor: float = Field(default=0.0, ge=0.0, lt=1.0, allow_inf_nan=False)
    cap: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _floor_below_cap(self) -> PerformanceSettings:
        if self.floor > self.cap:
            raise ValueError(f"floor: {self.floor} is above cap {self.cap}")
        return self


class RegimeSettings(BaseModel):
    """The `composer.regime:` settings of method "regime".

        regime:
          symbol: SPX
          trend_lookback: 50      # up when the return over the last 50 bars is >= 0
          vol_lookback: 20        # realized vol: std of the last 20 log returns
          vol_percentile: 0.7     # high vol: above the 70th percentile of its history
          vol_history: 250        # realized vols in that history
          min_dwell: 5            # bars a new regime must persist before it takes effect
          table:                  # regime -> strategy id -> capital weight
            up_low_vol: {trend: 0.6, momentum: 0.4}
            up_high_vol: {trend: 0.3, reversion: 0.3}
            down_low_vol: {reversion: 0.5}
            down_high_vol: {reversion: 0.2}

    Attributes:
        symbol: the reference symbol (in the universe; no strategy needs to trade it).
        trend_lookback: bars in the trend return close / close[trend_lookback bars ago] - 1.
        vol_lookback: close-to-close log returns in the realized volatility.
        vol_percentile: in (0, 1): high vol when the realized vol is above this quantile of
            the last `vol_history` realized vols (the current one included).
        vol_history: realized vols the percentile is taken over.
        min_dwell: consecutive bars of the reference symbol a newly classified regime must
            persist before it takes effect (1: at once). The first regime waits too.
        table: every regime of `REGIMES` -> strategy id -> capital weight (>= 0, at least one
            > 0 per regime; strategies left out get 0; the weights need not sum to 1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(min_length=1)
    trend_lookback: int = Field(default=50, ge=1, le=MAX_WINDOW_BARS)
    vol_lookback: int = Field(default=20, ge=2, le=MAX_WINDOW_BARS)
    vol_percentile: float = Field(default=0.7, gt=0.0, lt=1.0, allow_inf_nan=False)
    vol_history: int = Field(default=250, ge=1, le=MAX_WINDOW_BARS)
    min_dwell: int = Field(default=5, ge=1, le=MAX_WINDOW_BARS)
    table: dict[str, dict[str, _Weight]]

    @field_validator("table")
    @classmethod
    def _every_regime_once(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        unknown = [r for r in value if r not in REGIMES]
        if unknown:
            raise ValueError(
                f"unknown regime(s) {', '.join(unknown)}; the regimes are {', '.join(REGIMES)}"
            )
        missing = [r for r in REGIMES if r not in value]
        if missing:
            raise ValueError(
                f"missing regime(s) {', '.join(missing)}: give weights for every one of "
                f"{', '.join(REGIMES)}"
            )
        for regime, weights in value.items():
            if not any(w > 0 for w in weights.values()):
                raise ValueError(f"{regime}: at least one strategy weight must be > 0")
        return value


class VolTargetSettings(BaseModel):
    """The `composer.vol_target:` settings: scale gross exposure toward a target volatility.

        vol_target: {annual_vol: 0.10, lookback: 60, periods_per_year: 252}

    At each rebalance the composed weights w are scaled by annual_vol / vol, where
    vol = sqrt(w' C w * periods_per_year) and C is the (population) covariance of the last
    `lookback` close-to-close returns of the weighted symbols; scaling up stops at `max_gross`.
    Until every weighted symbol has `lookback` returns, the weights are left as composed.

    Attributes:
        annual_vol: the target annualized volatility (0.10 is 10%).
        lookback: returns (bars) in the covariance.
        periods_per_year: bars per year, to annualize: 252 for daily bars, 252 * 390 = 98280
            for minute bars of regular sessions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    annual_vol: float = Field(gt=0.0, allow_inf_nan=False)
    lookback: int = Field(default=60, ge=2, le=MAX_WINDOW_BARS)
    periods_per_year: float = Field(
        default=252.0, gt=0.0, le=MAX_PERIODS_PER_YEAR, allow_inf_nan=False
    )


class ComposerSettings(BaseModel):
    """How the strategies' signals become one set of target weights.

    Attributes:
        method: "equal": each strategy gets 1/n of the capital, spread equally over its symbols;
            "static": capital weights from `strategy_weights`, spread equally; "inverse_vol":
            1/n per strategy, spread over its symbols in proportion to 1/volatility;
            "risk_parity": equal risk contributions (see `risk_parity`); "performance":
            capital weights from each strategy's trailing risk-adjusted paper returns (see
            `performance`); "regime": capital weights from a table per market regime (see
            `regime`).
        strategy_weights: for "static": strategy id -> capital weight (>= 0). Strategies left
            out get 0; the weights need not sum to 1.
        max_gross: the cap on the sum of absolute target weights (1.0: no leverage).
        vol_lookback: close-to-close log returns in the volatility estimate of "inverse_vol".
        rebalance: when targets are recomputed.
        risk_parity: the settings of method "risk_parity" (absent: the defaults); only
            allowed with that method.
        performance: the settings of method "performance" (absent: the defaults); only
            allowed with that method.
        regime: the settings of method "regime": required for it, only allowed with it.
        vol_target: volatility targeting on top of any method; None (absent): off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["equal", "static", "inverse_vol", "risk_parity", "performance", "regime"] = (
        "equal"
    )
    strategy_weights: dict[str, _Weight] = Field(default_factory=dict)
    max_gross: float = Field(default=1.0, gt=0, le=MAX_LEVERAGE, allow_inf_nan=False)
    vol_lookback: int = Field(default=20, ge=2, le=MAX_WINDOW_BARS)
    rebalance: RebalanceSchedule = RebalanceSchedule()
    risk_parity: RiskParitySettings | None = None
    performance: PerformanceSettings | None = None
    regime: RegimeSettings | None = None
    vol_target: VolTargetSettings | None = None

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
        if self.method == "regime" and self.regime is None:
            raise ValueError("regime: required for method 'regime' (symbol and table)")
        for name in ("risk_parity", "performance", "regime"):
            if getattr(self, name) is not None and self.method != name:
                raise ValueError(
                    f"{name}: only used by method {name!r} (method is {self.method!r})"
                )
        return self
