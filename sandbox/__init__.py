"""`tradingd sandbox`: a local Alpaca (trading REST, both websockets, history) with faults.

A product of its own that users run and the tests use. It speaks Alpaca's wire protocol and
imports only `feeds` and `brokers` types, never the daemon.
"""
