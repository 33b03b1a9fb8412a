"""The Slack-compatible incoming-webhook channel: an HTTP POST of ``{"text", "blocks"}``.

Slack, Mattermost and Rocket.Chat read ``text``; Slack also renders ``blocks``. The URL of
an incoming webhook is its credential, so it never appears in a repr, a log line, an error
or a result: every message shows it as scheme and host only (``base.mask_url``), httpx's
own error texts included. httpx also logs each request's full URL at INFO on the "httpx"
logger; the first send adds a filter there that masks the URLs of webhook channels (and
only theirs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from components.alerts.alert import Alert
from components.alerts.channels.base import ChannelError, mask_url, redact_urls

# Explicit limits rather than httpx's implicit ones: a receiver may take a while to answer,
# but a host that does not accept the connection fails fast.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Slack's limits on a header block's text and a section's text.
_HEADER_MAX, _SECTION_MAX = 150, 3000
# Answers that may succeed when tried again; any other refusal is final.
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class _HideWebhookUrls(logging.Filter):
    """Masks the registered webhook URLs (and their paths) in records of httpx's logger."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            record.msg, record.args = redact_urls(message, *self.secrets), None
        return True


_HTTPX_LOG_FILTER = _HideWebhookUrls()


def _hide_in_httpx_log(secrets: tuple[str, ...]) -> None:
    httpx_logger = logging.getLogger("httpx")
    if _HTTPX_LOG_FILTER not in httpx_logger.filters:
        httpx_logger.addFilter(_HTTPX_LOG_FILTER)
    _HTTPX_LOG_FILTER.secrets.update(secrets)


@dataclass(frozen=True)
class WebhookChannel:
    """POSTs each alert to ``url``. ``client`` (e.g. one with a proxy, or a test transport)
    is used when given, else each send opens its own with ``timeout``."""

    url: str = field(repr=False)
    name: str = "slack"
    client: httpx.Client | None = field(default=None, repr=False, compare=False)
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{self.name}: the webhook URL ({mask_url(self.url)}) must start with "
                "https:// (or http://) and name a host"
            )

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r}, url={mask_url(self.url)!r})"

    @property
    def target(self) -> str:
        return mask_url(self.url)

    def send(self, alert: Alert) -> None:
        _hide_in_httpx_log(self._secrets())
        try:
            if self.client is not None:
                response = self.client.post(self.url, json=message(alert), timeout=self.timeout)
            else:
                with httpx.Client(timeout=self.timeout) as client:
                    response = client.post(self.url, json=message(alert))
        except httpx.HTTPError as exc:
            raise ChannelError(
                f"{self.name}: POST to {self.target} failed: "
                f"{type(exc).__name__}: {self._redact(str(exc))}"
            ) from None
        if response.status_code >= 300:
            status = response.status_code
            raise ChannelError(
                f"{self.name}: {self.target} answered HTTP {status}: "
                f"{self._redact(response.text[:200])}",
                retryable=status >= 500 or status in _RETRYABLE_STATUS,
            )

    def _secrets(self) -> tuple[str, ...]:
        # The URL as given and as httpx prints it, and its path and query on their own.
        parts = urlsplit(self.url)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        return tuple(s for s in (self.url, str(httpx.URL(self.url)), tail) if len(s) > 1)

    def _redact(self, text: str) -> str:
        return redact_urls(text, *self._secrets())


def message(alert: Alert) -> dict[str, Any]:
    """The webhook body: the plain text every receiver reads, and Slack blocks."""
    details = [f"• {_escape(reason)}" for reason in alert.reasons] or [_escape(alert.title)]
    context = []
    if alert.window():
        context.append(f"window {alert.window()}")
    if alert.report:
        context.append(f"report: {_escape(alert.report)}")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(alert.subject(), _HEADER_MAX)},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _clip("\n".join(details), _SECTION_MAX)},
        },
    ]
    if context:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " | ".join(context)}]}
        )
    return {"text": alert.body(), "blocks": blocks}


def _escape(text: str) -> str:
    # Slack's mrkdwn reads &, < and > as markup.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
