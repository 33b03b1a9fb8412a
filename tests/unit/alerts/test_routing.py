"""components/alerts/routing.py: severity filters and dedupe, decided without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from components.alerts.alert import Alert
from components.alerts.routing import (
    DEFAULT_COOLDOWN,
    Delivery,
    dedupe_key,
    plan_deliveries,
    record_sent,
    thresholds,
)
from components.core.problem import AlertSpec

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# log takes the spec's warn, jsonl lowers its own to info, slack raises its own to alert.
SPEC = AlertSpec.model_validate(
    {
        "min_severity": "warn",
        "channels": [
            {"type": "log"},
            {"type": "jsonl", "path": "alerts.jsonl", "min_severity": "info"},
            {
                "type": "slack",
                "webhook_url": "https://hooks.example/T/B/x",
                "min_severity": "alert",
            },
        ],
    }
)
NAMES = ["log", "jsonl", "slack"]


def alert(severity="warn", condition="drift-detected", reasons=("psi 0.3",), problem="churn"):
    return Alert(
        problem=problem,
        severity=severity,
        condition=condition,
        title="drift",
        reasons=reasons,
        created_at=NOW,
    )


def routed(alerts, sent=None, now=NOW, cooldown=DEFAULT_COOLDOWN):
    deliveries = plan_deliveries(alerts, SPEC, NAMES, sent or {}, now=now, cooldown=cooldown)
    return [(d.channel, d.alert.severity, d.suppressed is None) for d in deliveries]


def sent_at(channel, a, at):
    return {dedupe_key(channel, a.problem, a.condition, a.severity): at}


def test_a_channel_severity_replaces_the_spec_minimum():
    assert thresholds(SPEC) == ["warn", "info", "alert"]


@pytest.mark.parametrize(
    ("severity", "channels"),
    [("info", ["jsonl"]), ("warn", ["log", "jsonl"]), ("alert", ["log", "jsonl", "slack"])],
)
def test_each_channel_takes_the_severities_at_or_above_its_minimum(severity, channels):
    assert [c for c, _, send in routed([alert(severity)]) if send] == channels


def test_the_spec_minimum_applies_to_channels_without_their_own():
    spec = AlertSpec.model_validate({"min_severity": "alert", "channels": [{"type": "log"}]})
    assert plan_deliveries([alert("warn")], spec, ["log"], {}, now=NOW) == []
    assert len(plan_deliveries([alert("alert")], spec, ["log"], {}, now=NOW)) == 1


def test_the_same_condition_is_suppressed_within_the_cooldown_even_with_new_reasons():
    earlier = alert("warn", reasons=("psi 0.3 on price",))
    sent = sent_at("log", earlier, NOW - timedelta(hours=5))
    now_again = alert("warn", reasons=("psi 0.4 on price", "psi 0.2 on plan"))
    assert routed([now_again], sent) == [("log", "warn", False), ("jsonl", "warn", True)]
    reason = plan_deliveries([now_again], SPEC, NAMES, sent, now=NOW)[0].suppressed
    assert "sent to log at 2025-03-01T07:00:00+00:00" in reason
    assert "not again before 2025-03-01T13:00:00+00:00" in reason


def test_the_same_condition_is_sent_again_once_the_cooldown_has_passed():
    a = alert("warn")
    assert routed([a], sent_at("log", a, NOW - timedelta(hours=6)))[0] == ("log", "warn", True)
    short = routed([a], sent_at("log", a, NOW - timedelta(hours=1)), cooldown=timedelta(0))
    assert short[0] == ("log", "warn", True)


def test_another_condition_or_problem_is_not_suppressed():
    sent = sent_at("log", alert("warn"), NOW - timedelta(hours=1))
    assert routed([alert("warn", condition="quality-failed")], sent)[0][2] is True
    assert routed([alert("warn", problem="fraud")], sent)[0][2] is True


def test_a_more_severe_alert_is_not_suppressed_by_a_less_severe_one():
    sent = sent_at("log", alert("warn"), NOW - timedelta(hours=1))
    assert routed([alert("alert")], sent)[0] == ("log", "alert", True)


def test_a_less_severe_alert_is_suppressed_by_a_more_severe_one():
    sent = sent_at("log", alert("alert"), NOW - timedelta(hours=1))
    assert routed([alert("warn")], sent)[0] == ("log", "warn", False)


def test_within_one_batch_the_most_severe_goes_first_and_repeats_are_suppressed():
    batch = [alert("warn"), alert("alert"), alert("alert", reasons=("again",))]
    assert routed(batch) == [
        ("log", "alert", True),
        ("jsonl", "alert", True),
        ("slack", "alert", True),
        ("log", "alert", False),
        ("jsonl", "alert", False),
        ("slack", "alert", False),
        ("log", "warn", False),
        ("jsonl", "warn", False),
    ]


def test_dedupe_is_per_channel():
    a = alert("alert")
    sent = sent_at("slack", a, NOW - timedelta(hours=1))
    assert routed([a], sent) == [
        ("log", "alert", True),
        ("jsonl", "alert", True),
        ("slack", "alert", False),
    ]


def test_record_sent_adds_only_the_deliveries_passed_and_drops_expired_entries():
    a, b = alert("warn"), alert("warn", condition="quality-failed")
    old = sent_at("log", b, NOW - timedelta(hours=7))
    recent = sent_at("jsonl", b, NOW - timedelta(hours=1))
    state = record_sent({**old, **recent}, [Delivery(a, "log")], now=NOW)
    assert state == {**recent, dedupe_key("log", "churn", "drift-detected", "warn"): NOW}


def test_record_sent_without_deliveries_records_nothing_new():
    assert record_sent({}, [], now=NOW) == {}


def test_channel_names_must_match_the_spec():
    with pytest.raises(ValueError, match="2 channel names for the 3 channels"):
        plan_deliveries([alert()], SPEC, ["log", "jsonl"], {}, now=NOW)
