"""Broker errors (see the tree in feeds.errors). Third-party errors are translated at the edge."""

from feeds.errors import TradingdError


class BrokerError(TradingdError):
    """Any failure talking to a broker."""


class TransientBrokerError(BrokerError):
    """Timeouts, 5xx, 429: retried with backoff and jitter; a submit's outcome is looked up."""


class BrokerRejected(BrokerError):
    """The broker refused the order: becomes an OrderRejected event, never retried."""
