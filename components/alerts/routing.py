"""Which channel gets which alert: a pure function of the alerts, the alert spec's
severities and what was sent before.

Severity: a channel takes the alerts at or above its own ``min_severity`` when it sets
one, else at or above the spec's ``min_severity`` (so a log channel can take ``info``
while the rest take ``warn``, or a pager only ``alert``).

Dedupe, per channel: an alert is suppressed when the same condition (problem and
condition key) was sent to that channel at the same or a higher severity within the
cooldown. The reasons may differ; a more severe alert is never suppressed by a less
severe one, and within one batch the most severe alerts are planned first. The record of
what was sent maps :func:`dedupe_key` to the time it was sent; :func:`record_sent` adds
only the deliveries that succeeded, so a failed channel is tried again next time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from components.alerts.alert import SEVERITIES, SEVERITY_RANK, Alert, at_least
from components.core.problem import AlertSpec, Severity

DEFAULT_COOLDOWN = timedelta(hours=6)


@dataclass(frozen=True)
class Delivery:
    """One alert for one channel; ``suppressed`` says why it is not sent, if it is not."""

    alert: Alert
    channel: str
    suppressed: str | None = None


def thresholds(spec: AlertSpec) -> list[Severity]:
    """The minimum severity of each channel of ``spec``, in its order."""
    return [channel.min_severity or spec.min_severity for channel in spec.channels]


def dedupe_key(channel: str, problem: str, condition: str, severity: Severity) -> str:
    return f"{channel}|{problem}|{condition}|{severity}"


def plan_deliveries(
    alerts: Iterable[Alert],
    spec: AlertSpec,
    channel_names: Sequence[str],
    sent: Mapping[str, datetime],
    *,
    now: datetime,
    cooldown: timedelta = DEFAULT_COOLDOWN,
) -> list[Delivery]:
    """A delivery for each (alert, channel) pair that passes the channel's severity filter,
    suppressed when dedupe says so. ``channel_names[i]`` names ``spec.channels[i]``."""
    if len(channel_names) != len(spec.channels):
        raise ValueError(
            f"{len(channel_names)} channel names for the {len(spec.channels)} channels of the "
            "alert spec: build the channels from the same spec"
        )
    planned: set[str] = set()
    out = []
    ordered = sorted(alerts, key=lambda a: SEVERITY_RANK[a.severity], reverse=True)
    for alert in ordered:
        for name, minimum in zip(channel_names, thresholds(spec), strict=True):
            if not at_least(alert.severity, minimum):
                continue
            suppressed = _suppression(alert, name, sent, planned, now, cooldown)
            out.append(Delivery(alert, name, suppressed))
            if suppressed is None:
                planned.add(dedupe_key(name, alert.problem, alert.condition, alert.severity))
    return out


def _suppression(
    alert: Alert,
    channel: str,
    sent: Mapping[str, datetime],
    planned: set[str],
    now: datetime,
    cooldown: timedelta,
) -> str | None:
    for severity in SEVERITIES[SEVERITY_RANK[alert.severity] :]:
        key = dedupe_key(channel, alert.problem, alert.condition, severity)
        if key in planned:
            return f"{alert.condition} at {severity} is already in this batch for {channel}"
        at = sent.get(key)
        if at is not None and now - at < cooldown:
            return (
                f"{alert.condition} at {severity} was sent to {channel} at {at.isoformat()}; "
                f"not again before {(at + cooldown).isoformat()}"
            )
    return None


def record_sent(
    sent: Mapping[str, datetime],
    delivered: Iterable[Delivery],
    *,
    now: datetime,
    cooldown: timedelta = DEFAULT_COOLDOWN,
) -> dict[str, datetime]:
    """``sent`` without the entries whose cooldown has passed, plus ``now`` for each of
    ``delivered`` (pass only the deliveries that succeeded)."""
    out = {key: at for key, at in sent.items() if now - at < cooldown}
    for d in delivered:
        out[dedupe_key(d.channel, d.alert.problem, d.alert.condition, d.alert.severity)] = now
    return out
