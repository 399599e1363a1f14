"""Fault injection: misbehaviours a test arms on a running sandbox.

`Faults` is the surface a test calls (``sandbox.faults.fail_rest(503)``); what it arms for later
waits in a `FaultPlan`, which the REST handlers and the streams consume as requests arrive. Faults
that act at once (cutting sockets, sending an odd event) act on the streams directly.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from sandbox import wire

if TYPE_CHECKING:
    from sandbox.account import Account
    from sandbox.market import Market
    from sandbox.streams import DataStream, TradeStream

_HTML_ERRORS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}

Spawn = Callable[[Awaitable[None]], None]


@dataclass(slots=True)
class _RestFault:
    status: int
    times: int
    method: str | None
    path: str | None


@dataclass(slots=True)
class DataDrop:
    """Cut the data sockets during the next minute played, after `after_bars` bars of its batch;
    refuse new data handshakes until `down_steps` more minutes were played."""

    after_bars: int
    down_steps: int


@dataclass(slots=True)
class FaultPlan:
    """The misbehaviours armed for later; each `take_` consumes one occurrence."""

    rest: list[_RestFault] = field(default_factory=list)
    data_drop: DataDrop | None = None
    data_refusals: list[int] = field(default_factory=list)
    lost_orders: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)

    def take_rest(self, method: str, path: str) -> int | None:
        """The status to answer this REST request with instead of handling it, if any."""
        for fault in self.rest:
            if (fault.method in (None, method)) and (fault.path in (None, path)):
                fault.times -= 1
                if fault.times <= 0:
                    self.rest.remove(fault)
                return fault.status
        return None

    def take_lost_order(self) -> bool:
        """Whether the response to this accepted order is to be lost."""
        if self.lost_orders > 0:
            self.lost_orders -= 1
            return True
        return False

    def take_rejection(self) -> tuple[int, str] | None:
        """(status, message) to refuse this order submission with, if any."""
        return self.rejections.pop(0) if self.rejections else None

    def take_refusal(self) -> int | None:
        """The error code to answer this data-stream auth with, if any."""
        return self.data_refusals.pop(0) if self.data_refusals else None

    def take_data_drop(self) -> DataDrop | None:
        """The drop armed for the minute being played, if any (disarmed by taking it)."""
        drop, self.data_drop = self.data_drop, None
        return drop


def fault_response(status: int) -> web.Response:
    """What a failing Alpaca answers: 429 with the X-Ratelimit headers, 502-504 an HTML body
    (from the proxy in front), others a JSON error."""
    if status == 429:
        return web.json_response(
            {"code": 42910000, "message": "rate limit exceeded"},
            status=429,
            headers={
                "X-Ratelimit-Limit": "200",
                "X-Ratelimit-Remaining": "0",
                "X-Ratelimit-Reset": str(int(time.time())),
            },
        )
    if status in _HTML_ERRORS:
        return web.Response(
            status=status,
            text=f"<html>{status} {_HTML_ERRORS[status]}</html>",
            content_type="text/html",
        )
    body = {"code": status * 100_000 + 10_000, "message": "internal error"}
    return web.json_response(body, status=status, dumps=wire.dumps)


class Faults:
    """Misbehaviours to arm; every count means "the next N times".

    Args:
        plan: where faults for later wait for the handlers to take them.
        account, market: the account whose fills `delay_fills` moves, at the market's minute.
        trades, data: the streams whose sockets the immediate faults act on.
        spawn: runs a coroutine as a task the sandbox owns.
    """

    def __init__(
        self,
        plan: FaultPlan,
        *,
        account: Account,
        market: Market,
        trades: TradeStream,
        data: DataStream,
        spawn: Spawn,
    ) -> None:
        self._plan = plan
        self._account = account
        self._market = market
        self._trades = trades
        self._data = data
        self._spawn = spawn

    def drop_data_socket(self, *, after_bars: int = 0, down_steps: int = 0) -> None:
        """During the next minute played, send each data socket only the first `after_bars`
        bars of its batch, then cut it without a close frame; answer new data handshakes with
        HTTP 503 until `down_steps` more minutes were played. Unsent bars stay in the history."""
        self._plan.data_drop = DataDrop(after_bars, down_steps)

    def refuse_data(self, code: int = 406, times: int = 1) -> None:
        """Answer the next `times` data-stream auth messages with error `code`, then close."""
        self._plan.data_refusals.extend([code] * times)

    def drop_trade_socket(self, *, hold: bool = False) -> None:
        """Cut every trade-updates socket now, without a close frame; with `hold`, answer new
        trade-stream handshakes with HTTP 503 until `restore_trade_socket`."""
        self._trades.refusing = self._trades.refusing or hold
        self._trades.cut_all()

    def restore_trade_socket(self) -> None:
        """Accept trade-stream handshakes again (after `drop_trade_socket(hold=True)`)."""
        self._trades.refusing = False

    def fail_rest(
        self, status: int, *, times: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer the next `times` REST requests (matching `method` and the exact `path` when
        given) with `status` before handling them: 429 carries the X-Ratelimit headers, 502-504
        an HTML body, others a JSON error."""
        self._plan.rest.append(_RestFault(status, times, method and method.upper(), path))

    def restore_rest(self) -> None:
        """Disarm every REST failure still armed by `fail_rest` (an outage ends)."""
        self._plan.rest.clear()

    def lose_order_response(self, times: int = 1) -> None:
        """The next `times` accepted orders are created (and will fill), then the connection is
        closed without an HTTP response."""
        self._plan.lost_orders += times

    def reject_orders(
        self, status: int = 422, message: str = "order rejected by sandbox", times: int = 1
    ) -> None:
        """Refuse the next `times` order submissions with `status` and `message`."""
        self._plan.rejections.extend([(status, message)] * times)

    def delay_fills(self, minutes: int) -> None:
        """Open and later orders fill `minutes` minutes later than they would (0 undoes it)."""
        self._account.delay_fills(minutes, self._market.played)

    def send_unknown_event(self) -> None:
        """Send a trade_updates event of an unknown type with extra keys, now."""

        async def send() -> None:
            orders = list(self._account.orders.values())
            now = wire.local_iso(self._market.now_ns, self._market.tz)
            await self._trades.emit(wire.unknown_event(orders[-1] if orders else None, now))

        self._spawn(send())

    def silence_data(self) -> None:
        """The data sockets open now stay open but send nothing more (new ones work)."""
        self._data.silence_all()
