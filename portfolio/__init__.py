"""State and limits: the ledger, rebalancing (targets -> orders), the risk gate, the journal.

`portfolio` may import `feeds`, `brokers` and `composer`; never `daemon`.
"""
