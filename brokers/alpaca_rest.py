"""Alpaca's Trading REST API, asynchronously: alpaca-py's TradingClient off the event loop.

alpaca-py's client is synchronous and its `requests.Session` is not thread-safe, so every call
runs on ONE dedicated worker thread. Its blind retry (3 x 3 s on 429/504, POST included) is
switched off and every request gets a timeout: retrying is the adapter's decision, because a
resent POST is only safe after a lookup by client order id (reference 1.9, 5.2).

Responses are read as raw dicts and parsed tolerantly (`brokers.alpaca_json`). Third-party
exceptions, and the parsers' errors, are translated once, here:

    BrokerError
    |- KeysRefused               401: fatal, the keys are wrong for this URL
    |- OrderNotFound             404 where "not found" is an answer
    |- TransientRestError        429, 5xx, timeouts, connection errors (retry_after_s on 429)
    \\- AlpacaRejected           403/422 (and other 4xx): message, status and code from Alpaca
       \\- DuplicateClientOrderId 422 40010001 "client_order_id must be unique"
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import re
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, TypeVar

from brokers.alpaca_json import (
    MarketClock,
    OrderSnapshot,
    Session,
    format_ts,
    parse_account,
    parse_clock,
    parse_order,
    parse_orders,
    parse_position,
    parse_session,
    wire,
)
from brokers.base import AccountSnapshot, PositionSnapshot
from brokers.errors import BrokerError, BrokerRejected, TransientBrokerError
from brokers.orders import OrderType, SubmitOrder
from brokers.ticks import round_to_tick

# The types its calls return are part of this module's surface (`from brokers.alpaca_rest
# import AlpacaRest, MarketClock`), though they are defined with their parsers.
__all__ = [
    "AlpacaRejected",
    "AlpacaRest",
    "DuplicateClientOrderId",
    "KeysRefused",
    "MarketClock",
    "OrderNotFound",
    "OrderSnapshot",
    "Session",
    "TransientRestError",
    "Unsent",
]

_QTY_QUANTUM = Decimal("1e-9")  # Alpaca takes quantities with up to 9 decimals
_WINDOW_S = 60.0
_DUPLICATE_CODE = 40010001
_MAX_RETRY_AFTER_S = 120.0
_T = TypeVar("_T")


class KeysRefused(BrokerError):
    """The trading API answered 401: the keys are wrong, or for the other environment."""


class OrderNotFound(BrokerError):
    """Alpaca answered 404 for an order (or position) that the call named."""


class TransientRestError(TransientBrokerError):
    """429, 5xx, a timeout or a connection error: the outcome of the call is unknown.

    Attributes:
        retry_after_s: on 429, seconds until Alpaca's rate-limit window resets (None if unknown).
        status: the HTTP status, or None for transport errors.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class AlpacaRejected(BrokerRejected):
    """Alpaca refused the request (403, 422 or another 4xx); never retried.

    Attributes:
        message: Alpaca's own message, verbatim (what an OrderRejected reason carries).
        status: the HTTP status (0 when refused before sending, e.g. a quantity rounding to 0).
        code: Alpaca's 8-digit error code, when the body had one.
    """

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}, code {code})" if status else message)
        self.message = message
        self.status = status
        self.code = code


class DuplicateClientOrderId(AlpacaRejected):
    """The client order id was used before: the first POST landed; look the order up."""


class Unsent(Exception):
    """A submit's gate said no once the limiter let it through: no request was made (and its
    place in the rate window was given back). `reason` is the gate's."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _make_session_class(timeout_s: float) -> Any:
    import requests

    class _TimeoutSession(requests.Session):
        """A Session whose every request has a timeout (alpaca-py passes none: issue #415)."""

        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout_s)
            return super().request(method, url, *args, **kwargs)

    return _TimeoutSession()


class AlpacaRest:
    """The Trading API calls the adapter needs, as coroutines.

    Each call is one HTTP request (the listing pages are several), made on a single worker
    thread, after the rate limiter lets it through. No call retries by itself.
    """

    def __init__(
        self,
        *,
        key: str,
        secret: str,
        url: str,
        timeout_s: float = 10.0,
        max_requests_per_minute: int = 190,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_requests_per_minute < 1:
            raise ValueError("max_requests_per_minute must be at least 1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from alpaca.trading.client import TradingClient

        self.url = url.rstrip("/")
        self._client = TradingClient(key, secret, paper=True, raw_data=True, url_override=self.url)
        self._client._retry = 0  # reference 5.2: retrying is ours to decide
        self._client._session = _make_session_class(timeout_s)
        self._timeout_s = timeout_s
        self._max = max_requests_per_minute
        self._monotonic = monotonic
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._limiter = asyncio.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="alpaca-rest"
        )
        self.requests_sent = 0

        # -- orders -------------------------------------------------------------------------------
        self._closed = False

    async def submit_order(
        self, cmd: SubmitOrder, *, gate: Callable[[], str | None] | None = None
    ) -> OrderSnapshot:
        """POST /v2/orders once (no retry). Quantity and limit price go out as exact strings.

        Args:
            gate: asked once the limiter lets the request through, right before it is made: a
                reason not to send it then (the order grew too old waiting, or was withdrawn).

        Raises:
            Unsent: the gate gave a reason; nothing was sent.
        """
        qty = cmd.qty.quantize(_QTY_QUANTUM, rounding=ROUND_DOWN)
        if qty <= 0:
            raise AlpacaRejected(f"qty {cmd.qty} rounds to 0 at 9 decimals", status=0)
        body: dict[str, Any] = {
            "symbol": cmd.symbol,
            "qty": wire(qty),
            "side": cmd.side.value,
            "type": cmd.order_type.value,
            "time_in_force": cmd.time_in_force.value,
            "client_order_id": cmd.client_order_id,
        }
        if cmd.order_type is OrderType.LIMIT:
            if cmd.limit_price is None:
                raise AlpacaRejected("a limit order needs a limit_price", status=0)
            body["limit_price"] = wire(round_to_tick(cmd.limit_price))
        return await self._call(
            "POST /v2/orders", self._client.post, "/orders", body, parse=parse_order, gate=gate
        )

    async def order_by_client_id(self, client_order_id: str) -> OrderSnapshot | None:
        """GET /v2/orders:by_client_order_id; None when Alpaca does not know the id (404)."""
        try:
            return await self._call(
                "GET /v2/orders:by_client_order_id",
                self._client.get_order_by_client_id,
                client_order_id,
                parse=parse_order,
            )
        except OrderNotFound:
            return None

    async def orders(
        self, *, status: str = "open", after_ns: int | None = None, limit: int = 500
    ) -> list[OrderSnapshot]:
        """GET /v2/orders, oldest first, every page: pages move `after` (exclusive) to the last
        order's `submitted_at` until a page holds fewer than `limit` orders."""
        params: dict[str, Any] = {"status": status, "limit": limit, "direction": "asc"}
        if after_ns is not None:
            params["after"] = format_ts(after_ns)
        seen: dict[str, OrderSnapshot] = {}
        while True:
            orders = await self._call(
                "GET /v2/orders", self._client.get, "/orders", dict(params), parse=parse_orders
            )
            fresh = [o for o in orders if o.broker_order_id not in seen]
            seen.update((o.broker_order_id, o) for o in fresh)
            if len(orders) < limit or not fresh or not orders[-1].submitted_at:
                return list(seen.values())
            params["after"] = orders[-1].submitted_at

    async def cancel_order(self, broker_order_id: str) -> None:
        """DELETE /v2/orders/{id}. Raises OrderNotFound (404) or AlpacaRejected (422: the order
        can no longer be canceled)."""
        await self._call(
            "DELETE /v2/orders/{id}",
            self._client.cancel_order_by_id,
            broker_order_id,
            parse=_ignore,
        )

    # -- account ------------------------------------------------------------------------------

    async def positions(self) -> list[PositionSnapshot]:
        """GET /v2/positions."""
        return await self._call(
            "GET /v2/positions",
            self._client.get_all_positions,
            parse=lambda rows: [parse_position(r) for r in rows or []],
        )

    async def account(self) -> AccountSnapshot:
        """GET /v2/account."""
        return await self._call("GET /v2/account", self._client.get_account, parse=parse_account)

    async def clock(self) -> MarketClock:
        """GET /v2/clock (its times carry ET offsets)."""
        return await self._call("GET /v2/clock", self._client.get_clock, parse=parse_clock)

    async def calendar(self, start: dt.date, end: dt.date) -> list[Session]:
        """GET /v2/calendar (inclusive dates); open/close are New York wall times."""
        return await self._call(
            "GET /v2/calendar",
            self._client.get,
            "/calendar",
            {"start": start.isoformat(), "end": end.isoformat()},
            parse=lambda rows: [parse_session(r) for r in rows or []],
        )

    async def close(self) -> None:
        """Close the HTTP session and stop the worker thread (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._client._session.close)
        self._executor.shutdown(wait=False)

    def wait_s(self) -> float:
        """Seconds until the limiter lets the next request through (0.0: at once)."""
        now = self._monotonic()
        live = [t for t in self._sent if now - t < _WINDOW_S]
        if len(live) < self._max:
            return 0.0
        return _WINDOW_S - (now - live[-self._max])

    # -- plumbing -----------------------------------------------------------------------------

    async def _acquire(self) -> None:
        """At most `max_requests_per_minute` requests in any rolling 60 s."""
        async with self._limiter:
            while True:
                now = self._monotonic()
                while self._sent and now - self._sent[0] >= _WINDOW_S:
                    self._sent.popleft()
                if len(self._sent) < self._max:
                    self._sent.append(now)
                    return
                await self._sleep(_WINDOW_S - (now - self._sent[0]))

    async def _call(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        parse: Callable[[Any], _T],
        gate: Callable[[], str | None] | None = None,
    ) -> _T:
        """One request on the worker thread; its errors and its parsing errors translated."""
        await self._acquire()
        if gate is not None and (reason := gate()) is not None:
            self._sent.pop()  # the slot just taken: no request used it
            raise Unsent(reason)
        self.requests_sent += 1
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(self._executor, lambda: fn(*args))
            return parse(raw)
        except Exception as e:
            raise self._translate(what, e) from e

    def _translate(self, what: str, e: Exception) -> BrokerError:
        import requests

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from alpaca.common.exceptions import APIError

        where = f"{what} at {self.url}"
        if isinstance(e, APIError):
            return _translate_api_error(where, e)
        if isinstance(e, requests.Timeout):
            return TransientRestError(f"{where}: no answer within {self._timeout_s} s")
        if isinstance(e, requests.RequestException):
            return TransientRestError(f"{where}: {type(e).__name__}: {_short(str(e))}")
        if isinstance(e, KeyError | ValueError | TypeError | InvalidOperation):
            return BrokerError(f"{where}: unexpected response ({type(e).__name__}: {e})")
        return BrokerError(f"{where}: {type(e).__name__}: {_short(str(e))}")


def _translate_api_error(where: str, e: Any) -> BrokerError:
    status: int = e.status_code or 0
    text = str(e)
    message, code = _error_body(text)
    response = e.response
    headers = getattr(response, "headers", None) or {}
    if status == 401:
        return KeysRefused(
            f"{where}: the trading API refused the keys (401). Check that APCA_API_KEY_ID and "
            "APCA_API_SECRET_KEY belong to this environment (paper keys for paper, live for live)"
        )
    if status == 429 or status >= 500:
        retry_after: float | None = None
        reset = headers.get("X-Ratelimit-Reset")
        if status == 429 and reset is not None:
            try:
                retry_after = min(max(float(reset) - time.time(), 0.0), _MAX_RETRY_AFTER_S)
            except ValueError:
                retry_after = None
        return TransientRestError(
            f"{where}: HTTP {status}: {message}", status=status, retry_after_s=retry_after
        )
    if status == 404:
        return OrderNotFound(f"{where}: HTTP 404: {message}")
    if code == _DUPLICATE_CODE or "must be unique" in message:
        return DuplicateClientOrderId(message, status=status, code=code)
    return AlpacaRejected(message, status=status, code=code)


def _error_body(text: str) -> tuple[str, int | None]:
    """Alpaca's (message, code) from an error body; tolerant of HTML and empty bodies (the
    APIError properties json-decode on every access and raise on those)."""
    try:
        body = json.loads(text)
    except ValueError:
        return _short(re.sub(r"<[^>]+>", " ", text)) or "(empty body)", None
    if not isinstance(body, dict):
        return _short(text), None
    code = body.get("code")
    return str(body.get("message", "")) or _short(text), code if isinstance(code, int) else None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ignore(raw: Any) -> None:
    return None
