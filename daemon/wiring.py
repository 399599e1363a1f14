"""The composition root: validated settings to engine, broker and listeners.

Every driver builds through here (replay, paced replay, walk-forward, the live daemon, the
audit), so they all decide with the same parts wired the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, assert_never

from brokers.orders import TimeInForce
from brokers.simulated import SimulatedBroker
from composer.composer import Composer
from composer.registry import load_registry
from daemon.config import LoadedConfig, build_strategies
from daemon.engine import Engine, EngineListener, ListenerFanout
from daemon.logs import EventLog
from daemon.memory import arrow_on_system_heap
from daemon.recorder import Recorder
from feeds.bar import NS_PER_DAY, NS_PER_MINUTE
from feeds.calendar import SessionCalendar
from feeds.days import local_midnight_ns
from feeds.errors import ConfigError
from feeds.replay import ReplaySource
from feeds.sanity import SanityChecker
from portfolio.ledger import Ledger
from portfolio.order_book import OrderBook
from portfolio.rebalance import Rebalancer
from portfolio.risk import RiskGate

if TYPE_CHECKING:
    from brokers.alpaca_rest import AlpacaRest
    from brokers.base import LiveBroker
    from daemon.service.telemetry import Telemetry

DAY_TZ = "America/New_York"


def build_engine(
    loaded: LoadedConfig,
    universe: list[str],
    listener: EngineListener,
    *,
    trade_from_ts: int | None = None,
    decides: bool = True,
    id_prefix: str | None = None,
    broker_bar_ns: int | None = None,
) -> tuple[Engine, SimulatedBroker]:
    """The engine and the simulated broker, every part built from the validated config.

    Args:
        trade_from_ts: slices that start earlier only warm the strategies up (no orders).
        decides: False to follow an account without deciding (tracking).
        id_prefix: the client order id prefix (default: `run.order_id_prefix`, else one
            from the config's digest); the audit passes the one the live run used.
    """
    settings = loaded.settings
    strategies = build_strategies(loaded, load_registry(), universe)
    try:
        composer = Composer(settings.composer, strategies, universe)
    except ConfigError as e:
        # The composer's messages start with the key path; name the file that set it.
        key = tuple(str(e).split(":", 1)[0].split("."))
        raise ConfigError(f"{loaded.origin(key)}: {e}") from None
    bar_ns = settings.data.bar_ns()
    intraday = bar_ns < NS_PER_DAY
    calendar = (
        SessionCalendar(settings.sanity.calendar)
        if intraday and settings.sanity.session != "any"
        else None
    )
    sanity = SanityChecker(settings.sanity, bar_ns=bar_ns, calendar=calendar)
    prefix = id_prefix or order_id_prefix(loaded)
    tif = settings.execution.time_in_force()
    engine = Engine(
        symbols=universe,
        bar_ns=bar_ns,
        sanity=sanity,
        composer=composer,
        ledger=Ledger(settings.run.start_cash),
        order_book=OrderBook(),
        rebalancer=Rebalancer(
            settings.rebalance,
            id_prefix=prefix,
            cash_limited=settings.broker.account == "cash",
            time_in_force=tif,
        ),
        risk=RiskGate(settings.risk, fractional=settings.rebalance.fractional),
        listener=listener,
        stale_after_slices=settings.sanity.stale_after_slices,
        flatten_on_kill=settings.risk.on_kill == "flatten",
        trade_from_ts=trade_from_ts,
        decides=decides,
    )
    broker = simulated_broker(loaded, bar_ns=broker_bar_ns or bar_ns)
    return engine, broker


def simulated_broker(loaded: LoadedConfig, *, bar_ns: int) -> SimulatedBroker:
    """The simulated broker of the config; with the session calendar and the bar length when
    the execution style trades in the auctions (opg, cls)."""
    settings = loaded.settings
    if settings.execution.time_in_force() is TimeInForce.DAY:
        return SimulatedBroker(settings.broker, start_cash=settings.run.start_cash)
    return SimulatedBroker(
        settings.broker,
        start_cash=settings.run.start_cash,
        calendar=SessionCalendar(settings.sanity.calendar),
        bar_ns=bar_ns,
    )


def order_id_prefix(loaded: LoadedConfig) -> str:
    """The prefix of the client order ids this config's runs give their orders."""
    return loaded.settings.run.order_id_prefix or f"td{loaded.digest[:6]}"


def open_source(loaded: LoadedConfig, *, warmup_from: date | None = None) -> ReplaySource:
    """The configured data, over the run's range (from `warmup_from` when given).

    Raises:
        SourceError: the data cannot be read, the range leaves no bar, or the bars are not
            spaced as `data.timeframe` says.
    """
    settings = loaded.settings
    run = settings.run
    first = warmup_from or run.start
    arrow_on_system_heap()
    start_ns = day_start_ns(first) if first else None
    end_ns = day_start_ns(run.end + timedelta(days=1)) if run.end else None
    return ReplaySource(
        Path(settings.data.path),
        symbols=settings.symbols or None,
        start_ns=start_ns,
        end_ns=end_ns,
        timezone=settings.data.timezone,
        timeframe=settings.data.timeframe,
    )


def day_start_ns(day: date) -> int:
    return local_midnight_ns(day, DAY_TZ)


# -- the live daemon's parts -------------------------------------------------------------------

KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
BrokerType: TypeAlias = Literal["simulated", "alpaca"]


def credentials(env: Mapping[str, str]) -> tuple[str, str]:
    """The Alpaca keys from the environment (never from files).

    Raises:
        ConfigError: one of them is missing, naming which.
    """
    key = env.get(KEY_ENV, "").strip()
    secret = env.get(SECRET_ENV, "").strip()
    missing = [name for name, value in ((KEY_ENV, key), (SECRET_ENV, secret)) if not value]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: export your Alpaca API key id and secret key "
            "(paper keys for mode paper; for `tradingd sandbox`, any non-empty values)"
        )
    return key, secret


def check_live(loaded: LoadedConfig, *, allow_live: bool) -> BrokerType:
    """What `tradingd run` needs of the config before anything connects; the broker type.

    Raises:
        ConfigError: naming the file and key.
    """
    settings = loaded.settings
    mode = settings.live.mode
    if mode == "live" and not allow_live:
        raise ConfigError(
            f"{loaded.origin(('live', 'mode'))}: live.mode is live, which trades real money: "
            "add --live to the command line to confirm"
        )
    if allow_live and mode != "live":
        raise ConfigError(f"--live given, but live.mode is {mode}: set live.mode: live")
    if not settings.symbols:
        raise ConfigError(f"{loaded.files[-1]}: symbols: list the symbols to trade")
    return broker_type(loaded)


def broker_type(loaded: LoadedConfig) -> BrokerType:
    """`broker.type`, or what `live.mode` implies when it is not set (sim: simulated)."""
    settings = loaded.settings
    mode = settings.live.mode
    implied: BrokerType = "simulated" if mode == "sim" else "alpaca"
    if "type" not in settings.broker.model_fields_set:
        return implied
    chosen = settings.broker.type
    if (chosen == "simulated") != (mode == "sim"):
        raise ConfigError(
            f"{loaded.origin(('broker', 'type'))}: broker.type is {chosen} but live.mode is "
            f"{mode}: mode sim trades with the simulated broker, paper, live and track with "
            "an account's broker"
        )
    return chosen


def live_broker(
    loaded: LoadedConfig,
    kind: BrokerType,
    *,
    rest: AlpacaRest,
    keys: tuple[str, str],
    urls: Mapping[str, str],
) -> LiveBroker:
    """The broker `tradingd run` trades through; track mode wraps it read-only.

    A second adapter is a module in brokers/ and one entry here.
    """
    settings = loaded.settings
    live = settings.live
    broker: LiveBroker
    match kind:
        case "simulated":
            from brokers.simulated_live import SimulatedLiveBroker

            # It is shown Alpaca's minutes, whatever the strategies' timeframe.
            broker = SimulatedLiveBroker(simulated_broker(loaded, bar_ns=NS_PER_MINUTE))
        case "alpaca":
            from brokers.alpaca import AlpacaBroker

            broker = AlpacaBroker(
                rest=rest,
                stream_url=urls["trade_stream"],
                key=keys[0],
                secret=keys[1],
                backoff_min_s=live.backoff_min_s,
                backoff_max_s=live.backoff_max_s,
            )
        case _:
            assert_never(kind)
    if live.mode == "track":
        from brokers.read_only import ReadOnlyBroker

        broker = ReadOnlyBroker(broker)
    return broker


def market_rest(
    loaded: LoadedConfig, *, keys: tuple[str, str], urls: Mapping[str, str]
) -> AlpacaRest:
    """Alpaca's REST client: the market clock and calendar (and the Alpaca broker's requests,
    under one rate limit)."""
    from brokers.alpaca_rest import AlpacaRest

    live = loaded.settings.live
    return AlpacaRest(
        key=keys[0],
        secret=keys[1],
        url=urls["trading"],
        timeout_s=live.request_timeout_s,
        max_requests_per_minute=live.max_requests_per_minute,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveParts:
    """Everything `tradingd run` is built from, from the validated config and the environment.

    Attributes:
        prefix: the client order id prefix (with its dash) of the orders this run places.
    """

    loaded: LoadedConfig
    mode: str
    keys: tuple[str, str]
    urls: dict[str, str]
    symbols: list[str]
    run_id: str
    out_dir: Path
    recorder: Recorder
    telemetry: Telemetry
    rest: AlpacaRest
    broker: LiveBroker
    engine: Engine
    prefix: str


def build_live(
    loaded: LoadedConfig,
    *,
    env: Mapping[str, str],
    log: EventLog,
    allow_live: bool,
    out_dir: Path | None,
    now_ns: int,
) -> LiveParts:
    """The live daemon's parts: checks, keys, the recorder, telemetry, the broker, the engine.

    Raises:
        ConfigError: the config cannot run live, or the keys are missing.
    """
    kind = check_live(loaded, allow_live=allow_live)
    settings = loaded.settings
    mode = settings.live.mode
    keys = credentials(env)
    urls = settings.live.urls()
    symbols = list(settings.symbols)
    started = datetime.fromtimestamp(now_ns / 1e9, UTC)
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{mode}-{loaded.digest}"
    out = out_dir if out_dir is not None else Path(settings.run.out_dir) / run_id
    recorder = Recorder(out, log, flush_each_slice=True)
    from daemon.service.telemetry import Telemetry

    telemetry = Telemetry(mode=mode, symbols=symbols, strategies=list(settings.strategies))
    rest = market_rest(loaded, keys=keys, urls=urls)
    broker = live_broker(loaded, kind, rest=rest, keys=keys, urls=urls)
    engine, _ = build_engine(
        loaded,
        symbols,
        ListenerFanout(recorder, telemetry),
        trade_from_ts=2**63 - 1,  # warming up until the daemon says otherwise
        decides=not broker.read_only,
    )
    telemetry.attach(ledger=engine.ledger, risk=engine.risk)
    return LiveParts(
        loaded=loaded,
        mode=mode,
        keys=keys,
        urls=urls,
        symbols=symbols,
        run_id=run_id,
        out_dir=out,
        recorder=recorder,
        telemetry=telemetry,
        rest=rest,
        broker=broker,
        engine=engine,
        prefix=order_id_prefix(loaded) + "-",
    )
