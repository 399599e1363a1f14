"""State and limits: the ledger, rebalancing (targets -> orders), the risk gate.

`portfolio` may import `feeds`, `brokers` and `composer`; never `daemon`.
"""
