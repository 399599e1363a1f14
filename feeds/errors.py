"""The error hierarchy of tradingd, sorted by what the caller does.

It lives here because `feeds` is the bottom of the import graph; every package may import it.

    TradingdError
    |- ConfigError              fatal at start-up: one message naming file and key, exit 2
    |- DataError                a bad bar or file: quarantined and counted, never passed on
    |  \\- SourceError           a file cannot be read at all (missing, empty, no column): exit 2
    |- BrokerError              (brokers.errors)
    |  |- TransientBrokerError  retried with backoff and jitter (timeouts, 5xx, 429)
    |  \\- BrokerRejected        becomes an OrderRejected event, never retried
    \\- InvariantViolation       the process stops; a restart reconciles

Risk denials are events, not exceptions.

A message is one line (the command line prints it after `tradingd: error: `): text from a file,
a key or a path goes in through `printable`.
"""


class TradingdError(Exception):
    """Base of every error tradingd raises on purpose."""


class ConfigError(TradingdError):
    """A configuration mistake. The message names the file and the key path."""


class DataError(TradingdError):
    """Bad market data."""


class SourceError(DataError):
    """A data source cannot be read at all; the message names the file (and row or column)."""


class InvariantViolation(TradingdError):
    """Something that must never happen did; the process stops and a restart reconciles."""


def printable(text: str) -> str:
    """`text` with its control characters (newlines, tabs, NUL, ...) escaped as in a Python
    literal, so that a message quoting it stays on one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
