"""Secrets out of text: webhook URLs and tokens never reach a log line or an error message.

aiohttp's errors name the URL they failed on, and a Slack or Discord webhook URL is itself the
credential (its path is the secret), as is a Telegram URL (the token is in its path). Every
string about a request passes through a `Redactor` first.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"


class Redactor:
    """Replaces each known secret, and the path and query of each secret URL, with `***`.

    Args:
        secrets: tokens and URLs; empty strings are ignored.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        parts: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            parts.add(secret)
            split = urlsplit(secret)
            if split.scheme and split.netloc:
                # The path alone shows up in some messages (and it is the credential).
                for piece in (split.path, split.query):
                    if len(piece) > 1:
                        parts.add(piece)
        # Longest first: a URL is masked whole before its path is looked for.
        self._parts = sorted(parts, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for part in self._parts:
            if part in text:
                text = text.replace(part, MASK)
        return text
