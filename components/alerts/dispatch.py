"""Send alerts: route them, deliver each to its channel with retries, record what was sent.

A failing channel does not stop the others. It is tried ``attempts`` times with
exponential backoff (``sleep`` is injectable, so tests do not wait), each failed attempt
is logged, and a channel that still fails is reported as an alert of its own to the log
channel when there is one (else logged as an error). Only successful deliveries enter the
dedupe state, so a failed one is sent again next time. Every error text has its URLs
masked: a webhook's token never reaches a log line or a result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from components.alerts.alert import Alert, utc_now
from components.alerts.channels.base import Channel, ChannelError, redact_urls
from components.alerts.channels.log import LoggingChannel
from components.alerts.routing import DEFAULT_COOLDOWN, Delivery, plan_deliveries, record_sent
from components.alerts.state import load_state, save_state
from components.core.problem import AlertSpec, Severity

logger = logging.getLogger(__name__)

Status = Literal["sent", "suppressed", "failed"]
CHANNEL_FAILED = "alert-channel-failed"


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one alert on one channel. ``detail`` is the error text of a failed
    delivery and the reason of a suppressed one; ``attempts`` counts the sends tried."""

    channel: str
    problem: str
    condition: str
    severity: Severity
    status: Status
    attempts: int = 0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dispatch_alerts(
    alerts: Iterable[Alert],
    channels: Sequence[Channel],
    spec: AlertSpec,
    *,
    state_path: Path,
    cooldown: timedelta = DEFAULT_COOLDOWN,
    attempts: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = utc_now,
) -> list[DeliveryResult]:
    """Deliver ``alerts`` to ``channels`` (``channels[i]`` built from ``spec.channels[i]``)
    and return one result per routed (alert, channel) pair, most severe alerts first.
    The dedupe state lives in the JSON file ``state_path`` (see ``components.alerts.state``)."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    names = [channel.name for channel in channels]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}")
    sent = load_state(state_path)
    now = clock()
    deliveries = plan_deliveries(alerts, spec, names, sent, now=now, cooldown=cooldown)
    by_name = dict(zip(names, channels, strict=True))
    results = [
        _deliver(d, by_name[d.channel], attempts=attempts, backoff_s=backoff_s, sleep=sleep)
        for d in deliveries
    ]
    delivered = [d for d, r in zip(deliveries, results, strict=True) if r.status == "sent"]
    updated = record_sent(sent, delivered, now=now, cooldown=cooldown)
    if updated != sent:
        save_state(state_path, updated)
    _report_failures([r for r in results if r.status == "failed"], channels, now)
    return results


def _deliver(
    delivery: Delivery,
    channel: Channel,
    *,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> DeliveryResult:
    if delivery.suppressed is not None:
        return _result(delivery, "suppressed", detail=delivery.suppressed)
    alert = delivery.alert
    for attempt in range(1, attempts + 1):
        try:
            channel.send(alert)
        except Exception as exc:
            error = _error_text(channel, exc)
            final = attempt == attempts or not getattr(exc, "retryable", True)
            logger.warning(
                "alert %s to channel %s: attempt %d of %d failed%s: %s",
                alert.condition,
                channel.name,
                attempt,
                attempts,
                "" if final else ", retrying",
                error,
            )
            if final:
                return _result(delivery, "failed", attempts=attempt, detail=error)
            sleep(backoff_s * 2 ** (attempt - 1))
        else:
            return _result(delivery, "sent", attempts=attempt)
    raise AssertionError("unreachable: the last attempt returns")


def _result(
    delivery: Delivery, status: Status, attempts: int = 0, detail: str = ""
) -> DeliveryResult:
    alert = delivery.alert
    return DeliveryResult(
        delivery.channel, alert.problem, alert.condition, alert.severity, status, attempts, detail
    )


def _error_text(channel: Channel, exc: Exception) -> str:
    if isinstance(exc, ChannelError):
        return redact_urls(str(exc))
    return redact_urls(f"{channel.name}: {type(exc).__name__}: {exc}")


def _report_failures(
    failed: Sequence[DeliveryResult], channels: Sequence[Channel], now: datetime
) -> None:
    log = next((c for c in channels if isinstance(c, LoggingChannel)), None)
    for result in failed:
        if log is not None and log.name != result.channel:
            report = Alert(
                problem=result.problem,
                severity="alert",
                condition=CHANNEL_FAILED,
                title=f"channel {result.channel} could not deliver {result.condition}",
                reasons=(result.detail,),
                created_at=now,
            )
            try:
                log.send(report)
                continue
            except Exception as exc:  # a broken logging handler: fall back to our logger
                logger.error("cannot report to %s: %s", log.name, redact_urls(str(exc)))
        logger.error(
            "alert %s (%s) was not delivered to channel %s after %d attempts: %s",
            result.condition,
            result.severity,
            result.channel,
            result.attempts,
            result.detail,
        )
