"""How the Alpaca adapter waits and watches: the jittered backoff between retries, and the REST
health that every call of the adapter reports to."""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import TypeVar

from brokers.alpaca_rest import AlpacaRejected, TransientRestError
from brokers.errors import BrokerError, TransientBrokerError
from brokers.outbox import Outbox

_T = TypeVar("_T")


class Backoff:
    """The delay before retry number `attempt` (from 1): doubling from `min_s` up to `max_s`,
    with equal jitter; a 429's reset time is honoured."""

    def __init__(self, *, min_s: float, max_s: float, rng: random.Random) -> None:
        self._min_s = min_s
        self._max_s = max_s
        self._rng = rng

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait before the next try, after `attempt` tries that failed with `error`."""
        ceiling = min(self._max_s, self._min_s * 2 ** (attempt - 1))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if isinstance(error, TransientRestError) and error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s + self._rng.uniform(0, 1))
        return float(delay)


class RestWatch:
    """Whether Alpaca's REST answers, kept current by every call the adapter makes (`call`).

    `ok` turns False at a transient failure (429, 5xx, timeout, connection error) and True again
    at the next answer (a refusal or a 404 is an answer); each turn is a notice (`rest_down`,
    `rest_up` with the failures in between).
    """

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._failures = 0
        self.ok = True

    async def call(self, call: Awaitable[_T]) -> _T:
        """Await one REST call and note how it went; its errors propagate unchanged."""
        try:
            result = await call
        except TransientBrokerError as e:
            self._failures += 1
            if self.ok:
                self.ok = False
                self._outbox.notice("warning", "rest_down", error=str(e))
            raise
        except BrokerError as e:
            # Refused before sending (status 0) says nothing of Alpaca's health.
            if not (isinstance(e, AlpacaRejected) and e.status == 0):
                self._answered()
            raise
        self._answered()
        return result

    def _answered(self) -> None:
        if not self.ok:
            self.ok = True
            self._outbox.notice("info", "rest_up", failures=self._failures)
            self._failures = 0
