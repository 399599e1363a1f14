"""Orders out, executions back: order and execution-event types, the Broker protocol, brokers.

`brokers` may import `feeds` only; it never imports `composer` or `portfolio`.
"""
