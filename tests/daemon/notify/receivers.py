"""Local stand-ins for Slack, Discord, Telegram and a JSON webhook, on 127.0.0.1.

One aiohttp application answers each service's API as its public documentation describes:

    POST /slack/services/T000/B000/<secret>   200 "ok"; 429 with a Retry-After header
    POST /discord/api/webhooks/1/<secret>     204; 429 with a JSON body {"retry_after": s,
                                              "global": false} and a rounded-up Retry-After
    POST /telegram/bot<token>/sendMessage     {"ok": true, "result": {...}}; 429 as
                                              {"ok": false, "error_code": 429,
                                               "parameters": {"retry_after": s}}
    POST /hook                                200; 503 with Retry-After

Faults are armed per service, consumed one per request, in order: `"429"` (the service's own
way, waiting `retry_after_s`), `"500"` (the body echoes the request's path, as some servers do:
secrets must be redacted from what the daemon logs), `"400"`, `"hang"` (never answers until
the test ends).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

SLACK_SECRET = "XXXXslacksecretXXXX"
DISCORD_SECRET = "discordsecret-YYYY"
TELEGRAM_TOKEN = "123456:telegram-secret-token"
CHAT_ID = "4242"
HOOK_TOKEN = "hook-bearer-secret"


@dataclass(frozen=True, slots=True)
class Fault:
    """One armed misbehaviour: kind in "429", "500", "400", "hang"."""

    kind: str
    retry_after_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Received:
    """One request the receiver accepted (answered 2xx)."""

    service: str
    body: dict[str, Any]
    headers: dict[str, str]
    at_s: float  # time.monotonic() when it arrived

    @property
    def text(self) -> str:
        """The human text of the message, whatever the service and sender (tradingd sends
        text; Alertmanager sends Slack attachments, Discord embeds, its own webhook JSON)."""
        body = self.body
        if self.service == "slack" and "text" not in body:
            return "\n".join(
                f"{a.get('title', '')}\n{a.get('text', '')}" for a in body["attachments"]
            )
        if self.service == "discord" and not body.get("content"):
            return "\n".join(
                f"{e.get('title', '')}\n{e.get('description', '')}" for e in body["embeds"]
            )
        if self.service == "hook" and "text" not in body:
            return " ".join(a["labels"]["alertname"] for a in body["alerts"])
        key = {"slack": "text", "discord": "content", "telegram": "text", "hook": "text"}
        value: str = body[key[self.service]]
        return value


class Receivers:
    """The four services on one ephemeral loopback port."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.attempts: dict[str, list[float]] = defaultdict(list)  # every request's arrival
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._changed = asyncio.Condition()
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/slack/services/T000/B000/{secret}", self._slack)
        app.router.add_post("/discord/api/webhooks/1/{secret}", self._discord)
        app.router.add_post("/telegram/bot{token}/sendMessage", self._telegram)
        app.router.add_post("/hook", self._hook)
        self.server = TestServer(app, host="127.0.0.1")

    async def start(self) -> None:
        await self.server.start_server()

    async def close(self) -> None:
        self._release.set()  # hung handlers answer now, so the server closes at once
        await self.server.close()

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def env(self) -> dict[str, str]:
        """The environment a daemon would have: every secret, pointing here."""
        return {
            "TRADINGD_SLACK_URL": self.url(f"/slack/services/T000/B000/{SLACK_SECRET}"),
            "TRADINGD_DISCORD_URL": self.url(f"/discord/api/webhooks/1/{DISCORD_SECRET}"),
            "TRADINGD_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
            "TRADINGD_TELEGRAM_CHAT_ID": CHAT_ID,
            "TRADINGD_WEBHOOK_URL": self.url("/hook"),
            "TRADINGD_WEBHOOK_TOKEN": HOOK_TOKEN,
        }

    @property
    def telegram_api(self) -> str:
        return self.url("/telegram")

    def arm(self, service: str, *faults: Fault) -> None:
        self.faults[service].extend(faults)

    def texts(self, service: str) -> list[str]:
        return [r.text for r in self.received if r.service == service]

    async def wait_for(self, service: str, count: int, timeout_s: float = 5.0) -> list[Received]:
        """Wait until `service` has accepted `count` messages; they, in arrival order."""

        def enough() -> bool:
            return sum(r.service == service for r in self.received) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(enough), timeout_s)
        return [r for r in self.received if r.service == service]

    async def wait_attempts(self, service: str, count: int, timeout_s: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.attempts[service]) >= count), timeout_s
            )

    # -- handlers ---------------------------------------------------------------------------

    async def _arrive(self, service: str, request: web.Request) -> tuple[Fault | None, Any]:
        body = await request.json()
        async with self._changed:
            self.attempts[service].append(time.monotonic())
            self._changed.notify_all()
        fault = self.faults[service].popleft() if self.faults[service] else None
        if fault is not None and fault.kind == "hang":
            await self._release.wait()
        return fault, body

    async def _accept(self, service: str, request: web.Request, body: Any) -> None:
        async with self._changed:
            self.received.append(
                Received(
                    service=service,
                    body=body,
                    headers=dict(request.headers),
                    at_s=time.monotonic(),
                )
            )
            self._changed.notify_all()

    @staticmethod
    def _common(fault: Fault, request: web.Request) -> web.Response | None:
        if fault.kind == "500":
            return web.Response(status=500, text=f"internal error handling {request.path}")
        if fault.kind == "400":
            return web.Response(status=400, text="invalid_payload")
        if fault.kind == "hang":
            return web.Response(status=500, text="released at the end of the test")
        return None

    async def _slack(self, request: web.Request) -> web.Response:
        fault, body = await self._arrive("slack", request)
        if fault is not None:
            if fault.kind == "429":
                # Slack: an integer number of seconds in Retry-After.
                wait = str(math.ceil(fault.retry_after_s))
                return web.Response(status=429, text="rate_limited", headers={"Retry-After": wait})
            return self._common(fault, request) or web.Response(status=500)
        if request.match_info["secret"] != SLACK_SECRET:
            return web.Response(status=404, text="no_service")
        await self._accept("slack", request, body)
        return web.Response(text="ok")

    async def _discord(self, request: web.Request) -> web.Response:
        fault, body = await self._arrive("discord", request)
        if fault is not None:
            if fault.kind == "429":
                # Discord: the precise wait in the JSON body, the header rounded up.
                return web.json_response(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": fault.retry_after_s,
                        "global": False,
                    },
                    status=429,
                    headers={"Retry-After": str(math.ceil(fault.retry_after_s))},
                )
            return self._common(fault, request) or web.Response(status=500)
        content, embeds = body.get("content"), body.get("embeds")
        if not (isinstance(content, str) or embeds) or len(content or "") > 2000:
            return web.json_response({"message": "Invalid Form Body", "code": 50035}, status=400)
        await self._accept("discord", request, body)
        return web.Response(status=204)

    async def _telegram(self, request: web.Request) -> web.Response:
        fault, body = await self._arrive("telegram", request)
        if fault is not None:
            if fault.kind == "429":
                wait = math.ceil(fault.retry_after_s)
                return web.json_response(
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {wait}",
                        "parameters": {"retry_after": wait},
                    },
                    status=429,
                )
            if fault.kind == "400":
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                    status=400,
                )
            return self._common(fault, request) or web.Response(status=500)
        if request.match_info["token"] != TELEGRAM_TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        await self._accept("telegram", request, body)
        message = {"message_id": len(self.received), "chat": {"id": body["chat_id"]}}
        return web.json_response({"ok": True, "result": {**message, "text": body["text"]}})

    async def _hook(self, request: web.Request) -> web.Response:
        fault, body = await self._arrive("hook", request)
        if fault is not None:
            if fault.kind == "429":
                wait = f"{fault.retry_after_s:g}"
                return web.Response(status=503, headers={"Retry-After": wait})
            return self._common(fault, request) or web.Response(status=500)
        await self._accept("hook", request, body)
        return web.json_response({"accepted": True})
