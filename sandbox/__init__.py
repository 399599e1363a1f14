"""`tradingd sandbox`: a local Alpaca (trading REST, both websockets, history) with faults.

A product of its own that users run and the tests use. It speaks Alpaca's wire protocol and
imports only `feeds` and `brokers` types, never the daemon.

Rooms: `app` (the Sandbox: lifecycle, clock, routes), `rest` (trading REST), `history`
(historical bars), `streams` (both websockets), `faults` (fault injection), `market` (the bars
and the virtual clock), `account` and `orders` (the cash account), `wire` (JSON shapes), `auth`
(the keys accepted).
"""

from sandbox.account import Account
from sandbox.app import Sandbox, serve
from sandbox.faults import Faults
from sandbox.market import Market
from sandbox.orders import OrderError, SandboxOrder
from sandbox.streams import FEEDS, TEST_SYMBOL

__all__ = [
    "FEEDS",
    "TEST_SYMBOL",
    "Account",
    "Faults",
    "Market",
    "OrderError",
    "Sandbox",
    "SandboxOrder",
    "serve",
]
