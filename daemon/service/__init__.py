"""What a running process offers its operator: HTTP endpoints, metrics, systemd, `tradingd ctl`.

Its one reason to change is how the daemon is watched and steered. It reads a driver only
through the `DaemonControl` protocol, never its internals.
"""
