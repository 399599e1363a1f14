"""The daemon's HTTP server: metrics, health, state and the control plane (aiohttp).

    GET  /metrics            Prometheus text exposition
    GET  /healthz            200 {"status": "alive"} while the daemon's tasks run, else 503
    GET  /readyz             200 when every readiness check passes, else 503 naming the failures
    GET  /state              the daemon's state as JSON
    GET  /, /events          the status page and its live updates (daemon.service.status_page)
    POST /halt /resume /flatten /kill-switch/reset
                             the control plane: only with a token (TRADINGD_CONTROL_TOKEN), and
                             only for a request carrying `Authorization: Bearer <token>`

It binds 127.0.0.1 by default: the control plane moves money, and /state shows the positions.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from daemon.logs import EventLog
from daemon.service.status_feed import StatusFeed
from daemon.service.status_page import StatusPage
from daemon.service.telemetry import Telemetry
from feeds.errors import TradingdError

TOKEN_ENV = "TRADINGD_CONTROL_TOKEN"  # noqa: S105 - the variable's name, not a secret
_JSON = "application/json"


CONTROL_TOKEN_ENV = "TRADINGD_CONTROL_TOKEN"  # noqa: S105 - the variable's name


class DaemonControl(Protocol):
    """What the server asks of a daemon (LiveDaemon, the paced replay). Called on the loop."""

    mode: str

    def alive(self) -> bool:
        """Its tasks are running."""
        ...

    def readiness(self) -> dict[str, bool]:
        """Each readiness check by name: {"feed": .., "broker_stream": .., "reconciled": ..}."""
        ...

    def state(self) -> dict[str, Any]:
        """JSON-ready state: positions, open orders, targets, risk, kill switch, mode..."""
        ...

    def halt(self) -> dict[str, Any]: ...

    def resume(self) -> dict[str, Any]: ...

    def flatten(self) -> dict[str, Any]: ...

    def reset_kill_switch(self) -> dict[str, Any]: ...


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type=_JSON,
        headers=headers,
    )


def is_loopback(host: str) -> bool:
    """Whether `host` binds only the loopback interface ("localhost" counts)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class HttpServer:
    """One aiohttp server on `host:port` (port 0: an ephemeral port, read `port` after start).

    Args:
        control: the daemon it serves.
        telemetry: the metrics it exposes; `/metrics` and `/readyz` also set `tradingd_ready`.
        log: where control actions, refused requests and the bind address are logged.
        token: the control-plane token; None or empty disables the control endpoints (403).
        feed: what the status page shows beyond `/state` (the equity curve, fills, orders).
    """

    def __init__(
        self,
        control: DaemonControl,
        telemetry: Telemetry,
        *,
        log: EventLog,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        feed: StatusFeed | None = None,
    ) -> None:
        self.control = control
        self.telemetry = telemetry
        self.log = log
        self.host = host
        self.port = port
        self._token = token.encode() if token else None
        self._runner: web.AppRunner | None = None
        self.page = StatusPage(control, feed, log=log, control_enabled=self._token is not None)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            TradingdError: the address cannot be bound (taken, not an address of this host).
        """
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/state", self._state)
        self.page.add_routes(app)
        actions: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
            "/halt": ("halt", self.control.halt),
            "/resume": ("resume", self.control.resume),
            "/flatten": ("flatten", self.control.flatten),
            "/kill-switch/reset": ("reset_kill_switch", self.control.reset_kill_switch),
        }
        for path, (action, method) in actions.items():
            app.router.add_post(path, self._control_handler(action, method))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise TradingdError(
                f"HTTP server cannot listen on {self.host}:{self.port}: {e.strerror or e}"
            ) from e
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.log.info("http_started", url=self.url, control=self._token is not None)
        if not is_loopback(self.host):
            self.log.warning(
                "http_exposed",
                host=self.host,
                port=self.port,
                detail="the HTTP server listens beyond this machine: /state shows positions"
                + (" and the control plane is on" if self._token is not None else ""),
            )

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        await self.page.close()  # open event streams end, so the cleanup does not wait on them
        if runner is not None:
            await runner.cleanup()

    # -- handlers -----------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """JSON bodies for 404/405 and for a handler's failure (never a stack trace)."""
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed as e:
            return _json(
                {"error": "method not allowed", "allowed": sorted(e.allowed_methods)},
                405,
                {"Allow": ",".join(sorted(e.allowed_methods))},
            )
        except web.HTTPNotFound:
            return _json({"error": "not found", "path": request.path}, 404)
        except web.HTTPException:
            raise
        except Exception as e:  # a bug in a control method must not kill the server
            self.log.error("http_error", path=request.path, error=f"{type(e).__name__}: {e}")
            return _json({"error": "internal error"}, 500)

    async def _metrics(self, request: web.Request) -> web.Response:
        self._readiness()  # keeps tradingd_ready current at every scrape
        body, content_type = await self.telemetry.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.control.alive():
            return _json({"status": "alive"})
        return _json({"status": "dead"}, 503)

    def _readiness(self) -> dict[str, bool]:
        checks = {name: bool(ok) for name, ok in self.control.readiness().items()}
        self.telemetry.ready(all(checks.values()))
        return checks

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = self._readiness()
        not_ready = sorted(name for name, ok in checks.items() if not ok)
        if not_ready:
            return _json({"ready": False, "not_ready": not_ready, "checks": checks}, 503)
        return _json({"ready": True, "checks": checks})

    async def _state(self, request: web.Request) -> web.Response:
        return _json(self.control.state())

    def _control_handler(
        self, action: str, method: Callable[[], dict[str, Any]]
    ) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            if self._token is None:
                return _json(
                    {"error": f"control plane disabled: set {TOKEN_ENV}"},
                    403,
                )
            if not self._authorized(request):
                # Never the token given: a near miss would leak most of the real one.
                self.log.warning(
                    "control_unauthorized",
                    path=request.path,
                    peer=request.remote,
                    credentials="given" if "Authorization" in request.headers else "missing",
                )
                return _json(
                    {"error": "unauthorized"}, 401, {"WWW-Authenticate": 'Bearer realm="tradingd"'}
                )
            try:
                result = method()
            except TradingdError as e:
                self.log.error("control_failed", action=action, error=str(e))
                return _json({"error": str(e), "action": action}, 409)
            self.log.info("control", action=action, peer=request.remote, result=result)
            return _json(result)

        return handle

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # compare_digest needs equal types. aiohttp decodes a header's bytes as UTF-8 with
        # surrogate escapes: encoding them back the same way never raises (a header of
        # Latin-1 or random bytes is a wrong token, 401, not a server error).
        return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self._token)
