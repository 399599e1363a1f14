"""Fixtures of the notification tests: the local receivers and a notifier pointed at them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from daemon.logs import EventLog
from daemon.service.notify import Notifications, NotifySettings, notifications_of
from tests.daemon.notify.receivers import Receivers

LABEL = "tradingd test"


class Logged:
    """An EventLog writing to memory, read back as records."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.log = EventLog(self.stream, level="debug")

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self, name: str) -> list[dict[str, Any]]:
        records = [orjson.loads(line) for line in self.text.splitlines() if line]
        return [r for r in records if r["event"] == name]


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    box = Receivers()
    await box.start()
    try:
        yield box
    finally:
        await box.close()


@pytest.fixture
def logged() -> Logged:
    return Logged()


Make = Callable[..., Notifications]


@pytest.fixture
async def make(receivers: Receivers, logged: Logged) -> AsyncIterator[Make]:
    """make(*targets, env=None, **kwargs): a started-later notifier of these target settings
    (dicts as in YAML), its secrets from the receivers' environment; stopped at the end."""
    built: list[Notifications] = []

    def factory(
        *targets: dict[str, Any], env: dict[str, str] | None = None, **kw: Any
    ) -> Notifications:
        for target in targets:
            if target["type"] == "telegram":
                target.setdefault("api_url", receivers.telegram_api)
        settings = NotifySettings.model_validate({"targets": list(targets)})
        notifications = notifications_of(
            settings, receivers.env if env is None else env, logged.log, label=LABEL, **kw
        )
        built.append(notifications)
        return notifications

    yield factory
    for notifications in built:
        await notifications.stop(deadline_s=0.5)
