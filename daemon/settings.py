"""The settings tree: each component's model lives beside the component; this composes them."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from brokers.settings import SimulatedBrokerSettings
from composer.settings import ComposerSettings, StrategySpec
from daemon.execution import ExecutionSettings
from daemon.service.notify.settings import NotifySettings
from feeds.limits import MAX_MONEY, MAX_SECONDS, check_date, check_money_places
from feeds.replay import DataSettings
from feeds.sanity import SanitySettings
from portfolio.rebalance import RebalanceSettings
from portfolio.risk import RiskSettings

_PREFIX = re.compile(r"^[A-Za-z0-9]{1,16}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-/]{0,15}$")


class RunSettings(BaseModel):
    """What one run is: its money, its window, where it writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_cash: Decimal = Field(Decimal(100_000), gt=0, le=MAX_MONEY)
    # Client order ids start with this. None: "td" and a hash of the resolved config, so a
    # restart of the same config makes the same ids (idempotent) and another config does not.
    order_id_prefix: str | None = None
    start: date | None = None
    end: date | None = None  # inclusive
    out_dir: str = "out"

    @field_validator("start_cash")
    @classmethod
    def _cents(cls, value: Decimal) -> Decimal:
        return check_money_places(value)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _a_date_as_written(cls, value: object) -> object:
        # pydantic would read a number (or numeric text) as seconds since 1970: 0 is 1970-01-01.
        if isinstance(value, str) and not _DATE.match(value.strip()):
            raise ValueError(f"{value!r} is not a date: write it as YYYY-MM-DD")
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"got the number {value}: write the date as YYYY-MM-DD")
        return value

    @field_validator("start", "end")
    @classmethod
    def _date_in_range(cls, value: date | None) -> date | None:
        return check_date(value)

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


# The simulated broker: replays, and `tradingd run` in mode `sim`. Alpaca is set under `live`.
BrokerSettings: TypeAlias = SimulatedBrokerSettings

Mode: TypeAlias = Literal["paper", "live", "sim", "track"]
Feed: TypeAlias = Literal["iex", "sip", "delayed_sip", "test"]

ALPACA_TRADING_URLS = {
    "paper": "https://paper-api.alpaca.markets",
    "live": "https://api.alpaca.markets",
}
ALPACA_DATA_URL = "https://data.alpaca.markets"
ALPACA_DATA_STREAM_URL = "wss://stream.data.alpaca.markets/v2/{feed}"


class LiveSettings(BaseModel):
    """`tradingd run`: how the daemon meets Alpaca.

    Attributes:
        mode: paper (Alpaca's paper API), live (real money: also needs `--live`), sim (Alpaca's
            data into the simulated broker), track (read-only: positions and P&L, no orders).
        feed: the market-data feed; `test` is Alpaca's around-the-clock test stream (FAKEPACA).
        trading_url, trade_stream_url, data_stream_url, data_url: None for Alpaca's own (by
            mode); set them to point the daemon elsewhere, e.g. at `tradingd sandbox`.
        slice_grace_s: a minute's slice closes when every symbol has reported, or this long
            after its first bar arrived (IEX has minutes without trades).
        silence_s: no message for this long while the market is open: reconnect the data stream.
        warmup: load recent bars to fill the strategies' lookbacks before trading.
        cancel_on_stop: cancel the daemon's open orders on SIGINT/SIGTERM.
        stop_deadline_s: a stop finishes within this, in-flight submits resolved or not.
        max_decision_age_s: an order decided longer ago than this (market time) is never sent:
            a slice that old when it closes sends nothing, and an order still unsent at that
            age is dropped. Default: half a bar of `data.timeframe` (30 s for minute bars,
            12 h for daily bars, so a daily decision is not held for being slower than 30 s).
        connection_limit_backoff_s: after the data stream's 406 (connection limit exceeded),
            wait at least this long before connecting again (Alpaca holds a dead socket's slot
            for about 90 s).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "paper"
    feed: Feed = "iex"
    trading_url: str | None = None
    trade_stream_url: str | None = None
    data_stream_url: str | None = None
    data_url: str | None = None
    slice_grace_s: float = Field(3.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    silence_s: float = Field(120.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    backoff_min_s: float = Field(1.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    backoff_max_s: float = Field(60.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    warmup: bool = True
    request_timeout_s: float = Field(10.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    max_requests_per_minute: int = Field(190, gt=0, le=200)
    clock_poll_s: float = Field(60.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    cancel_on_stop: bool = True
    stop_deadline_s: float = Field(10.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    max_decision_age_s: float | None = Field(None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    connection_limit_backoff_s: float = Field(90.0, gt=0, le=MAX_SECONDS, allow_inf_nan=False)

    @field_validator("trading_url", "trade_stream_url", "data_stream_url", "data_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|wss?)://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s):// or ws(s):// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _backoff(self) -> LiveSettings:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s is below backoff_min_s")
        return self

    def urls(self) -> dict[str, str]:
        """Every base URL, Alpaca's by mode where not set."""
        account = "live" if self.mode == "live" else "paper"
        trading = self.trading_url or ALPACA_TRADING_URLS[account]
        stream = self.trade_stream_url or (
            trading.replace("https://", "wss://").replace("http://", "ws://") + "/stream"
        )
        return {
            "trading": trading,
            "trade_stream": stream,
            "data_stream": self.data_stream_url or ALPACA_DATA_STREAM_URL.format(feed=self.feed),
            "data": self.data_url or ALPACA_DATA_URL,
        }


class HttpSettings(BaseModel):
    """The HTTP server of `tradingd run` and `tradingd replay --serve`: /metrics, /healthz,
    /readyz, /state and the control plane (with TRADINGD_CONTROL_TOKEN set).

    Attributes:
        host: 127.0.0.1 by default; any other address is reachable from elsewhere (a warning
            is logged). In a container, 0.0.0.0 with the port published on the host's loopback.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class RetentionSettings(BaseModel):
    """How much of its history the journal keeps (`state.retention`).

    The daemon snapshots its ledger at each session's close; a restart reads only what came
    after the last snapshot, and an audit needs the bars before the sessions it checks (one
    session is plenty for minute strategies). After each snapshot, inputs and decisions older
    than the last `sessions` sessions leave the file.

    Attributes:
        sessions: sessions of inputs kept in the journal; None keeps everything.
        archive: parquet (compressed files in STATE_DIR/archive/, readable with any Parquet
            tool) or drop (gone).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sessions: int | None = Field(30, ge=2, le=100_000)
    archive: Literal["parquet", "drop"] = "parquet"


class StateSettings(BaseModel):
    """What `tradingd run` keeps across restarts.

    Attributes:
        dir: the state directory: the journal (SQLite) lives there.
        unknown_positions: at start, positions the broker holds that this daemon did not open:
            adopt them into the ledger (and trade them toward the targets), ignore them (leave
            them out of the ledger: never traded), or refuse to start.
        retention: what the journal keeps (see RetentionSettings).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dir: str = "state"
    unknown_positions: Literal["adopt", "ignore", "refuse"] = "adopt"
    retention: RetentionSettings = RetentionSettings()


class Settings(BaseModel):
    """The whole resolved configuration of one daemon or replay."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The universe. Empty: every symbol the data has.
    symbols: list[str] = Field(default_factory=list)
    data: DataSettings
    execution: ExecutionSettings = ExecutionSettings()
    sanity: SanitySettings = SanitySettings()
    strategies: dict[str, StrategySpec] = Field(min_length=1)
    composer: ComposerSettings = ComposerSettings()
    rebalance: RebalanceSettings = RebalanceSettings()
    risk: RiskSettings = RiskSettings()
    broker: BrokerSettings = SimulatedBrokerSettings()
    run: RunSettings = RunSettings()
    live: LiveSettings = LiveSettings()
    http: HttpSettings = HttpSettings()
    state: StateSettings = StateSettings()
    log: LogSettings = LogSettings()
    notify: NotifySettings = NotifySettings()

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
