"""An operator's controls: halt, resume, flatten now, reset the kill switch.

One implementation for every driver that takes them: the live daemon applies them at once on its
event loop, journaled; the paced replay queues them and applies them between slices, with no
journal. Either way the engine changes, telemetry shows it, and the log says who did it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brokers.orders import SubmitOrder
from daemon.engine import Engine
from daemon.live.guard import JournalGuard
from daemon.logs import EventLog
from daemon.service.telemetry import Telemetry
from feeds.errors import TradingdError
from portfolio.journal import JournalError


class Controls:
    """The controls of one engine.

    Args:
        send: hands a flatten's orders to the broker (after their intents are journaled);
            None where nothing can be sent (tracking an account).
        unsent: ends orders that could not be sent (the journal refused their intents).
        guard: the journal (None for a replay: nothing is journaled).
        on_kill_reset: the kill switch's latch was journaled as reset.
        on_bug: told of an unexpected error in a control (a bug, not a refusal) before it is
            raised on: the live daemon stops on it.
        withdraw: takes back the orders the broker has not sent yet, before a flatten sizes
            its orders (they would be counted as held otherwise).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        telemetry: Telemetry,
        log: EventLog,
        send: Callable[[list[SubmitOrder]], None] | None,
        unsent: Callable[[list[SubmitOrder], str], None] | None = None,
        guard: JournalGuard | None = None,
        on_kill_reset: Callable[[], None] | None = None,
        on_bug: Callable[[Exception], None] | None = None,
        withdraw: Callable[[], object] | None = None,
    ) -> None:
        self.engine = engine
        self.telemetry = telemetry
        self.log = log
        self.send = send
        self.unsent = unsent
        self.guard = guard
        self.on_kill_reset = on_kill_reset
        self.on_bug = on_bug
        self.withdraw = withdraw

    def halt(self, ts: int) -> dict[str, Any]:
        self.engine.halt()
        self.telemetry.halted(True)

        def write(journal: Any) -> None:
            journal.control("halt", ts)
            journal.set_halted(True, "control", ts)

        if self.guard is not None:
            self.guard.write(write)
        self.log.warning("halted", by="control")
        return {"halted": True}

    def resume(self, ts: int) -> dict[str, Any]:
        """Trade again. Refused while the journal cannot be written (the write is the probe).

        Raises:
            TradingdError: the journal refused the write.
        """

        def write(journal: Any) -> None:
            journal.control("resume", ts)
            journal.set_halted(False, None, ts)

        if self.guard is not None:
            try:
                self.guard.probe(write)
            except JournalError as e:
                raise TradingdError(f"not resumed: the journal cannot be written: {e}") from None
        self.engine.resume()
        self.telemetry.halted(False)
        self.log.info("resumed", by="control")
        return {"halted": False}

    def flatten(self, ts: int) -> dict[str, Any]:
        """Close every position now, and halt (resume to trade again).

        Raises:
            TradingdError: nothing can send orders here.
        """
        if self.send is None:
            raise TradingdError(
                "this daemon sends no orders (it tracks an account): nothing to flatten with"
            )
        if self.withdraw is not None:
            self.withdraw()
        sequence = self._flatten_sequence()
        orders = self.engine.flatten(ts, sequence=sequence)
        self.telemetry.halted(True)
        self.log.warning("flatten", by="control", orders=len(orders), sequence=sequence)
        stamp = orders[0].ts if orders else ts
        fields = {} if sequence is None else {"sequence": sequence}  # the audit's too

        def write(journal: Any) -> None:
            journal.control("flatten", stamp, orders=orders, **fields)  # write-ahead
            journal.set_halted(True, "flatten", stamp)

        if self.guard is None or self.guard.write(write):
            self.send(orders)
        elif self.unsent is not None:
            self.unsent(orders, "journal unavailable: not sent")
        return {"halted": True, "orders": [o.client_order_id for o in orders]}

    def _flatten_sequence(self) -> int | None:
        """This flatten's number from the journal (its ids are unique per call, not per
        second); None without a journal, or when it cannot be written (nothing is sent then)."""
        numbers: list[int] = []
        if self.guard is not None:
            self.guard.write(lambda journal: numbers.append(journal.next_sequence("flatten")))
        return numbers[0] if numbers else None

    def reset_kill_switch(self, ts: int) -> dict[str, Any]:
        was = self.engine.risk.kill_reason
        self.engine.reset_kill_switch()  # the kill-switch gauge reads the risk gate itself

        def write(journal: Any) -> None:
            journal.control("reset", ts)
            journal.set_kill_switch(False, None, ts)

        if (self.guard is None or self.guard.write(write)) and self.on_kill_reset is not None:
            self.on_kill_reset()
        self.log.warning("kill_switch_reset", by="control", was=was)
        return {"kill_switch": False, "was": was}

    def apply(self, action: str, ts: int) -> dict[str, Any]:
        """One control by name (halt, resume, flatten, reset_kill_switch).

        Raises:
            TradingdError: the control was refused (or is unknown).
        """
        try:
            return self._apply(action, ts)
        except TradingdError:
            raise
        except Exception as e:
            if self.on_bug is not None:
                self.on_bug(e)
            raise

    def _apply(self, action: str, ts: int) -> dict[str, Any]:
        match action:
            case "halt":
                return self.halt(ts)
            case "resume":
                return self.resume(ts)
            case "flatten":
                return self.flatten(ts)
            case "reset_kill_switch":
                return self.reset_kill_switch(ts)
        raise TradingdError(f"unknown control {action!r}")
