"""The parity audit (`tradingd audit STATE_DIR`): replay the journal through the core and report
every decision that differs from what was done live.

For each segment of the journal: the config it recorded (or the overlays given instead), a fresh
engine from the same composition root as every run (`build_engine`), the ledger, switches and
open orders it started with, then its inputs in order. At each recorded close the replayed
targets (weights rounded to 1e-9) and orders (client order id, symbol, side, qty, type, limit)
are compared with the recorded ones. The core is deterministic, so a clean session gives none.

A range (`since`, `sessions`) starts each segment it covers at a snapshot (a session's close):
the strategies are warmed by the bars of the slices before it (as many as they need, as a live
restart warms them), then the engine is put where the snapshot says, and only the inputs after
it are replayed and compared: the time taken follows the range, not the journal's history. A
compacted journal is audited from its first kept snapshot with enough bars before it.

The journal is opened read-only: an audit may run beside the daemon that writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from brokers.orders import ExecutionEvent, SubmitOrder
from composer.targets import Targets
from daemon.config import LoadedConfig, load_config
from daemon.engine import Decision
from daemon.execution import decided_at
from daemon.live.recovery import restore_engine
from daemon.settings import Settings
from daemon.wiring import build_engine
from feeds.bar import Bar
from feeds.calendar import SessionCalendar
from feeds.errors import ConfigError, TradingdError
from portfolio.events import KillSwitchTripped
from portfolio.journal import (
    DecisionRecord,
    JournalReader,
    Segment,
    Snapshot,
    positions_from_json,
)
from portfolio.ledger import Ledger

_NEVER = 2**63 - 1
_ALWAYS = -(2**63)
_WEIGHT_DIGITS = 9


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One decision the replay made otherwise than the live run.

    Attributes:
        slice_ts: the slice's start (a flatten's control ts).
        kind: "targets" | "order" | "missing_slice" (live decided, the replay did not) |
            "extra_slice" (the replay decided, live did not) | "config" (the recorded config
            no longer gives the recorded digest) | "error" (the replay stopped: why).
        live, replay: what each side had (None where a side had nothing).
    """

    segment: int
    slice_ts: int
    kind: str
    live: Any
    replay: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditResult:
    """What the audit compared and what differed.

    Attributes:
        slices: closes replayed; orders: orders the live run recorded (compared one by one).
        skipped: control inputs the engine has no counterpart for (not replayed).
    """

    segments: int
    slices: int
    orders: int
    differences: list[Difference]
    skipped: list[str] = field(default_factory=list)


class TargetsListener:
    """The audit's EngineListener: keeps the targets of the slice being closed."""

    def __init__(self) -> None:
        self.targets: Targets | None = None

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        pass

    def on_targets(self, targets: Targets) -> None:
        self.targets = targets

    def on_decision(self, decision: Decision) -> None:
        pass

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        pass

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        pass

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        pass


def audit(
    state_dir: Path,
    *,
    config_override: Sequence[str] | None = None,
    since: str | None = None,
    sessions: int | None = None,
) -> AuditResult:
    """Replay the journal in `state_dir` (all of it, or a range) and compare its decisions.

    Args:
        config_override: YAML overlays to replay with instead of each segment's recorded config
            (a what-if: a different config also gives different client order ids, unless it
            sets run.order_id_prefix).
        since: audit the sessions on or after this New York date (YYYY-MM-DD).
        sessions: audit the last this many sessions.

    Raises:
        JournalError: the journal cannot be read.
        ConfigError: a recorded config (or the override) does not validate.
    """
    override = load_config(list(config_override)) if config_override else None
    with JournalReader.open(state_dir) as journal:
        segments = journal.segments()
        starts = _starts(journal, segments, since=since, sessions=sessions)
        replays = [
            _Replay(journal, segment, override, starts=starts[segment.id])
            for segment in segments
            if segment.id in starts
        ]
        for replay in replays:
            replay.run()
    return AuditResult(
        segments=len(replays),
        slices=sum(r.slices for r in replays),
        orders=sum(r.orders for r in replays),
        differences=[d for r in replays for d in r.differences],
        skipped=[s for r in replays for s in r.skipped],
    )


def _starts(
    journal: JournalReader,
    segments: list[Segment],
    *,
    since: str | None,
    sessions: int | None,
) -> dict[int, list[Snapshot] | None]:
    """Per segment to replay: None (from its start) or the snapshots it may start at, the
    first that has enough bars before it for the warm-up being the one taken."""
    snapshots = journal.snapshots()
    first: Snapshot | None = None  # the range starts after this snapshot
    if sessions is not None and len(snapshots) > sessions:
        first = snapshots[-(sessions + 1)] if sessions > 0 else snapshots[-1]
    if since is not None:
        before = [s for s in snapshots if s.session < since]
        if before and (first is None or before[-1].seq > first.seq):
            first = before[-1]
    compacted = journal.compacted()
    out: dict[int, list[Snapshot] | None] = {}
    for segment in segments:
        own = [s for s in snapshots if s.segment == segment.id]
        floor = first.seq if first is not None and first.segment == segment.id else None
        if first is not None and segment.id < first.segment:
            continue
        if compacted is not None and segment.id < compacted[0]:
            continue
        if compacted is not None and segment.id == compacted[0]:
            floor = max(floor or 0, compacted[1])
        if floor is None:
            out[segment.id] = None
            continue
        candidates = [s for s in own if s.seq >= floor]
        if candidates:
            out[segment.id] = candidates
    return out


def describe(result: AuditResult) -> list[str]:
    """The result as lines for a terminal: a summary, then one line per difference."""
    lines = [
        f"audited {result.segments} segments, {result.slices} slices, {result.orders} orders: "
        f"{len(result.differences)} differences"
    ]
    lines.extend(f"skipped: {s}" for s in result.skipped)
    lines.extend(
        f"segment {d.segment} slice {d.slice_ts} {d.kind}: live {d.live!r} replay {d.replay!r}"
        for d in result.differences
    )
    return lines


def segment_config(segment: Segment, journal_path: Path) -> LoadedConfig:
    """The LoadedConfig a segment recorded (its resolved settings), validated again."""
    try:
        settings = Settings.model_validate(segment.config)
    except ValidationError as e:
        raise ConfigError(
            f"{journal_path}: segment {segment.id}: the recorded config does not validate: {e}"
        ) from None
    files = tuple(segment.files) or (f"{journal_path} (segment {segment.id})",)
    return LoadedConfig(settings=settings, files=files, origins={})


class _Replay:
    """One segment's replay and comparison."""

    def __init__(
        self,
        journal: JournalReader,
        segment: Segment,
        override: LoadedConfig | None,
        *,
        starts: list[Snapshot] | None = None,
    ) -> None:
        self.journal = journal
        self.segment = segment
        self.starts = starts
        self.loaded = override or segment_config(segment, journal.path)
        self.slices = 0
        self.orders = 0  # recorded live
        self.differences: list[Difference] = []
        self.skipped: list[str] = []
        self.listener = TargetsListener()
        settings = self.loaded.settings
        symbols = list(settings.symbols) or self._symbols_seen()
        # The live run's client order ids: its recorded prefix, whatever config is audited.
        recorded = segment.config.get("run", {}).get("order_id_prefix")
        self.engine, _ = build_engine(
            self.loaded,
            symbols,
            self.listener,
            trade_from_ts=_NEVER,
            decides=segment.mode != "track",
            id_prefix=recorded or f"td{segment.digest[:6]}",
        )
        self.decisions: dict[tuple[int, str], DecisionRecord] = {}
        self._calendar = SessionCalendar(settings.sanity.calendar)  # before_close decisions

    def _symbols_seen(self) -> list[str]:
        seen: set[str] = set()
        for item in self.journal.inputs(self.segment.id):
            if isinstance(item.payload, Bar):
                seen.add(item.payload.symbol)
        return sorted(seen)

    def _differ(self, slice_ts: int, kind: str, live: Any, replay: Any) -> None:
        self.differences.append(
            Difference(
                segment=self.segment.id, slice_ts=slice_ts, kind=kind, live=live, replay=replay
            )
        )

    def run(self) -> None:
        segment = self.segment
        engine = self.engine
        if self.loaded.digest != segment.digest:
            self._differ(segment.ts, "config", segment.digest, self.loaded.digest)
        after = self._start()
        if after is None:
            return
        try:
            for item in self.journal.inputs(segment.id, after_seq=after):
                payload = item.payload
                match item.kind:
                    case "bar" | "warmup_bar":
                        assert isinstance(payload, Bar)
                        engine.on_bar(payload)
                    case "updated_bar":
                        assert isinstance(payload, Bar)
                        engine.on_updated_bar(payload)
                    case "warmup_done":
                        engine.trade_from_ts = _ALWAYS
                    case "event":
                        assert not isinstance(payload, Bar | dict)
                        engine.on_events([payload])
                    case "control":
                        assert isinstance(payload, dict)
                        self._control(payload)
                    case "close":
                        assert isinstance(payload, dict)
                        self._close(int(payload["slice_ts"]), send="held" not in payload)
                    case other:
                        self.skipped.append(f"segment {segment.id} input {item.seq}: {other}")
        except TradingdError as e:
            # An input the core refuses (bars out of order): the replay cannot go on.
            self._differ(engine.slice_ts or segment.ts, "error", None, str(e))

    def _start(self) -> int | None:
        """Put the engine where the replay starts; the input seq it starts after (-1: the
        segment's first), or None when no start has the bars its warm-up needs."""
        segment, engine, journal = self.segment, self.engine, self.journal
        if self.starts is None:
            self.decisions = journal.decisions(segment.id)
            restore_engine(
                engine,
                segment.ledger,
                kill_switch=segment.kill_switch,
                halted=segment.halted,
                open_orders=segment.open_orders,
            )
            return -1
        need = engine.composer.warmup_bars
        for start in self.starts:
            warm_after = journal.warmup_start(segment.id, start.seq, need)
            if warm_after is None:
                continue
            # The strategies warm on the bars before the snapshot (with the ledger still
            # flat: nothing trips), then the engine is put where the snapshot says.
            for item in journal.inputs(segment.id, after_seq=warm_after, through_seq=start.seq):
                if item.kind in ("bar", "warmup_bar"):
                    assert isinstance(item.payload, Bar)
                    engine.on_bar(item.payload)
                elif item.kind == "updated_bar":
                    assert isinstance(item.payload, Bar)
                    engine.on_updated_bar(item.payload)
                elif item.kind == "close":
                    engine.close_slice(send=False)
            engine.trade_from_ts = _ALWAYS
            restore_engine(
                engine,
                start.ledger,
                kill_switch=start.kill_switch,
                halted=start.halted,
                open_orders=start.open_orders,
            )
            self.decisions = journal.decisions(segment.id, after_ts=start.last_slice_ts)
            return start.seq
        self.skipped.append(
            f"segment {segment.id}: no kept snapshot with {need} slices of bars before it"
        )
        return None

    def _close(self, slice_ts: int, *, send: bool = True) -> None:
        engine = self.engine
        self.slices += 1
        live = self.decisions.pop((slice_ts, "close"), None)
        if engine.slice_ts != slice_ts:
            # Live closed a slice the replay has no bars for (bars not journaled, or edited):
            # one difference, whatever live decided there.
            self._differ(slice_ts, "missing_slice", slice_ts, engine.slice_ts)
            if engine.slice_ts is None:
                self.orders += len(live.orders) if live is not None else 0
                return
            live = None  # the replay's open slice is another one: compared as extra
        self.listener.targets = None
        settings = self.loaded.settings
        at = decided_at(settings.execution, settings.data.timeframe, slice_ts, self._calendar)
        orders = engine.close_slice(send=send, decided_at=at)
        self._compare(slice_ts, live, self.listener.targets, orders)

    def _control(self, payload: dict[str, Any]) -> None:
        engine = self.engine
        action = payload.get("action")
        ts = int(payload["ts"])
        match action:
            case "halt":
                engine.halt()
            case "resume":
                engine.resume()
            case "reset":
                engine.reset_kill_switch()
            case "flatten":
                live = self.decisions.pop((ts, "flatten"), None)
                sequence = payload.get("sequence")  # ids unique per flatten (a journal count)
                self._compare(ts, live, None, engine.flatten(ts, sequence=sequence))
            case "adopt":
                # The broker's account taken as the truth (a restart's reconciliation).
                engine.ledger.adopt(
                    Decimal(payload["cash"]), positions_from_json(payload["positions"])
                )
            case _:
                self.skipped.append(f"segment {self.segment.id} control {action} at {ts}")

    def _compare(
        self,
        slice_ts: int,
        live: DecisionRecord | None,
        targets: Targets | None,
        orders: list[SubmitOrder],
    ) -> None:
        live_orders = live.orders if live is not None else []
        self.orders += len(live_orders)
        decided = targets is not None or bool(orders)
        if live is None:
            if decided:
                self._differ(slice_ts, "extra_slice", None, _weights(targets))
            return
        if live.kind == "close" and not decided:
            self._differ(slice_ts, "missing_slice", _weights(live.targets), None)
            return
        if _weights(live.targets) != _weights(targets):
            self._differ(slice_ts, "targets", _weights(live.targets), _weights(targets))
        mine = {o.client_order_id: _order_key(o) for o in live_orders}
        theirs = {o.client_order_id: _order_key(o) for o in orders}
        for cid in [*mine, *(c for c in theirs if c not in mine)]:
            if mine.get(cid) != theirs.get(cid):
                self._differ(slice_ts, "order", mine.get(cid), theirs.get(cid))


def _weights(targets: Targets | None) -> dict[str, float] | None:
    if targets is None:
        return None
    return {s: round(w, _WEIGHT_DIGITS) for s, w in sorted(targets.weights.items())}


def _order_key(order: SubmitOrder) -> tuple[str, str, str, Decimal, str, Decimal | None]:
    return (
        order.client_order_id,
        order.symbol,
        order.side.value,
        order.qty,
        order.order_type.value,
        order.limit_price,
    )
