"""When to retrain (lifecycle stage 7): a pure function of what monitoring found, the
registry's history, the labels that arrived and the clock.

Retraining starts on a drift or performance alert (each can be switched off in the problem
file), on the problem's schedule, on enough new labelled rows, or by hand. It never starts
on a data-quality incident: a model trained on the incident's rows would learn it, so the
incident alerts and retraining waits for clean data. A cooldown and a weekly cap keep a
flapping signal from starting a storm of retrainings. The decision carries every reason
for and against; the flow only acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from components.core.problem import RetrainingSpec

DRIFT = "drift-detected"
PERFORMANCE = "performance-degraded"
QUALITY = "quality-failed"


@dataclass(frozen=True)
class WindowSignal:
    """What monitoring said of one window: its start, the alert-level conditions raised,
    each with its reasons, and when it was judged (a MonitoringReport's ``window_start``,
    ``conditions`` and ``created_at``; None: unknown, always counted)."""

    start: datetime
    conditions: dict[str, list[str]] = field(default_factory=dict)
    judged_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reasons: tuple[str, ...]  # why retrain (empty when nothing asks for it)
    blocked: tuple[str, ...] = ()  # why not now, although something asks for it

    def summary(self) -> str:
        if self.retrain:
            return "retrain: " + "; ".join(self.reasons)
        if self.blocked:
            return "wait: " + "; ".join(self.blocked) + " (asked: " + "; ".join(self.reasons) + ")"
        return "no retraining: nothing asks for it"


def decide(
    policy: RetrainingSpec,
    signals: Sequence[WindowSignal],
    *,
    trained_at: datetime,
    retrainings: Sequence[datetime],
    new_labelled_rows: int,
    now: datetime,
    requested: str | None = None,
) -> Decision:
    """Whether to retrain now.

    ``signals`` are the champion's monitored windows, oldest first; ``trained_at`` is when
    the champion was trained; ``retrainings`` when earlier retraining runs of the problem
    started; ``new_labelled_rows`` the labels that arrived since the later of the champion's
    training data and the last run; ``requested`` the reason of a retraining asked for by
    hand (it skips the cooldown and the cap, not the wait for clean data).

    Whatever asks is counted from the later of ``trained_at`` and the last run: a run
    answers the alerts judged and the schedule's firings before it, whether its challenger
    was promoted or refused, so a refused challenger is not retried every day on the same
    evidence. A window judged after it (the champion still degraded) asks again.
    """
    last = max([trained_at, *(t for t in retrainings if t <= now)])
    fresh = [s for s in signals if s.judged_at is None or s.judged_at > last]
    reasons = _asked(policy, fresh, last, new_labelled_rows, now)
    if requested:
        reasons.insert(0, f"asked by hand: {requested}")
    blocked = _blockers(policy, signals, retrainings, now, by_hand=bool(requested))
    if not reasons:
        return Decision(False, ())
    return Decision(not blocked, tuple(reasons), tuple(blocked))


def _asked(
    policy: RetrainingSpec,
    signals: Sequence[WindowSignal],
    since: datetime,
    new_labelled_rows: int,
    now: datetime,
) -> list[str]:
    reasons = []
    for condition, enabled in (
        (DRIFT, policy.on_drift_alert),
        (PERFORMANCE, policy.on_performance_alert),
    ):
        alerted = [s for s in signals if condition in s.conditions]
        if enabled and alerted:
            latest = alerted[-1]
            reasons.append(
                f"{condition} in the window of {latest.start:%Y-%m-%d %H:%M}: "
                + "; ".join(latest.conditions[condition])
            )
    due = schedule_due(policy.schedule, since, now)
    if due is not None:
        reasons.append(f"scheduled ({policy.schedule}): due since {due:%Y-%m-%d %H:%M}")
    if policy.min_new_labels and new_labelled_rows >= policy.min_new_labels:
        reasons.append(
            f"{new_labelled_rows} new labelled rows since the champion's training data or "
            f"the last retraining (at least {policy.min_new_labels})"
        )
    return reasons


def _blockers(
    policy: RetrainingSpec,
    signals: Sequence[WindowSignal],
    retrainings: Sequence[datetime],
    now: datetime,
    *,
    by_hand: bool,
) -> list[str]:
    blocked = []
    if signals and QUALITY in signals[-1].conditions:
        blocked.append(
            f"a data-quality incident in the latest window ({signals[-1].start:%Y-%m-%d %H:%M}): "
            "waiting for clean data"
        )
    if by_hand:
        return blocked
    cooldown = timedelta(hours=policy.cooldown_hours)
    recent = [t for t in retrainings if now - cooldown < t <= now]
    if recent:
        blocked.append(
            f"cooling down: a retraining started {max(recent):%Y-%m-%d %H:%M}, less than "
            f"{policy.cooldown_hours:g} h ago"
        )
    week = [t for t in retrainings if now - timedelta(days=7) < t <= now]
    if len(week) >= policy.max_per_week:
        blocked.append(
            f"{len(week)} retrainings in the last 7 days (at most {policy.max_per_week})"
        )
    return blocked


def schedule_due(schedule: str | None, since: datetime, now: datetime) -> datetime | None:
    """The latest time the cron ``schedule`` fired after ``since`` and by ``now``, or None
    (no schedule, or it has not fired since)."""
    if not schedule:
        return None
    from cronsim import CronSim

    fired = next(CronSim(schedule, now, reverse=True))
    return fired if since < fired <= now else None
