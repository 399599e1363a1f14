"""The Broker protocol, implemented by the simulated broker and the live adapters."""

from __future__ import annotations

from typing import Protocol

from brokers.orders import CancelOrder, ExecutionEvent, SubmitOrder


class Broker(Protocol):
    """Where the core's order commands go and execution events come back from.

    Both calls are non-blocking hand-overs: their outcome arrives later as execution events,
    collected by `poll_events`. A live adapter does its I/O on its own tasks; the simulated
    broker fills against the market data the replay driver shows it.

    Contract:
        - `submit` with a `client_order_id` already seen never creates a second order.
        - Every submitted order ends in exactly one of OrderFilled, OrderCanceled or
          OrderRejected; fills carry a broker-unique `execution_id`.
    """

    def submit(self, command: SubmitOrder) -> None: ...

    def cancel(self, command: CancelOrder) -> None: ...

    def poll_events(self) -> list[ExecutionEvent]:
        """Events since the last call, in the order they happened."""
        ...
