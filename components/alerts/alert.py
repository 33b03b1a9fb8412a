"""What an alert says: one condition of one problem at one severity, with every reason.

An :class:`Alert` is immutable and JSON-able (:meth:`Alert.payload`); channels render it
with :meth:`Alert.subject` and :meth:`Alert.body`, so every channel says the same thing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.core.problem import Severity

# Severities in increasing order; routing compares them by rank.
SEVERITIES: tuple[Severity, ...] = ("info", "warn", "alert")
SEVERITY_RANK: dict[str, int] = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def at_least(severity: Severity, minimum: Severity) -> bool:
    """Whether ``severity`` reaches ``minimum`` (``alert`` reaches ``warn``)."""
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Alert(BaseModel):
    """One condition found for a problem.

    ``condition`` is a kebab-case key naming what was found ("drift-detected",
    "performance-degraded", "quality-failed", "promotion-refused"); together with
    ``problem`` and ``severity`` it is what dedupe compares, so the reasons may change
    between two alerts of the same condition without it being sent again. Times are
    timezone-aware; ``report`` is a path or URL of the report that explains the alert.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    problem: str = Field(min_length=1)
    severity: Severity
    condition: str = Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
    title: str = Field(min_length=1)
    reasons: tuple[str, ...] = ()
    window_start: datetime | None = None
    window_end: datetime | None = None
    created_at: datetime = Field(default_factory=utc_now)
    report: str | None = None

    @field_validator("window_start", "window_end", "created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("must be timezone-aware (e.g. datetime.now(UTC))")
        return value

    @model_validator(mode="after")
    def _window_in_order(self) -> Alert:
        start, end = self.window_start, self.window_end
        if start is not None and end is not None and start > end:
            raise ValueError(f"window_start ({start}) is after window_end ({end})")
        return self

    def payload(self) -> dict[str, Any]:
        """The alert as JSON-ready values (times in ISO 8601)."""
        return self.model_dump(mode="json")

    def subject(self) -> str:
        """One line: severity, problem, condition and title."""
        return f"[{self.severity.upper()}] {self.problem}: {self.condition}: {self.title}"

    def window(self) -> str | None:
        """The window as "<start> to <end>" (ISO 8601, "?" for a missing end), or None."""
        if not (self.window_start or self.window_end):
            return None
        start = self.window_start.isoformat() if self.window_start else "?"
        end = self.window_end.isoformat() if self.window_end else "?"
        return f"{start} to {end}"

    def body(self) -> str:
        """The subject, every reason on its own line, then the window and the report."""
        lines = [self.subject(), *(f"- {reason}" for reason in self.reasons)]
        if self.window():
            lines.append(f"window: {self.window()}")
        if self.report:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)
