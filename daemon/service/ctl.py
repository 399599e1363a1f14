"""`tradingd ctl`: call a running daemon's HTTP control plane (stdlib only, synchronous).

    halt     POST /halt               no new orders
    resume   POST /resume
    flatten  POST /flatten            close every position
    reset    POST /kill-switch/reset  clear the kill switch
    status   GET  /state (+ /readyz)  read-only; needs no token

Proxies are bypassed: the daemon is addressed directly (127.0.0.1 by default), and the bearer
token must never go to a proxy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from feeds.errors import TradingdError

ACTIONS: dict[str, tuple[str, str]] = {
    "halt": ("POST", "/halt"),
    "resume": ("POST", "/resume"),
    "flatten": ("POST", "/flatten"),
    "reset": ("POST", "/kill-switch/reset"),
    "status": ("GET", "/state"),
}
DEFAULT_URL = "http://127.0.0.1:9108"


class ControlError(TradingdError):
    """The daemon could not be reached, or refused or failed the request; the message says
    which URL and why."""


def ctl(
    action: str, *, url: str, token: str | None, timeout_s: float = 5.0
) -> tuple[int, dict[str, Any]]:
    """Run one control action against the daemon at `url`.

    Returns:
        (HTTP status, JSON body). For `status`: the state, with the /readyz answer under
        "readyz" ({"ready": bool, "checks": {...}, "not_ready": [...]}).

    Raises:
        ControlError: unknown action, daemon unreachable, token refused (401), control plane
            disabled (403), or the action failed; the message names the URL.
    """
    if action not in ACTIONS:
        raise ControlError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    method, path = ACTIONS[action]
    base = url.rstrip("/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    status, body = _call(opener, method, base + path, token, timeout_s)
    if action == "status":
        _, ready = _call(opener, "GET", base + "/readyz", token, timeout_s, ok=(200, 503))
        body = {**body, "readyz": ready}
    return status, body


def _call(
    opener: urllib.request.OpenerDirector,
    method: str,
    url: str,
    token: str | None,
    timeout_s: float,
    *,
    ok: tuple[int, ...] = (200,),
) -> tuple[int, dict[str, Any]]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if not url.startswith(("http://", "https://")):
        raise ControlError(f"{url}: the daemon's URL must start with http:// or https://")
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked
        url, method=method, headers=headers, data=b"" if method == "POST" else None
    )
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ControlError(
            f"cannot reach tradingd at {url}: {reason} "
            "(is the daemon running, with its HTTP server on that address?)"
        ) from e
    body = _parse(raw)
    if status in ok:
        return status, body
    error = body.get("error", "")
    if status == 401:
        hint = (
            "no token given: set TRADINGD_CONTROL_TOKEN to the daemon's token"
            if not token
            else "the token does not match the daemon's TRADINGD_CONTROL_TOKEN"
        )
        raise ControlError(f"{method} {url}: 401 unauthorized: {hint}")
    if status == 403:
        raise ControlError(f"{method} {url}: 403 {error or 'forbidden'}")
    raise ControlError(f"{method} {url}: HTTP {status}: {error or body}")


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {"body": raw.decode(errors="replace")[:500]}
    return body if isinstance(body, dict) else {"body": body}
