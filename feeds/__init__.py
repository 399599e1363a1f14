"""Market data in: the Bar type, sanity checks, replay sources, calendars, synthetic data.

`feeds` is the bottom of the import graph: it imports no other package of tradingd.
"""
