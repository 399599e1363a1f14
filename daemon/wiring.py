"""The composition root: validated settings to engine, broker and listeners.

Every driver builds through here (replay, paced replay, walk-forward, the live daemon, the
audit), so they all decide with the same parts wired the same way.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from brokers.simulated import SimulatedBroker
from composer.composer import Composer
from composer.registry import load_registry
from daemon.config import LoadedConfig, build_strategies
from daemon.engine import Engine, EngineListener
from feeds.bar import NS_PER_DAY
from feeds.calendar import SessionCalendar
from feeds.days import local_midnight_ns
from feeds.errors import ConfigError
from feeds.replay import ReplaySource
from feeds.sanity import SanityChecker
from portfolio.ledger import Ledger
from portfolio.order_book import OrderBook
from portfolio.rebalance import Rebalancer
from portfolio.risk import RiskGate

DAY_TZ = "America/New_York"


def build_engine(
    loaded: LoadedConfig,
    universe: list[str],
    listener: EngineListener,
    *,
    trade_from_ts: int | None = None,
) -> tuple[Engine, SimulatedBroker]:
    """The engine and the simulated broker, every part built from the validated config.

    Args:
        trade_from_ts: slices that start earlier only warm the strategies up (no orders).
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
    prefix = settings.run.order_id_prefix or f"td{loaded.digest[:6]}"
    engine = Engine(
        symbols=universe,
        bar_ns=bar_ns,
        sanity=sanity,
        composer=composer,
        ledger=Ledger(settings.run.start_cash),
        order_book=OrderBook(),
        rebalancer=Rebalancer(
            settings.rebalance, id_prefix=prefix, cash_limited=settings.broker.account == "cash"
        ),
        risk=RiskGate(settings.risk, fractional=settings.rebalance.fractional),
        listener=listener,
        stale_after_slices=settings.sanity.stale_after_slices,
        flatten_on_kill=settings.risk.on_kill == "flatten",
        trade_from_ts=trade_from_ts,
    )
    broker = SimulatedBroker(settings.broker, start_cash=settings.run.start_cash)
    return engine, broker


def open_source(loaded: LoadedConfig, *, warmup_from: date | None = None) -> ReplaySource:
    """The configured data, over the run's range (from `warmup_from` when given).

    Raises:
        SourceError: the data cannot be read, the range leaves no bar, or the bars are not
            spaced as `data.timeframe` says.
    """
    settings = loaded.settings
    run = settings.run
    first = warmup_from or run.start
    return ReplaySource(
        Path(settings.data.path),
        symbols=settings.symbols or None,
        start_ns=day_start_ns(first) if first else None,
        end_ns=day_start_ns(run.end + timedelta(days=1)) if run.end else None,
        timezone=settings.data.timezone,
        timeframe=settings.data.timeframe,
    )


def day_start_ns(day: date) -> int:
    return local_midnight_ns(day, DAY_TZ)
