"""A report's alerts: one per condition, alert-level first, warnings only where no alert
of the same condition covers them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from components.monitoring.monitor import MonitoringReport, history_windows
from components.monitoring.notify import alerts_of

START = datetime(2026, 11, 3, tzinfo=UTC)


def report(*findings: tuple[str, str, str]) -> MonitoringReport:
    return MonitoringReport(
        problem="churn",
        window_start=START,
        window_end=START + timedelta(days=1),
        champion="v1",
        served_versions={"v1": 3000},
        rows=3000,
        rejected=0,
        rejection_reasons=[],
        unlabelled=3000,
        status="alert",
        reasons=[],
        conditions={},
        findings=[
            {
                "check": c,
                "subject": "x",
                "status": s,
                "message": m,
                "value": None,
                "threshold": None,
            }
            for c, s, m in findings
        ],
        performance={},
        created_at=START + timedelta(days=1),
    )


def test_one_alert_per_condition_with_every_reason():
    alerts = alerts_of(
        report(
            ("feature_drift", "alert", "monthly_charges: PSI 0.9"),
            ("prediction_drift", "warn", "scores moved"),
            ("rejections", "alert", "rejections: 3%"),
            ("estimated_performance", "warn", "estimate down"),
            ("data_quality", "ok", "fine"),
        ),
        "file:///store/page.html",
    )
    assert [(a.condition, a.severity) for a in alerts] == [
        ("drift-detected", "alert"),
        ("quality-failed", "alert"),
        ("performance-degraded", "warn"),
    ]
    assert alerts[0].reasons == ("monthly_charges: PSI 0.9", "scores moved")
    assert alerts[0].report == "file:///store/page.html"
    assert alerts[0].window_start == START and "2026-11-03" in alerts[0].title


def test_a_quiet_report_sends_nothing():
    assert alerts_of(report(("feature_drift", "ok", "fine"))) == []


def test_history_covers_the_label_delay_and_the_pooled_windows(spec):
    assert history_windows(spec, timedelta(days=1)) == 30 + 3 + 1
    assert history_windows(spec, timedelta(hours=12)) == 60 + 3 + 1
