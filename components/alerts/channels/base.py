"""What every alert channel shares: the protocol, the error a failed send raises, and the
helpers that keep secrets (webhook URLs and their tokens) out of every message.

A channel sends one alert or raises; it never retries, dedupes or filters by severity:
the dispatch and the routing do that, the same way for every channel.
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import urlsplit

from components.alerts.alert import Alert

# Anything that looks like a URL: a scheme, "://", then up to the next space or quote.
REDACTED = "<redacted>"
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s'\"<>]+)")


class Channel(Protocol):
    """Somewhere an alert can be sent. ``name`` is unique among a problem's channels and
    carries no secret: results, logs and the dedupe state use it."""

    name: str

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` once, or raise (a :class:`ChannelError` when the reason is known)."""
        ...


class ChannelError(RuntimeError):
    """A send failed. The message names the channel and the cause and holds no secret;
    ``retryable`` is False when trying again cannot help (a refused request, a bad config)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def mask_url(url: str) -> str:
    """The URL reduced to scheme, host and port: ``https://hooks.slack.com/…``. The path,
    query and user info of an incoming-webhook URL are its secret."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme or not host:
        return "<URL without scheme or host>"
    netloc = f"{host}:{port}" if port else host
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{netloc}/…" if hidden else f"{parts.scheme}://{netloc}"


def redact_urls(text: str, *secrets: str) -> str:
    """``text`` with every URL in it replaced by :func:`mask_url`'s form and each of
    ``secrets`` (a URL, or a bare path or token) masked too, so an exception or a response
    that quotes a request URL can be logged and returned as is."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, mask_url(secret) if "://" in secret else REDACTED)
    return _URL.sub(lambda m: mask_url(m.group(0)), text)
