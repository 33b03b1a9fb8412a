"""components/alerts/dispatch.py with small fake channels: retries, failure reports and
the dedupe state file, where only successful deliveries count."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from components.alerts.alert import Alert
from components.alerts.channels.base import ChannelError
from components.alerts.channels.log import LoggingChannel
from components.alerts.dispatch import dispatch_alerts
from components.alerts.state import load_state, save_state
from components.core.problem import AlertSpec

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SPEC = AlertSpec.model_validate(
    {"min_severity": "warn", "channels": [{"type": "log"}, {"type": "jsonl", "path": "x.jsonl"}]}
)
TOKEN = "https://hooks.example/services/T0/B0/s3cr3t"


@dataclass
class FakeChannel:
    """Fails its first ``failures`` sends, then records what it is sent."""

    name: str
    failures: int = 0
    retryable: bool = True
    error: type[Exception] = ChannelError
    calls: int = 0
    sent: list[Alert] = field(default_factory=list)

    def send(self, alert: Alert) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            if self.error is ChannelError:
                raise ChannelError(f"{self.name}: down", retryable=self.retryable)
            raise self.error(f"POST {TOKEN} refused")
        self.sent.append(alert)


def drift(severity="warn"):
    return Alert(problem="churn", severity=severity, condition="drift-detected", title="drift")


@pytest.fixture
def run(tmp_path):
    sleeps: list[float] = []

    def run(alerts, channels, now=NOW, **kwargs):
        return dispatch_alerts(
            alerts,
            channels,
            SPEC,
            state_path=tmp_path / "state" / "sent.json",
            sleep=sleeps.append,
            clock=lambda: now,
            **kwargs,
        )

    run.sleeps = sleeps
    run.state = tmp_path / "state" / "sent.json"
    return run


def test_every_channel_gets_the_alert_and_the_state_records_each(run):
    log, jsonl = FakeChannel("log"), FakeChannel("jsonl")
    results = run([drift()], [log, jsonl])
    assert [(r.channel, r.status, r.attempts) for r in results] == [
        ("log", "sent", 1),
        ("jsonl", "sent", 1),
    ]
    assert load_state(run.state) == {
        "log|churn|drift-detected|warn": NOW,
        "jsonl|churn|drift-detected|warn": NOW,
    }


def test_a_second_dispatch_within_the_cooldown_is_suppressed(run):
    log, jsonl = FakeChannel("log"), FakeChannel("jsonl")
    run([drift()], [log, jsonl])
    results = run([drift()], [log, jsonl], now=NOW + timedelta(hours=1))
    assert {r.status for r in results} == {"suppressed"}
    assert len(log.sent) == len(jsonl.sent) == 1
    later = run([drift()], [log, jsonl], now=NOW + timedelta(hours=7))
    assert {r.status for r in later} == {"sent"}


def test_a_failing_channel_is_retried_with_backoff_and_does_not_stop_the_others(run):
    log, jsonl = FakeChannel("log"), FakeChannel("jsonl", failures=2)
    results = run([drift()], [log, jsonl], attempts=3, backoff_s=0.5)
    assert [(r.channel, r.status, r.attempts) for r in results] == [
        ("log", "sent", 1),
        ("jsonl", "sent", 3),
    ]
    assert run.sleeps == [0.5, 1.0]


def test_a_channel_that_keeps_failing_is_not_recorded_and_is_sent_again_next_time(run):
    log, jsonl = FakeChannel("log"), FakeChannel("jsonl", failures=3)
    failed = run([drift()], [log, jsonl], attempts=3)[1]
    assert (failed.status, failed.attempts, failed.detail) == ("failed", 3, "jsonl: down")
    assert "jsonl|churn|drift-detected|warn" not in load_state(run.state)
    again = run([drift()], [log, jsonl], now=NOW + timedelta(minutes=5))
    assert [(r.channel, r.status) for r in again] == [("log", "suppressed"), ("jsonl", "sent")]


def test_a_refusal_that_cannot_succeed_is_not_retried(run):
    jsonl = FakeChannel("jsonl", failures=5, retryable=False)
    result = run([drift()], [FakeChannel("log"), jsonl], attempts=3)[1]
    assert (result.status, result.attempts, jsonl.calls) == ("failed", 1, 1)
    assert run.sleeps == []


def test_a_failed_channel_is_reported_on_the_log_channel(run, caplog):
    jsonl = FakeChannel("jsonl", failures=9)
    with caplog.at_level(logging.INFO):
        run([drift()], [LoggingChannel(), jsonl], attempts=2)
    reports = [
        r
        for r in caplog.records
        if getattr(r, "alert", {}).get("condition") == "alert-channel-failed"
    ]
    assert len(reports) == 1
    assert reports[0].levelno == logging.ERROR
    assert reports[0].alert["reasons"] == ["jsonl: down"]
    assert reports[0].alert["created_at"] == "2025-03-01T12:00:00Z"
    assert "channel jsonl could not deliver drift-detected" in reports[0].getMessage()


def test_without_a_log_channel_the_failure_is_logged_as_an_error(tmp_path, caplog):
    spec = AlertSpec.model_validate({"channels": [{"type": "jsonl", "path": "x"}]})
    with caplog.at_level(logging.WARNING, logger="components.alerts.dispatch"):
        dispatch_alerts(
            [drift()],
            [FakeChannel("jsonl", failures=9)],
            spec,
            state_path=tmp_path / "s.json",
            attempts=2,
            sleep=lambda s: None,
        )
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.WARNING, logging.ERROR]
    assert "not delivered to channel jsonl after 2 attempts" in caplog.records[-1].getMessage()


def test_an_unexpected_error_is_reported_with_its_urls_masked(run, caplog):
    jsonl = FakeChannel("jsonl", failures=9, error=OSError)
    with caplog.at_level(logging.INFO):
        result = run([drift()], [LoggingChannel(), jsonl], attempts=2)[1]
    assert result.detail == "jsonl: OSError: POST https://hooks.example/… refused"
    assert "s3cr3t" not in caplog.text


def test_the_state_file_is_replaced_whole_and_a_corrupt_one_is_named(tmp_path):
    path = tmp_path / "sent.json"
    save_state(path, {"log|churn|drift-detected|warn": NOW})
    assert json.loads(path.read_text())["sent"] == {
        "log|churn|drift-detected|warn": NOW.isoformat()
    }
    assert [p.name for p in tmp_path.iterdir()] == ["sent.json"]
    path.write_text('{"version": 1, "sent": {"k": "yesterday"}}')
    with pytest.raises(ValueError, match=r"sent.json is not a state file this code wrote"):
        load_state(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"sent.json cannot be read"):
        load_state(path)


def test_channels_must_have_unique_names_and_attempts_must_be_positive(run):
    with pytest.raises(ValueError, match="unique"):
        run([drift()], [FakeChannel("log"), FakeChannel("log")])
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        run([drift()], [FakeChannel("log"), FakeChannel("jsonl")], attempts=0)
