"""What a monitoring report tells people: one alert per condition it raised.

A condition (drift detected, data quality failed, performance degraded) is an ``alert``
when a finding behind it is, and a ``warn`` when its worst finding is a warning; the alert
carries every reason of that condition, the window and the report's location. Routing,
dedupe and delivery are :mod:`components.alerts`' job.
"""

from __future__ import annotations

from components.alerts.alert import Alert
from components.monitoring.monitor import MonitoringReport
from components.monitoring.verdict import Finding, conditions

TITLES = {
    "drift-detected": "the traffic no longer looks like the champion's training data",
    "quality-failed": "the data reaching the service breaks its contract",
    "performance-degraded": "the champion does worse than it did on its test rows",
}


def alerts_of(report: MonitoringReport, location: str | None = None) -> list[Alert]:
    """The alerts of ``report``: its alert-level conditions (with the warnings behind them
    too), then the warning-level ones that no alert already covers."""
    findings = [Finding(**f) for f in report.findings]
    raised = conditions(findings, at_least="warn")  # every reason, warnings included
    alerting = {name: raised[name] for name in conditions(findings, at_least="alert")}
    warning = {name: reasons for name, reasons in raised.items() if name not in alerting}
    return [
        Alert(
            problem=report.problem,
            severity=severity,
            condition=name,
            title=f"{TITLES.get(name, name)} ({report.window_start:%Y-%m-%d %H:%M} UTC window)",
            reasons=tuple(reasons),
            window_start=report.window_start,
            window_end=report.window_end,
            created_at=report.created_at,
            report=location,
        )
        for severity, raised in (("alert", alerting), ("warn", warning))
        for name, reasons in raised.items()
    ]
