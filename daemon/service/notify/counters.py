"""How many notifications each target sent, failed, dropped and held back.

The daemon's telemetry turns these into `tradingd_notifications_sent_total{target}` and
`tradingd_notifications_failed_total{target}`: either read `snapshot()` at scrape time (a
collector), or `subscribe` a callback that bumps its own counters as things happen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

Outcome: TypeAlias = Literal["sent", "failed", "dropped", "suppressed"]
"""sent: delivered; failed: given up after its tries; dropped: pushed out of a full queue;
suppressed: held back by the rate limit (summarized later)."""
OUTCOMES: tuple[Outcome, ...] = ("sent", "failed", "dropped", "suppressed")

Listener: TypeAlias = Callable[[Outcome, str], None]
"""Called with (outcome, target name) once per message, on the event loop's thread."""


class NotifyCounters:
    """Monotonic counts per outcome and target; every configured target starts at zero."""

    def __init__(self, targets: list[str]) -> None:
        self._counts: dict[Outcome, dict[str, int]] = {
            outcome: dict.fromkeys(targets, 0) for outcome in OUTCOMES
        }
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` on every count from now on. It must not raise or block."""
        self._listeners.append(listener)

    def count(self, outcome: Outcome, target: str, n: int = 1) -> None:
        by_target = self._counts[outcome]
        by_target[target] = by_target.get(target, 0) + n
        for listener in self._listeners:
            for _ in range(n):
                listener(outcome, target)

    def get(self, outcome: Outcome, target: str) -> int:
        return self._counts[outcome].get(target, 0)

    def snapshot(self) -> dict[Outcome, dict[str, int]]:
        """outcome -> target -> count, a copy."""
        return {outcome: dict(by_target) for outcome, by_target in self._counts.items()}
