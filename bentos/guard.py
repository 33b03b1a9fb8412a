"""An ASGI middleware for what must be checked before and while a body is read: its size
(413), the API key (401) and how long the client takes to send it (408). Pure ASGI, so it
runs in front of whatever app it wraps.

A body that is still arriving after ``body_timeout_s`` gets a 408: the client's mistake,
answered as one. (Without it, BentoML's request timeout, the service's `traffic.timeout`,
would cancel the request later and answer 504, a server error.) A request whose body is
still arriving sits in a dict; one watchdog task per worker wakes every second while any
does, and cancels those past their deadline. The processing of a request is not under this
deadline: it runs in the event loop, where only BentoML's timeout applies.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PROTECTED_DEFAULT = ("/predict", "/feedback")
_WATCH_S = 1.0  # how often the watchdog looks, at most

logger = logging.getLogger(__name__)


@dataclass
class GuardConfig:
    """The guard's limits; the service sets them from its settings when it starts."""

    max_body_bytes: int = 1_048_576
    api_key: bytes | None = None
    body_timeout_s: float = 10.0
    # Told the path of each request refused as too large, declared or streamed (the
    # service counts refused predictions as rejections).
    on_too_large: Callable[[str], None] | None = None

    def update(self, *, max_body_bytes: int, api_key: str | None, body_timeout_s: float) -> None:
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode() if api_key else None
        self.body_timeout_s = body_timeout_s


class Guard:
    def __init__(self, app, *, config: GuardConfig, protected: Iterable[str] = PROTECTED_DEFAULT):
        self.app = app
        self.config = config
        self.protected = tuple(protected)
        # Requests whose body is not complete yet, with their deadlines (loop time); the
        # ones the watchdog cancelled; the watchdog itself, running while there are any.
        self._reading: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._watchdog: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        key = self.config.api_key
        if key and path.endswith(self.protected) and not _authorised(scope, key):
            return await _reply(send, 401, "missing or wrong API key (header X-API-Key)")
        declared = _content_length(scope)
        if declared is not None and declared > self.config.max_body_bytes:
            self._told_too_large(path)
            return await _reply(send, 413, self._too_large(declared))
        task = asyncio.current_task()
        loop = task.get_loop()
        self._reading[task] = loop.time() + self.config.body_timeout_s
        watchdog = self._watchdog
        if watchdog is None or watchdog.get_loop() is not loop:  # (a test's new loop)
            self._watchdog = loop.create_task(self._watch(loop))
        try:
            return await self.app(
                scope, self._limited(receive, task, path), self._sending(send, task)
            )
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            task.uncancel()  # the cancellation was ours, and is answered here
            timeout = self.config.body_timeout_s
            await _reply(
                send,
                408,
                f"the request body did not arrive within {timeout:g} s "
                "(MLOPS_SERVE_BODY_TIMEOUT_S)",
            )
        finally:
            self._reading.pop(task, None)
            self._expired.discard(task)  # answered 408 above, or by the app itself

    def _told_too_large(self, path: str) -> None:
        if self.config.on_too_large is not None:
            self.config.on_too_large(path)

    def _limited(self, receive, task, path: str):
        """Count bytes of a body sent without (or with a false) Content-Length, and take the
        request off the deadline once its body is complete."""
        seen = 0

        async def wrapped():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.config.max_body_bytes:
                    self._told_too_large(path)
                    raise BodyTooLargeError(self._too_large(seen))
                if not message.get("more_body", False):
                    self._reading.pop(task, None)
            else:  # http.disconnect: nothing more will arrive
                self._reading.pop(task, None)
            return message

        return wrapped

    def _sending(self, send, task):
        """The app's send: a response that starts takes the request off the deadline (a 408
        can no longer replace it)."""

        async def wrapped(message):
            if message["type"] == "http.response.start":
                self._reading.pop(task, None)
            await send(message)

        return wrapped

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the requests past their deadline; returns when none is waiting for a body
        (the next request starts it again), so an idle worker has no timer running."""
        try:
            while self._reading:
                await asyncio.sleep(min(_WATCH_S, self.config.body_timeout_s / 4))
                now = loop.time()
                late = [task for task, deadline in self._reading.items() if deadline <= now]
                for task in late:
                    del self._reading[task]
                    if task.get_loop() is loop:  # not a request left by a closed loop
                        self._expired.add(task)
                        task.cancel()
        except Exception:  # never leave the guard without a watchdog because of one error
            logger.exception("request body watchdog failed; restarting it on the next request")
        finally:
            if self._watchdog is asyncio.current_task():
                self._watchdog = None

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
