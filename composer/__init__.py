"""Decisions: the strategy registry, built-in strategies, the composer (signals -> targets).

`composer` may import `feeds` only; it decides weights, never orders.
"""
