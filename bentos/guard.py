"""An ASGI middleware for the two checks that must happen before a body is read:
its size (413) and the API key (401). Pure ASGI, so it runs in front of whatever app it wraps.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

PROTECTED_DEFAULT = ("/predict", "/feedback")


@dataclass
class GuardConfig:
    """The guard's limits; the service sets them from its settings when it starts."""

    max_body_bytes: int = 1_048_576
    api_key: bytes | None = None

    def update(self, *, max_body_bytes: int, api_key: str | None) -> None:
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode() if api_key else None


class Guard:
    def __init__(self, app, *, config: GuardConfig, protected: Iterable[str] = PROTECTED_DEFAULT):
        self.app = app
        self.config = config
        self.protected = tuple(protected)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        key = self.config.api_key
        if key and path.endswith(self.protected) and not _authorised(scope, key):
            return await _reply(send, 401, "missing or wrong API key (header X-API-Key)")
        declared = _content_length(scope)
        if declared is not None and declared > self.config.max_body_bytes:
            return await _reply(send, 413, self._too_large(declared))
        return await self.app(scope, self._limited(receive, send), send)

    def _limited(self, receive, send):
        """Count bytes of a body sent without (or with a false) Content-Length."""
        seen = 0

        async def wrapped():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.config.max_body_bytes:
                    raise BodyTooLargeError(self._too_large(seen))
            return message

        return wrapped

    def _too_large(self, size: int) -> str:
        return (
            f"request body of {size} bytes exceeds the limit of {self.config.max_body_bytes} "
            "bytes (MLOPS_SERVE_MAX_BODY_BYTES)"
        )


class BodyTooLargeError(Exception):
    """Raised while streaming a body past the limit; the app answers 413 (see service)."""


def _authorised(scope, key: bytes) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"x-api-key":
            return hmac.compare_digest(value, key)
    return False


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "detail": []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
