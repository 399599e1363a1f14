"""The Sandbox's lifecycle: listening, its own clock, a port already taken."""

from __future__ import annotations

import socket

import pytest

from feeds.errors import ConfigError
from sandbox import Sandbox
from tests.sandbox.kit import DATA, data_socket, recv_json


async def test_speed_mode_plays_minutes_by_itself() -> None:
    sb = Sandbox(DATA, symbols=["AAA"], speed=60 * 200)  # 200 minutes a second
    await sb.start()
    try:
        ws = await data_socket(sb, ["AAA"])
        batch = await recv_json(ws)
        assert batch[0]["S"] == "AAA"
        await ws.close()
    finally:
        await sb.close()


async def test_a_port_in_use_is_a_config_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sb = Sandbox(DATA, symbols=["AAA"])
        with pytest.raises(ConfigError, match=f"port {port}: something else listens on"):
            await sb.start(port=port)
        await sb.close()
    await sb.start()  # the same sandbox still starts elsewhere
    try:
        assert sb.port != 0
    finally:
        await sb.close()


def test_unknown_feed_and_bad_speed_are_refused() -> None:
    sb = Sandbox(DATA, symbols=["AAA"])
    with pytest.raises(ValueError, match="unknown feed"):
        sb.data_stream_url("crypto")
    with pytest.raises(ValueError, match="speed"):
        Sandbox(DATA, symbols=["AAA"], speed=0)
