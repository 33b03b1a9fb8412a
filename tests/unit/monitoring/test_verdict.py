"""The verdict is the worst finding's status with every reason; conditions by check."""

from __future__ import annotations

from components.monitoring.verdict import Finding, conditions, verdict


def f(check: str, status: str, message: str | None = None) -> Finding:
    return Finding(check, "x", status, message or f"{check} {status}")


def test_all_ok_is_ok_without_reasons():
    assert verdict([f("feature_drift", "ok"), f("data_quality", "ok")]).to_dict() == {
        "status": "ok",
        "reasons": [],
    }
    assert verdict([]).status == "ok"


def test_the_worst_status_wins_and_every_warning_and_alert_is_a_reason():
    result = verdict(
        [
            f("feature_drift", "warn", "a warn"),
            f("feature_drift", "ok"),
            f("data_quality", "alert", "an alert"),
            f("prediction_drift", "insufficient data"),
            f("rejections", "alert", "another alert"),
        ]
    )
    assert result.status == "alert"
    assert result.reasons == ("a warn", "an alert", "another alert")


def test_insufficient_data_is_said_when_nothing_worse_was_found():
    result = verdict([f("feature_drift", "insufficient data", "few rows"), f("x", "ok")])
    assert result.status == "insufficient data"
    assert result.reasons == ("few rows",)
    assert verdict([f("feature_drift", "insufficient data"), f("x", "warn", "w")]).reasons == ("w",)


def test_conditions_group_alerts_by_what_they_mean():
    found = [
        f("feature_drift", "alert", "psi"),
        f("prediction_drift", "warn", "scores"),
        f("rejections", "alert", "rejected"),
        f("calibration", "alert", "calibration"),
        f("data_quality", "ok"),
    ]
    assert conditions(found) == {
        "drift-detected": ["psi"],
        "quality-failed": ["rejected"],
        "performance-degraded": ["calibration"],
    }
    assert conditions(found, at_least="warn")["drift-detected"] == ["psi", "scores"]
