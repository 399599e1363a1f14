"""What the live daemon tells its owner (notifications) and its status page (the feed).

The engine's own news (fills, rejections, the kill switch tripping) comes as `EngineListener`
callbacks, passed on as they happen. Everything else is a change of state the daemon's rooms
already keep (a stream's connection, the journal's failure, a halt, a reset, a reconciliation,
the market's close), noticed by one watch task that compares a handful of attributes twice a
second: no room of the daemon calls out to notify, and a slow or dead notification target can
never hold up a decision (`Notifications.notify` only queues).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from brokers.orders import OrderFilled, OrderPartiallyFilled, OrderRejected
from daemon.engine import ListenerFanout
from daemon.service.notify import (
    DaemonStarted,
    DaemonStopped,
    DaySummary,
    JournalFailed,
    KillSwitchReset,
    Notifications,
    NotifyEvent,
    ReconciliationDiffered,
    StreamDown,
    StreamRestored,
    TradingHalted,
    TradingResumed,
    build_notifications,
)
from daemon.service.notify.events import Stream
from daemon.service.status_feed import StatusFeed
from daemon.timeutil import ticks
from portfolio.journal import JournalError

if TYPE_CHECKING:
    from brokers.base import LiveBroker
    from brokers.orders import ExecutionEvent
    from composer.targets import Targets
    from daemon.engine import Decision, Engine
    from daemon.live.guard import JournalGuard
    from daemon.live.market import MarketData
    from daemon.logs import EventLog
    from daemon.service.telemetry import Telemetry
    from daemon.settings import Settings
    from portfolio.events import KillSwitchTripped
    from portfolio.ledger import Ledger

WATCH_S = 0.5
_NEW_YORK = ZoneInfo("America/New_York")


class _Relay:
    """The engine's news that is a notification as it stands."""

    def __init__(self, notifications: Notifications, tripped: Callable[[], None]) -> None:
        self.notifications = notifications
        self.tripped = tripped

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        pass

    def on_targets(self, targets: Targets) -> None:
        pass

    def on_decision(self, decision: Decision) -> None:
        pass

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        self.notifications.notify(event)
        self.tripped()

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        match event:
            case OrderRejected():
                self.notifications.notify(event)
            case OrderFilled() | OrderPartiallyFilled() if applied:
                self.notifications.notify(event)
            case _:
                pass

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        pass


class Herald:
    """Notifications and the status feed of one live daemon.

    Built with the daemon (a target whose environment variable is unset is a ConfigError
    then); `start` once the daemon trades, `stop` last.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        env: Mapping[str, str],
        log: EventLog,
        mode: str,
        symbols: list[str],
        engine: Engine,
        market: MarketData,
        broker: LiveBroker,
        guard: JournalGuard,
        telemetry: Telemetry,
    ) -> None:
        self.log = log
        self.mode = mode
        self.symbols = symbols
        self.engine = engine
        self.market = market
        self.broker = broker
        self.guard = guard
        self.notifications = build_notifications(
            settings, env, log, market_open=lambda: market.market_open
        )
        telemetry.count_notifications(self.notifications.counters)
        self.feed = StatusFeed()
        self.feed.info["mode"] = mode
        self.feed.now_ns = market.now_ns
        engine.listener = ListenerFanout(
            engine.listener, self.feed, _Relay(self.notifications, self._tripped)
        )
        self._seen: dict[str, Any] = {}
        self._day: dict[str, Any] = {}

    def notify(self, event: NotifyEvent) -> None:
        """Hand `event` to the notifier (it only queues: never waits, never raises)."""
        self.notifications.notify(event)

    async def start(self, spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        """The daemon trades: say so, and watch its state from now on."""
        account = self.broker.account
        number = account.account_number if account is not None else ""
        self.feed.info["account"] = _masked(number)
        self.feed.history(self._journal_history())
        await self.notifications.start()
        self.notify(
            DaemonStarted(mode=self.mode, account=number or None, symbols=tuple(self.symbols))
        )
        # The streams count as up from here: one not up within its target's stream_down_s
        # is told like any outage.
        self._seen = {**self._observe(), "feed": True, "broker": True}
        self._new_day()
        spawn(self.watch(), "herald")

    async def stop(self, fatal: BaseException | None) -> None:
        """Say the daemon stops, and send what is queued (within the notifier's deadline)."""
        if self.notifications.running:
            self.check()  # what changed since the last look is told before the stop
            reason = f"error: {fatal}" if fatal is not None else "requested"
            self.notify(DaemonStopped(reason=reason))
        await self.notifications.stop()

    async def watch(self) -> None:
        """Compare the daemon's state every `WATCH_S` (runs until cancelled)."""
        async for _ in ticks(WATCH_S):
            self.check()

    def check(self) -> None:
        """Tell what changed since the last look."""
        now = self._observe()
        was, self._seen = self._seen, now
        if now == was:
            self._day["max_dd"] = max(self._day.get("max_dd", 0.0), self.engine.ledger.drawdown)
            return
        self.feed.touch()
        self._streams(was, now)
        if now["journal"] is not None and was["journal"] is None:
            self.notify(JournalFailed(error=now["journal"]))
        if now["halted"] != was["halted"]:
            by = "journal" if now["journal"] is not None else "operator"
            self.notify(TradingHalted(by=by) if now["halted"] else TradingResumed())
        if was["kill"] and not now["kill"]:
            self.notify(KillSwitchReset())
        if now["reconciliations"] != was["reconciliations"]:
            last = self.broker.last_reconcile
            if last is not None and last.differences:
                self.notify(ReconciliationDiffered(differences=tuple(last.differences)))
        if was["open"] and not now["open"]:
            self._summarize()
        elif now["open"] and not was["open"]:
            self._new_day()

    def _journal_history(self) -> list[tuple[int, float, float]]:
        """One point per earlier run in the journal: its equity and drawdown when it began
        (the curve over the journal's history after a restart; slices add the rest)."""
        journal = self.guard.journal
        if journal is None:
            return []
        try:
            segments = journal.reader().segments()[:-1]  # the last one is this run's
        except JournalError as e:
            self.log.warning("status_history_unavailable", error=str(e))
            return []
        points = []
        for segment in segments:
            ledger = segment.ledger
            equity = ledger.cash + sum(
                (qty * last for qty, _, last in ledger.positions.values()), Decimal(0)
            )
            high = max(ledger.high_water, equity)
            drawdown = float((high - equity) / high) if high > 0 else 0.0
            points.append((segment.ts, float(equity), drawdown))
        return points

    def _tripped(self) -> None:
        # Seen at once, so a reset before the next look is still told.
        if self._seen:
            self._seen["kill"] = True

    def _observe(self) -> dict[str, Any]:
        return {
            "feed": self.market.connected,
            "broker": self.broker.health().stream_connected,
            "journal": self.guard.failed,
            "halted": self.engine.halted,
            "kill": self.engine.risk.kill_switch,
            "reconciliations": self.broker.reconciliations,
            "open": self.market.market_open,
        }

    def _streams(self, was: dict[str, Any], now: dict[str, Any]) -> None:
        streams: tuple[Stream, ...] = ("feed", "broker")
        for stream in streams:
            if was[stream] and not now[stream]:
                self.notify(StreamDown(stream=stream))
            elif now[stream] and not was[stream]:
                self.notify(StreamRestored(stream=stream))

    def _new_day(self) -> None:
        counters = self.engine.counters
        self._day = {
            "orders": counters.orders,
            "fills": counters.fills,
            "rejected": counters.rejected_orders,
            "max_dd": self.engine.ledger.drawdown,
        }

    def _summarize(self) -> None:
        """The market closed: the day's P&L, orders, fills and worst drawdown."""
        engine = self.engine
        counters = engine.counters
        equity = engine.ledger.equity
        start = engine.risk.day_start_equity
        day = self._day
        self.notify(
            DaySummary(
                day=datetime.fromtimestamp(self.market.now_ns() / 1e9, _NEW_YORK).date(),
                pnl=equity - start if start > 0 else Decimal(0),
                equity=equity,
                orders=counters.orders - day.get("orders", 0),
                fills=counters.fills - day.get("fills", 0),
                rejected=counters.rejected_orders - day.get("rejected", 0),
                max_drawdown=max(day.get("max_dd", 0.0), engine.ledger.drawdown),
            )
        )
        self._new_day()


def _masked(number: str) -> str:
    """An account number shown by its last four characters only."""
    if not number:
        return ""
    return "\u2022" * max(len(number) - 4, 0) + number[-4:]
