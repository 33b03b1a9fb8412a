"""What a retraining run tells people (lifecycle stage 7): an alert when the challenger does
not replace the champion, with every reason the gate and the shadow check gave."""

from __future__ import annotations

from datetime import datetime

from components.alerts.alert import Alert
from components.model.gate import Decision

REFUSED = "promotion-refused"


def refused_alert(
    problem: str,
    version: str,
    champion: str | None,
    decision: Decision,
    *,
    at: datetime,
    card: str | None = None,
) -> Alert:
    """The alert of a challenger the gate refused: the champion stays."""
    stays = f"champion {champion} stays" if champion else "no champion"
    return Alert(
        problem=problem,
        severity="alert",
        condition=REFUSED,
        title=f"retrained {version} not promoted: {stays}",
        reasons=tuple(decision.failures) or ("the gate refused it",),
        created_at=at,
        report=card,
    )
