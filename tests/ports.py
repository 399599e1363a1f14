"""Ports of 127.0.0.1 for the tests' servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port of 127.0.0.1 free right now (nobody listens on it: connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
