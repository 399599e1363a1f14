"""The collectors of `Telemetry` read at scrape time: values that change without an event
(seconds since the last bar, the ledger's equity and positions, the kill switch), so a quiet
daemon still reports the truth; and the registry without its `*_created` series."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

if TYPE_CHECKING:  # types only: importing the engine's stack would slow `tradingd --help`
    from portfolio.ledger import Ledger
    from portfolio.risk import RiskGate

_MONEY = " In account currency units."


@dataclass(frozen=True, slots=True)
class _Reading:
    """What `ScrapeTimeCollector` reports, read as plain numbers (per symbol: in the order of
    its `symbols`); its families are built from it, on any thread."""

    since: list[float]
    last_ts: list[int | None]
    last_slice_ts: int | None
    kill: bool
    # equity, cash, gross, net, drawdown; and per symbol (quantity, value). None: no ledger.
    books: tuple[float, float, float, float, float] | None
    positions: list[tuple[float, float]]


class ScrapeTimeCollector(Collector):
    """The gauges computed when scraped, from the state `Telemetry` records here.

    Read it from the event loop's thread (it reads the ledger), or under the lock of the
    thread that touches the ledger. A scrape rendered on a worker thread reads it on the loop
    first (`hold`): the worker then builds the families from that reading.

    Attributes:
        last_bar: symbol -> when its last accepted bar came (the monotonic clock).
        last_bar_ts: symbol -> the start of its newest accepted bar (UTC ns).
        ledger: the ledger whose books are reported; None before one is attached.
        risk: the risk gate whose kill switch is reported; None: `kill` is.
        kill: the kill switch as the engine's events left it (without a risk gate).
        last_slice_ts: the start of the last slice decided (UTC ns).
    """

    def __init__(self, symbols: tuple[str, ...], monotonic: Callable[[], float]) -> None:
        self.symbols = symbols
        self._monotonic = monotonic
        self._started = monotonic()
        self.last_bar: dict[str, float] = {}
        self.last_bar_ts: dict[str, int] = {}
        self.ledger: Ledger | None = None
        self.risk: RiskGate | None = None
        self.kill = False
        self.last_slice_ts: int | None = None
        self._held: _Reading | None = None

    def hold(self) -> None:
        """Read now (on the thread that owns the state); `collect` reports this reading, on
        any thread, until `release`."""
        self._held = self._read()

    def release(self) -> None:
        self._held = None

    def collect(self) -> Iterator[Metric]:
        held = self._held  # read once: `release` may run on the loop meanwhile
        reading = held if held is not None else self._read()
        yield from self._freshness(reading)
        yield from self._kill_switch(reading)
        yield from self._books(reading)

    def _read(self) -> _Reading:
        now = self._monotonic()
        started = self._started
        last_bar = self.last_bar
        risk = self.risk
        ledger = self.ledger
        books = None
        positions: list[tuple[float, float]] = []
        if ledger is not None:
            books = (
                float(ledger.equity),
                float(ledger.cash),
                float(ledger.gross_exposure),
                float(ledger.net_exposure),
                ledger.drawdown,
            )
            held = ledger.positions
            for symbol in self.symbols:
                pos = held.get(symbol)
                if pos is None:
                    positions.append((0.0, 0.0))
                else:
                    positions.append((float(pos.qty), float(pos.qty * pos.last_price)))
        return _Reading(
            since=[max(now - last_bar.get(s, started), 0.0) for s in self.symbols],
            last_ts=[self.last_bar_ts.get(s) for s in self.symbols],
            last_slice_ts=self.last_slice_ts,
            kill=risk.kill_switch if risk is not None else self.kill,
            books=books,
            positions=positions,
        )

    def _freshness(self, reading: _Reading) -> Iterator[Metric]:
        since = GaugeMetricFamily(
            "tradingd_seconds_since_last_bar",
            "Seconds since the symbol's last accepted bar (since start-up before the first).",
            labels=("symbol",),
        )
        last_ts = GaugeMetricFamily(
            "tradingd_last_bar_timestamp_seconds",
            "Start time of the symbol's newest accepted bar (Unix seconds).",
            labels=("symbol",),
        )
        for symbol, seconds, ts in zip(self.symbols, reading.since, reading.last_ts, strict=True):
            since.add_metric((symbol,), seconds)
            if ts is not None:
                last_ts.add_metric((symbol,), ts / 1e9)
        yield since
        yield last_ts

        slice_ts = GaugeMetricFamily(
            "tradingd_last_slice_timestamp_seconds",
            "Start time of the last slice decided (Unix seconds).",
        )
        if reading.last_slice_ts is not None:
            slice_ts.add_metric((), reading.last_slice_ts / 1e9)
        yield slice_ts

    def _kill_switch(self, reading: _Reading) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "tradingd_kill_switch",
            "1 while the kill switch is latched (new exposure denied until reset).",
            value=1 if reading.kill else 0,
        )

    def _books(self, reading: _Reading) -> Iterator[Metric]:
        families = {
            "equity": GaugeMetricFamily(
                "tradingd_equity", "Cash plus positions at the last marks." + _MONEY
            ),
            "cash": GaugeMetricFamily(
                "tradingd_cash", "Cash after fills and commissions." + _MONEY
            ),
            "gross": GaugeMetricFamily(
                "tradingd_gross_exposure", "Sum of |quantity x last price|." + _MONEY
            ),
            "net": GaugeMetricFamily(
                "tradingd_net_exposure", "Sum of quantity x last price (signed)." + _MONEY
            ),
            "drawdown": GaugeMetricFamily(
                "tradingd_drawdown_ratio", "(high water - equity) / high water, from 0 to 1."
            ),
        }
        qty = GaugeMetricFamily(
            "tradingd_position_quantity",
            "Signed position quantity per symbol of the universe (shares).",
            labels=("symbol",),
        )
        value = GaugeMetricFamily(
            "tradingd_position_value",
            "Signed market value per symbol of the universe, at the last mark." + _MONEY,
            labels=("symbol",),
        )
        if reading.books is not None:
            for family, number in zip(families.values(), reading.books, strict=True):
                family.add_metric((), number)
            for symbol, (shares, worth) in zip(self.symbols, reading.positions, strict=True):
                qty.add_metric((symbol,), shares)
                value.add_metric((symbol,), worth)
        yield from families.values()
        yield qty
        yield value


# A render's pauses (`WithoutCreated`): after this many samples of a family.
PAUSE_EVERY = 64


class WithoutCreated(Collector):
    """The registry without the `*_created` series prometheus-client adds to counters and
    histograms (the text format has no use for them; they double the series count). Filtered
    here rather than with `disable_created_metrics()`, which changes process-wide state.

    Args:
        pause: called before each family and after every `PAUSE_EVERY` samples as they are
            read: a worker thread rendering the text waits there while the event loop decides.
    """

    def __init__(
        self, registry: CollectorRegistry, *, pause: Callable[[], object] | None = None
    ) -> None:
        self._registry = registry
        self._pause = pause

    def collect(self) -> Iterator[Metric]:
        pause = self._pause
        for family in self._registry.collect():
            if family.type in ("counter", "histogram", "summary"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            if pause is not None:
                pause()
                family.samples = _Pausing(family.samples, pause)
            yield family


class _Pausing(list[Sample]):
    """A family's samples that call `pause` after every `PAUSE_EVERY` read."""

    def __init__(self, samples: list[Sample], pause: Callable[[], object]) -> None:
        super().__init__(samples)
        self._pause = pause

    def __iter__(self) -> Iterator[Sample]:
        pause = self._pause
        for n, sample in enumerate(super().__iter__(), 1):
            yield sample
            if n % PAUSE_EVERY == 0:
                pause()
