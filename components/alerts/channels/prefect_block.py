"""The Prefect notification-block channel: a block saved on the Prefect server (Slack,
Teams, PagerDuty, e-mail, a custom webhook), loaded by name and asked to ``notify``.

Components never import Prefect, so the loader comes in as an argument: the flow layer
passes ``flows.alerting.prefect_block_loader()``; tests pass a small fake. Prefect's
notification blocks log a failed send and return, so ``notify`` is called inside
``block.raise_on_failure()``, which makes the failure an exception the dispatch can retry
and report. A block's errors may quote the URL it posts to: URLs are masked in messages.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from components.alerts.alert import Alert
from components.alerts.channels.base import ChannelError, redact_urls


@dataclass
class PrefectBlockChannel:
    """Notifies through the block ``block`` (``<block-type-slug>/<block-name>``, e.g.
    ``slack-webhook/ops``). The block is loaded on the first send, and again after a send
    that failed to load it, so an unreachable server at build time is not fatal."""

    block: str
    load_block: Callable[[str], Any] = field(repr=False, compare=False)
    name: str = "prefect"
    _loaded: Any = field(default=None, init=False, repr=False, compare=False)

    def send(self, alert: Alert) -> None:
        block = self._block()
        try:
            with block.raise_on_failure():
                result = block.notify(alert.body(), subject=alert.subject())
        except Exception as exc:
            raise ChannelError(
                f"{self.name}: block {self.block!r} failed to notify: "
                f"{type(exc).__name__}: {redact_urls(str(exc))}"
            ) from None
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it so Python does not warn later
            raise ChannelError(
                f"{self.name}: block {self.block!r} returned a coroutine, so nothing was "
                "sent: Prefect runs notify's async version inside an async flow or task; "
                "send alerts from a synchronous task",
                retryable=False,
            )

    def _block(self) -> Any:
        if self._loaded is None:
            try:
                self._loaded = self.load_block(self.block)
            except Exception as exc:
                raise ChannelError(
                    f"{self.name}: cannot load block {self.block!r}: "
                    f"{type(exc).__name__}: {redact_urls(str(exc))}"
                ) from None
            if not callable(getattr(self._loaded, "notify", None)):
                kind = type(self._loaded).__name__
                self._loaded = None
                raise ChannelError(
                    f"{self.name}: block {self.block!r} is a {kind}, which cannot notify: "
                    "name a notification block (slack-webhook, custom-webhook, ...)",
                    retryable=False,
                )
        return self._loaded
