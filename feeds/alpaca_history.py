"""Historical bars from Alpaca's market-data REST API, and `bars download` to Parquet.

alpaca-py's `StockHistoricalDataClient` does the requests and follows ``next_page_token`` to
the end (`RESTClient._get_marketdata` repeats the request until the token is null). Its gaps
are closed here: every request gets a timeout, and its blind fixed retries (3 s x 3, the whole
paging restarted) are replaced by ours, per page, on 429/5xx and connection errors, with
capped jittered backoff through an injected `sleep`. Errors leave as `SourceError` naming the
URL, the HTTP status and Alpaca's message, never the keys.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from feeds.alpaca_messages import bar_from_json
from feeds.bar import NS_PER_SECOND, Bar
from feeds.errors import ConfigError, SourceError

if TYPE_CHECKING:
    import requests

TIMEFRAMES = ("1Min", "5Min", "15Min", "1Hour", "1Day")
"""The usual timeframes; `parse_timeframe` accepts any ``[1-59]Min``, ``[1-23]Hour``, ``1Day``."""

FEEDS = ("iex", "sip", "delayed_sip", "test")
_NEW_YORK = ZoneInfo("America/New_York")
_TIMEFRAME = re.compile(r"([1-9]\d?)(Min|Hour|Day)")
_UNIT_MAX = {"Min": 59, "Hour": 23, "Day": 1}
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_BACKOFF_MIN_S = 1.0
_BACKOFF_MAX_S = 30.0
_MAX_HEADER_WAIT_S = 60.0


def parse_timeframe(text: str) -> tuple[int, str]:
    """``"5Min"`` -> ``(5, "Min")``. Units: ``Min`` (1-59), ``Hour`` (1-23), ``Day`` (1).

    Raises:
        ConfigError: anything else (Alpaca's timeframes are case-sensitive).
    """
    match = _TIMEFRAME.fullmatch(text.strip())
    if match is not None:
        amount, unit = int(match.group(1)), match.group(2)
        if amount <= _UNIT_MAX[unit]:
            return amount, unit
    raise ConfigError(
        f"timeframe {text!r} is not valid: use [1-59]Min, [1-23]Hour or 1Day "
        f"(e.g. {', '.join(TIMEFRAMES)})"
    )


class HistoricalBars:
    """Blocking fetches of historical stock bars (the daemon runs them in a thread).

    Args:
        key, secret: the API keys (sent as headers; never in a message).
        url: the data API base URL without ``/v2``; None for Alpaca's.
        feed: ``iex``, ``sip``, ``delayed_sip``; ``test`` (the stream's test feed) reads iex.
        timeout_s: per HTTP request (connect and read).
        retries: retries of one page after 429, 5xx or a connection error.
        sleep: called for every retry delay (inject a fast one in tests).

    Each `fetch` builds its own client, so fetches may run in several threads at once.
    """

    def __init__(
        self,
        *,
        key: str,
        secret: str,
        url: str | None = None,
        feed: str = "iex",
        timeout_s: float = 30.0,
        retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not key or not secret:
            raise ValueError("key and secret are required")
        if feed not in FEEDS:
            raise ConfigError(f"feed {feed!r} is not one of {', '.join(FEEDS)}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self._key = key
        self._secret = secret
        self._url = url.rstrip("/") if url else None
        self._feed = "iex" if feed == "test" else feed
        self._timeout_s = timeout_s
        self._retries = retries
        self._sleep = sleep
        self._rng = rng or random.Random()

    @property
    def feed(self) -> str:
        """The feed history is read from (``test`` maps to ``iex``)."""
        return self._feed

    def fetch(
        self,
        symbols: Sequence[str],
        start_ns: int,
        end_ns: int | None = None,
        timeframe: str = "1Min",
    ) -> list[Bar]:
        """Every bar of `symbols` with ``start_ns <= ts <= end_ns``, each once.

        Args:
            symbols: the symbols (upper-cased).
            start_ns, end_ns: inclusive bounds, UTC ns; end None means up to now (Alpaca's
                default; 15 minutes ago without real-time access to the feed).
            timeframe: see `parse_timeframe`.

        Returns:
            The bars sorted by (ts, symbol); all pages are read.

        Raises:
            ConfigError: a bad timeframe or empty symbols.
            SourceError: the request failed (after retries) or the answer is malformed.
        """
        amount, unit = parse_timeframe(timeframe)
        wanted = sorted({s.strip().upper() for s in symbols if s.strip()})
        if not wanted:
            raise ConfigError("historical bars: no symbols given")
        if end_ns is not None and end_ns < start_ns:
            raise ConfigError("historical bars: end is before start")
        raw = self._get_bars(wanted, amount, unit, start_ns, end_ns)
        by_key: dict[tuple[int, str], Bar] = {}
        for symbol, rows in raw.items():
            if symbol not in wanted:
                continue
            if not isinstance(rows, list):
                raise SourceError(
                    f"historical bars from {self._base()}: bars of {symbol} are not a list"
                )
            for row in rows:
                bar = self._bar(symbol, row)
                if start_ns <= bar.ts and (end_ns is None or bar.ts <= end_ns):
                    by_key[(bar.ts, symbol)] = bar  # a bar repeated across pages counts once
        return time_ordered(by_key.values())

    # -- alpaca-py -------------------------------------------------------------------------

    def _get_bars(
        self, symbols: list[str], amount: int, unit: str, start_ns: int, end_ns: int | None
    ) -> Mapping[str, Any]:
        with warnings.catch_warnings():
            # alpaca-py's package imports its streams, built on websockets' legacy API.
            warnings.simplefilter("ignore", DeprecationWarning)
            from alpaca.common.exceptions import APIError
            from alpaca.data.enums import DataFeed
            from alpaca.data.historical.stock import StockHistoricalDataClient
            from alpaca.data.requests import StockBarsRequest
            from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
        import requests

        units = {"Min": TimeFrameUnit.Minute, "Hour": TimeFrameUnit.Hour, "Day": TimeFrameUnit.Day}
        client = StockHistoricalDataClient(
            self._key, self._secret, raw_data=True, url_override=self._url
        )
        client._retry = 0  # our session retries, per page
        client._session = self._session()
        # Whole seconds (the API has refused fractions): round start up, end down, which
        # keeps every bar since bars start on whole seconds.
        start = _utc(-(-start_ns // NS_PER_SECOND))
        end = None if end_ns is None else _utc(end_ns // NS_PER_SECOND)
        request = StockBarsRequest(
            symbol_or_symbols=symbols,
            timeframe=TimeFrame(amount, units[unit]),
            start=start,
            end=end,
            feed=DataFeed(self._feed),
        )
        try:
            result = client.get_stock_bars(request)
        except APIError as e:
            raise SourceError(self._api_error_text(e)) from e
        except requests.RequestException as e:
            raise SourceError(
                f"historical bars: request to {self._base()} failed after "
                f"{self._retries + 1} attempt(s): {type(e).__name__}: {self._scrub(str(e))}"
            ) from e
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise SourceError(
                f"historical bars from {self._base()}: unexpected answer: {type(e).__name__}: "
                f"{self._scrub(str(e))}"
            ) from e
        if not isinstance(result, dict):
            raise SourceError(f"historical bars from {self._base()}: unexpected answer")
        return result

    def _session(self) -> requests.Session:
        import requests

        timeout_s = self._timeout_s
        retries = self._retries
        delay_for = self._delay
        sleep = self._sleep

        class _Response(requests.Response):
            """A page's JSON decoded by orjson: 10,000 bars (~1 MB) in ~7 ms instead of the
            standard library's ~24 ms, each of them holding the interpreter (the daemon
            fetches in a worker thread, and its event loop waits meanwhile)."""

            def json(self, **kwargs: Any) -> Any:
                return orjson.loads(self.content)

        class _Session(requests.Session):
            """A timeout on every request, and retries of 429/5xx/connection errors (GET
            only: the bars client sends nothing else)."""

            def request(  # type: ignore[override]
                self, method: str, url: str, *args: Any, **kwargs: Any
            ) -> requests.Response:
                kwargs.setdefault("timeout", timeout_s)
                attempt = 0
                while True:
                    try:
                        response = super().request(method, url, *args, **kwargs)
                    except (requests.ConnectionError, requests.Timeout):
                        if attempt >= retries:
                            raise
                    else:
                        if response.status_code not in _RETRY_STATUS or attempt >= retries:
                            response.__class__ = _Response
                            return response
                        wait = delay_for(attempt, response)
                        response.close()
                        sleep(wait)
                        attempt += 1
                        continue
                    sleep(delay_for(attempt, None))
                    attempt += 1

        return _Session()

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        delay = min(_BACKOFF_MAX_S, _BACKOFF_MIN_S * 2.0 ** min(attempt, 30))
        delay *= self._rng.uniform(0.5, 1.0)
        if response is not None:
            delay = max(delay, _header_wait_s(response.headers))
        return delay

    # -- results and errors ----------------------------------------------------------------

    def _bar(self, symbol: str, row: Any) -> Bar:
        try:
            return bar_from_json(symbol, row)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise SourceError(
                f"historical bars from {self._base()}: bad bar of {symbol}: {row!r:.200}"
            ) from e

    def _api_error_text(self, e: Any) -> str:
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        url = getattr(getattr(response, "request", None), "url", None) or self._base()
        try:
            message = str(e.message)
        except (ValueError, KeyError, TypeError):
            message = " ".join(str(e).split())[:200]  # not JSON: an HTML error page, say
        text = f"historical bars: GET {url} failed (HTTP {status}): {self._scrub(message)}"
        lowered = message.lower()
        if status in (401, 403) and "subscription" not in lowered:
            text += "; check APCA_API_KEY_ID/APCA_API_SECRET_KEY"
        if "subscription" in lowered and ("sip" in lowered or "15 minutes" in lowered):
            text += (
                f"; the plan does not allow recent data on feed {self._feed!r}: use feed "
                "'iex', or end at least 15 minutes ago"
            )
        return text

    def _base(self) -> str:
        return self._url or "https://data.alpaca.markets"

    def _scrub(self, text: str) -> str:
        for secret in (self._secret, self._key):
            text = text.replace(secret, "***")
        return text


def download(
    history: HistoricalBars,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    *,
    timeframe: str,
    out_dir: Path,
) -> dict[str, tuple[Path, int]]:
    """Write `<out_dir>/<SYMBOL>.parquet` per symbol, readable by `tradingd replay`.

    The dates are New York dates: from 00:00 of `start` to 23:59:59 of `end`. Each file is
    written to ``.tmp`` and renamed, so a reader never sees half a file. A symbol without bars
    gets no file.

    Columns: ``timestamp`` (timestamp[ns, UTC], the bar start), ``open high low close vwap``
    (float64), ``volume`` (int64, or float64 if fractional), ``trade_count`` (int64, nullable).

    Returns:
        symbol -> (file path, rows); rows 0 (and a path that does not exist) when no bars.

    Raises:
        ConfigError: end before start, or a bad timeframe.
        SourceError: the download failed.
    """
    if end < start:
        raise ConfigError(f"download: end {end} is before start {start}")
    wanted = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
    start_ns = _ny_ns(dt.datetime.combine(start, dt.time(0, 0)))
    end_ns = _ny_ns(dt.datetime.combine(end, dt.time(23, 59, 59)))
    bars = history.fetch(wanted, start_ns, end_ns, timeframe)
    by_symbol: dict[str, list[Bar]] = {s: [] for s in wanted}
    for bar in bars:
        by_symbol[bar.symbol].append(bar)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple[Path, int]] = {}
    for symbol, rows in by_symbol.items():
        path = out_dir / f"{symbol}.parquet"
        if rows:
            _write_atomic(path, _table(rows))
        written[symbol] = (path, len(rows))
    return written


def _table(bars: list[Bar]) -> pa.Table:
    volume = [b.volume for b in bars]
    integral = all(v.is_integer() for v in volume)
    return pa.table(
        {
            "timestamp": pa.array([b.ts for b in bars], pa.timestamp("ns", tz="UTC")),
            "open": pa.array([b.open for b in bars], pa.float64()),
            "high": pa.array([b.high for b in bars], pa.float64()),
            "low": pa.array([b.low for b in bars], pa.float64()),
            "close": pa.array([b.close for b in bars], pa.float64()),
            "volume": pa.array(
                [int(v) for v in volume] if integral else volume,
                pa.int64() if integral else pa.float64(),
            ),
            "trade_count": pa.array([b.trade_count for b in bars], pa.int64()),
            "vwap": pa.array([b.vwap for b in bars], pa.float64()),
        }
    )


def _write_atomic(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except (OSError, pa.ArrowException) as e:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{path}: cannot write: {e}") from e


def _ny_ns(local: dt.datetime) -> int:
    aware = local.replace(tzinfo=_NEW_YORK)
    return int(aware.timestamp()) * NS_PER_SECOND


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _header_wait_s(headers: Mapping[str, str]) -> float:
    """Seconds the server asks us to wait (Retry-After, or X-Ratelimit-Reset epoch), capped."""
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        try:
            return min(_MAX_HEADER_WAIT_S, max(0.0, float(retry_after)))
        except ValueError:
            pass
    reset = headers.get("X-Ratelimit-Reset")
    if reset is not None:
        try:
            return min(_MAX_HEADER_WAIT_S, max(0.0, float(reset) - time.time()))
        except ValueError:
            pass
    return 0.0


def time_ordered(bars: Iterable[Bar]) -> list[Bar]:
    """`bars` sorted by (time, symbol), stably, as `sorted` would.

    For the worker threads that order a warm-up's bars: `sorted` compares the keys in C while
    holding the interpreter (~90 ms for 200,000 bars), and the event loop waits as long.
    numpy's sort lets it go; building its columns and the result is Python code, which the
    interpreter switches away from every few milliseconds.
    """
    items = list(bars)
    if len(items) < 2:
        return items
    rank = {symbol: n for n, symbol in enumerate(sorted({bar.symbol for bar in items}))}
    ts = np.fromiter((bar.ts for bar in items), dtype=np.int64, count=len(items))
    symbols = np.fromiter((rank[bar.symbol] for bar in items), dtype=np.int64, count=len(items))
    return [items[i] for i in np.lexsort((symbols, ts)).tolist()]
