"""The verdict on a monitored window: a pure function of its checks' findings.

Every check returns findings, one per thing it looked at (a feature's PSI, a column's
nulls, the scores, a metric), each with its own status. The verdict is the worst status
among them and keeps every reason at that status or above a warning, so a report, an alert
and an event all say everything that was found, not only the first thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "insufficient data", "warn", "alert"]
_RANK: dict[str, int] = {"ok": 0, "insufficient data": 1, "warn": 2, "alert": 3}

# Which checks raise which condition (the alert's and the Prefect event's name).
CONDITIONS: dict[str, str] = {
    "feature_drift": "drift-detected",
    "prediction_drift": "drift-detected",
    "data_quality": "quality-failed",
    "rejections": "quality-failed",
    "performance": "performance-degraded",
    "calibration": "performance-degraded",
    "degradation": "performance-degraded",
    "estimated_performance": "performance-degraded",
}


@dataclass(frozen=True)
class Finding:
    """What one check found about one subject (a feature, a column, the scores, a metric)."""

    check: str
    subject: str
    status: Status
    message: str
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    status: Status
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"status": self.status, "reasons": list(self.reasons)}


def verdict(findings: Iterable[Finding]) -> Verdict:
    """ok, insufficient data, warn or alert: the worst finding's status; the reasons are
    every warning and alert (or, with none, why the data was insufficient)."""
    findings = list(findings)
    status: Status = max((f.status for f in findings), key=_RANK.__getitem__, default="ok")
    floor = "warn" if _RANK[status] >= _RANK["warn"] else status
    reasons = tuple(
        f.message for f in findings if _RANK[f.status] >= _RANK[floor] and floor != "ok"
    )
    return Verdict(status, reasons)


def conditions(findings: Iterable[Finding], at_least: Status = "alert") -> dict[str, list[str]]:
    """The conditions raised (e.g. ``drift-detected``) by findings at ``at_least`` or worse,
    each with its reasons, in the order the findings came."""
    raised: dict[str, list[str]] = {}
    for finding in findings:
        if _RANK[finding.status] >= _RANK[at_least] and finding.check in CONDITIONS:
            raised.setdefault(CONDITIONS[finding.check], []).append(finding.message)
    return raised


def worse(a: Status, b: Status) -> Status:
    return a if _RANK[a] >= _RANK[b] else b
