"""The API keys the sandbox accepts, on REST and on both websockets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """The only key and secret accepted; None for either accepts any non-empty value."""

    key: str | None = None
    secret: str | None = None

    def accept(self, key: object, secret: object) -> bool:
        """Whether a client presenting `key` and `secret` is let in."""
        if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
            return False
        if self.key is not None and key != self.key:
            return False
        return self.secret is None or secret == self.secret
