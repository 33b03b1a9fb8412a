"""The webhook channel against a real HTTP receiver on 127.0.0.1, and the SNS channel
through moto's server to an SQS queue subscribed to the topic."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from components.alerts.alert import Alert
from components.alerts.build import channels_from_spec
from components.alerts.dispatch import dispatch_alerts
from components.core.problem import AlertSpec
from components.core.settings import Settings

TOKEN_PATH = "/services/T0ABC/B0DEF/s3cr3tT0ken"
ALERT = Alert(
    problem="churn",
    severity="alert",
    condition="drift-detected",
    title="feature drift",
    reasons=("monthly_charges: PSI 0.81 > 0.25",),
    window_start=datetime(2025, 3, 1, tzinfo=UTC),
    window_end=datetime(2025, 3, 2, tzinfo=UTC),
    created_at=datetime(2025, 3, 2, 0, 5, tzinfo=UTC),
)


@dataclass
class Receiver:
    """An incoming-webhook stand-in: records each POST and answers ``status``."""

    status: int
    posts: list[tuple[str, dict]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[callable]:
    servers = []

    def start(status: int = 200) -> Receiver:
        got = Receiver(status)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.posts.append((self.path, json.loads(body)))
                answer = b"ok" if got.status == 200 else f"no such hook {self.path}".encode()
                self.send_response(got.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        got.url = f"http://127.0.0.1:{server.server_address[1]}{TOKEN_PATH}"
        return got

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def slack_spec() -> AlertSpec:
    return AlertSpec.model_validate(
        {"channels": [{"type": "log"}, {"type": "slack", "webhook_url_env": "HOOK"}]}
    )


def test_the_webhook_posts_the_alert_to_a_real_receiver(receiver, tmp_path):
    hook = receiver(200)
    channels = channels_from_spec(slack_spec(), environ={"HOOK": hook.url})
    results = dispatch_alerts([ALERT], channels, slack_spec(), state_path=tmp_path / "s.json")
    assert [(r.channel, r.status, r.attempts) for r in results] == [
        ("log", "sent", 1),
        ("slack", "sent", 1),
    ]
    ((path, body),) = hook.posts
    assert path == TOKEN_PATH
    assert body["text"] == ALERT.body()
    assert body["blocks"][0]["text"]["text"] == ALERT.subject()


def test_a_failing_receiver_is_retried_reported_and_its_token_kept_out(receiver, tmp_path, caplog):
    hook = receiver(500)
    channels = channels_from_spec(slack_spec(), environ={"HOOK": hook.url})
    sleeps: list[float] = []
    with caplog.at_level(logging.DEBUG):  # httpx logs every request URL at INFO
        results = dispatch_alerts(
            [ALERT], channels, slack_spec(), state_path=tmp_path / "s.json", sleep=sleeps.append
        )
    slack = results[1]
    assert (slack.status, slack.attempts, len(hook.posts), sleeps) == ("failed", 3, 3, [1.0, 2.0])
    host = hook.url.removesuffix(TOKEN_PATH)
    assert slack.detail == f"slack: {host}/… answered HTTP 500: no such hook <redacted>"
    for text in (slack.detail, caplog.text, repr(channels), str(slack.as_dict())):
        assert "s3cr3t" not in text and "T0ABC" not in text
    assert "channel slack could not deliver drift-detected" in caplog.text
    assert f"HTTP Request: POST {host}/… " in caplog.text  # httpx's own line, masked
    # Not recorded as sent: the next dispatch tries the webhook again, the log is deduped.
    hook.status = 200
    again = dispatch_alerts([ALERT], channels, slack_spec(), state_path=tmp_path / "s.json")
    assert [(r.channel, r.status) for r in again] == [("log", "suppressed"), ("slack", "sent")]


def test_an_unreachable_webhook_fails_without_showing_its_token(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channels = channels_from_spec(
        slack_spec(), environ={"HOOK": f"http://127.0.0.1:{port}{TOKEN_PATH}"}
    )
    result = dispatch_alerts(
        [ALERT], channels, slack_spec(), state_path=tmp_path / "s.json", sleep=lambda s: None
    )[1]
    assert (result.status, result.attempts) == ("failed", 3)
    assert result.detail.startswith(
        f"slack: POST to http://127.0.0.1:{port}/… failed: ConnectError"
    )
    assert "s3cr3t" not in result.detail


def test_sns_delivers_the_alert_to_a_subscribed_sqs_queue(moto_server, tmp_path):
    from flows.alerting import build_channels

    sns = boto3.client("sns", endpoint_url=moto_server, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    topic = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])

    spec = AlertSpec.model_validate({"channels": [{"type": "sns", "topic_arn_env": "TOPIC"}]})
    settings = Settings(aws_region="us-east-1", aws_endpoint_url=moto_server)
    channels = build_channels(spec, settings, environ={"TOPIC": topic})
    results = dispatch_alerts([ALERT], channels, spec, state_path=tmp_path / "s.json")
    assert [(r.channel, r.status) for r in results] == [("sns", "sent")]

    received = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    envelope = json.loads(received[0]["Body"])
    assert envelope["TopicArn"] == topic
    assert envelope["Subject"] == "[ALERT] churn: drift-detected: feature drift"
    assert json.loads(envelope["Message"]) == ALERT.payload()


def test_sns_reports_a_missing_topic_as_a_failed_channel(moto_server, tmp_path):
    from flows.alerting import build_channels

    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    spec = AlertSpec.model_validate({"channels": [{"type": "sns", "topic_arn": missing}]})
    settings = Settings(aws_region="us-east-1", aws_endpoint_url=moto_server)
    channels = build_channels(spec, settings, environ={})
    (result,) = dispatch_alerts([ALERT], channels, spec, state_path=tmp_path / "s.json")
    assert (result.status, result.attempts) == ("failed", 1)
    assert result.detail.startswith(f"sns: publish to {missing} failed: NotFound")
