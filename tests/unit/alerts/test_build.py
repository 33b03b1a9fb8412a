"""components/alerts/build.py and flows/alerting.py: channels from a problem's alert spec,
with secrets read from the environment when built and every problem named at once; and
the Alert model they carry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from components.alerts.alert import Alert
from components.alerts.build import (
    AlertConfigError,
    channel_names,
    channels_from_spec,
    with_settings_channels,
)
from components.alerts.channels.jsonl import JsonlFileChannel
from components.alerts.channels.log import LoggingChannel
from components.alerts.channels.prefect_block import PrefectBlockChannel
from components.alerts.channels.sns import SnsTopicChannel
from components.alerts.channels.webhook import WebhookChannel
from components.core.problem import AlertSpec
from components.core.settings import Settings

URL = "https://hooks.example.com/services/T0/B0/s3cr3t"
ARN = "arn:aws:sns:us-east-1:123456789012:alerts"


def alert_spec(*channels):
    return AlertSpec.model_validate({"channels": list(channels)})


def test_the_churn_spec_builds_its_channels_and_its_commented_examples(spec):
    log, jsonl = channels_from_spec(spec.alerts, environ={})
    assert (type(log), type(jsonl)) == (LoggingChannel, JsonlFileChannel)
    assert jsonl.path == Path(".mlops/alerts.jsonl")
    # The examples the problem file shows in comments, as a user would enable them.
    alerts = AlertSpec.model_validate(
        {
            "channels": [
                *spec.alerts.model_dump()["channels"],
                {"type": "slack", "webhook_url_env": "MLOPS_SLACK_WEBHOOK_URL"},
                {"type": "sns", "topic_arn_env": "MLOPS_SNS_TOPIC_ARN"},
            ]
        }
    )
    clients = []
    env = {"MLOPS_SLACK_WEBHOOK_URL": URL, "MLOPS_SNS_TOPIC_ARN": ARN}
    log, jsonl, slack, sns = channels_from_spec(
        alerts, environ=env, sns_client=lambda: clients.append(1) or "client"
    )
    assert (type(log), type(jsonl), type(slack), type(sns)) == (
        LoggingChannel,
        JsonlFileChannel,
        WebhookChannel,
        SnsTopicChannel,
    )
    assert jsonl.path == Path(".mlops/alerts.jsonl")
    assert (slack.url, sns.topic_arn, sns.client, clients) == (URL, ARN, "client", [1])


def test_repeated_types_get_numbered_names():
    alerts = alert_spec(
        {"type": "log"}, {"type": "jsonl", "path": "a"}, {"type": "jsonl", "path": "b"}
    )
    assert channel_names(alerts) == ["log", "jsonl", "jsonl-2"]


def test_every_missing_variable_or_loader_is_named_with_the_channel_index():
    alerts = alert_spec(
        {"type": "log"},
        {"type": "slack", "webhook_url_env": "HOOK"},
        {"type": "sns", "topic_arn_env": "TOPIC"},
        {"type": "prefect", "block": "slack-webhook/ops"},
    )
    with pytest.raises(AlertConfigError) as caught:
        channels_from_spec(alerts, environ={"TOPIC": " "}, sns_client=lambda: "client")
    assert caught.value.problems == [
        "alerts.channels.1 (slack): environment variable HOOK (webhook_url_env) is not set: "
        "set it to the incoming-webhook URL, or remove the channel from the problem file",
        "alerts.channels.2 (sns): environment variable TOPIC (topic_arn_env) is empty: "
        "set it to the SNS topic ARN, or remove the channel from the problem file",
        "alerts.channels.3 (prefect): needs a block loader: pass load_block (Block.load in a flow)",
    ]


def test_bad_values_are_named_without_the_webhook_secret():
    alerts = alert_spec(
        {"type": "slack", "webhook_url": "hooks.example.com/s3cr3t"},
        {"type": "sns", "topic_arn": "alerts"},
        {"type": "prefect", "block": "ops"},
    )
    with pytest.raises(AlertConfigError) as caught:
        channels_from_spec(alerts, environ={}, sns_client=lambda: "c", load_block=lambda n: n)
    text = str(caught.value)
    assert "s3cr3t" not in text
    assert "alerts.channels.0 (slack): slack: the webhook URL" in text
    assert "alerts.channels.1 (sns): sns: 'alerts' is not an SNS topic ARN" in text
    assert (
        "alerts.channels.2 (prefect): block 'ops' must be '<block-type-slug>/<block-name>'" in text
    )


def test_no_sns_client_is_built_without_an_sns_channel():
    def fail():
        raise AssertionError("built an SNS client for nothing")

    (log,) = channels_from_spec(alert_spec({"type": "log"}), environ={}, sns_client=fail)
    assert isinstance(log, LoggingChannel)


def test_the_flow_wiring_reads_the_environment_and_settings(monkeypatch):
    from flows.alerting import build_channels, prefect_block_loader

    monkeypatch.setenv("TEST_ALERT_TOPIC", ARN)
    settings = Settings(aws_region="eu-west-1", aws_endpoint_url="http://127.0.0.1:9")
    alerts = alert_spec(
        {"type": "sns", "topic_arn_env": "TEST_ALERT_TOPIC"}, {"type": "prefect", "block": "a/b"}
    )
    sns, block = build_channels(alerts, settings)
    assert sns.topic_arn == ARN
    assert sns.client.meta.region_name == "eu-west-1"
    assert sns.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert isinstance(block, PrefectBlockChannel) and callable(prefect_block_loader())
    with pytest.raises(AlertConfigError, match="TEST_ALERT_TOPIC"):
        build_channels(alerts, settings, environ={})


# ---------------------------------------------------------------------------- the alert


def test_an_alert_payload_is_json_ready_and_its_body_says_everything():
    alert = Alert(
        problem="churn",
        severity="warn",
        condition="quality-failed",
        title="nulls",
        reasons=["total_charges: null rate 9%"],
        window_start=datetime(2025, 3, 1, tzinfo=UTC),
        window_end=datetime(2025, 3, 2, tzinfo=UTC),
        created_at=datetime(2025, 3, 2, 1, tzinfo=UTC),
        report="s3://bucket/reports/x.html",
    )
    assert alert.payload() == {
        "problem": "churn",
        "severity": "warn",
        "condition": "quality-failed",
        "title": "nulls",
        "reasons": ["total_charges: null rate 9%"],
        "window_start": "2025-03-01T00:00:00Z",
        "window_end": "2025-03-02T00:00:00Z",
        "created_at": "2025-03-02T01:00:00Z",
        "report": "s3://bucket/reports/x.html",
    }
    assert alert.body().splitlines() == [
        "[WARN] churn: quality-failed: nulls",
        "- total_charges: null rate 9%",
        "window: 2025-03-01T00:00:00+00:00 to 2025-03-02T00:00:00+00:00",
        "report: s3://bucket/reports/x.html",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"condition": "Drift Detected"}, "String should match pattern"),
        ({"created_at": datetime(2025, 3, 1)}, "must be timezone-aware"),
        (
            {
                "window_start": datetime(2025, 3, 2, tzinfo=UTC),
                "window_end": datetime(2025, 3, 1, tzinfo=UTC),
            },
            "is after window_end",
        ),
        ({"severity": "critical"}, "Input should be 'info', 'warn' or 'alert'"),
    ],
)
def test_an_alert_refuses_bad_values(change, message):
    fields = {"problem": "churn", "severity": "warn", "condition": "drift-detected", "title": "t"}
    with pytest.raises(ValidationError, match=message):
        Alert(**{**fields, **change})


def test_the_setting_replaces_the_problem_files_channels(spec):
    assert with_settings_channels(spec.alerts, None) is spec.alerts
    replaced = with_settings_channels(
        spec.alerts, '[{"type": "slack", "webhook_url_env": "HOOK", "min_severity": "alert"}]'
    )
    assert [c.type for c in replaced.channels] == ["slack"]
    assert replaced.min_severity == spec.alerts.min_severity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[{type: log}]", "MLOPS_ALERT_CHANNELS: not JSON"),
        ('{"type": "log"}', "MLOPS_ALERT_CHANNELS: Input should be a valid list"),
        ('[{"type": "slack"}]', "MLOPS_ALERT_CHANNELS[0]: Value error, give exactly one"),
        ('[{"type": "pager"}]', "MLOPS_ALERT_CHANNELS[0]: Input tag 'pager'"),
    ],
)
def test_a_bad_setting_names_itself_and_what_is_wrong(spec, value, expected):
    with pytest.raises(AlertConfigError) as caught:
        with_settings_channels(spec.alerts, value)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems
