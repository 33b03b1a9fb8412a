"""Each channel of components/alerts/channels on its own, with the smallest real or fake
collaborator: caplog, a temp file, an httpx MockTransport, a fake SNS client and a fake
Prefect block (the real one needs a Prefect server)."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from botocore.exceptions import ClientError

from components.alerts.alert import Alert
from components.alerts.channels.base import ChannelError, mask_url, redact_urls
from components.alerts.channels.jsonl import JsonlFileChannel
from components.alerts.channels.log import LoggingChannel
from components.alerts.channels.prefect_block import PrefectBlockChannel
from components.alerts.channels.sns import SnsTopicChannel, subject
from components.alerts.channels.webhook import WebhookChannel, message

URL = "https://hooks.example.com/services/T000/B000/s3cr3tT0ken"
ARN = "arn:aws:sns:us-east-1:123456789012:mlops-alerts"
ALERT = Alert(
    problem="churn",
    severity="alert",
    condition="drift-detected",
    title="feature drift",
    reasons=("monthly_charges: PSI 0.81 > 0.25", "plan: PSI 0.30 > 0.25"),
    window_start=datetime(2025, 3, 1, tzinfo=UTC),
    window_end=datetime(2025, 3, 2, tzinfo=UTC),
    created_at=datetime(2025, 3, 2, 0, 5, tzinfo=UTC),
    report="reports/churn/2025-03-01.html",
)


# ---------------------------------------------------------------------------- base


def test_mask_url_keeps_only_scheme_host_and_port():
    assert mask_url(URL) == "https://hooks.example.com/…"
    assert mask_url("http://user:pw@127.0.0.1:8080/x?token=1") == "http://127.0.0.1:8080/…"
    assert mask_url("https://hooks.example.com") == "https://hooks.example.com"
    assert mask_url("not a url") == "<URL without scheme or host>"


def test_redact_urls_masks_every_url_and_the_given_secrets():
    text = f"failed for url '{URL}' then /services/T000/B000/s3cr3tT0ken"
    out = redact_urls(text, URL, "/services/T000/B000/s3cr3tT0ken")
    assert out == "failed for url 'https://hooks.example.com/…' then <redacted>"


# ---------------------------------------------------------------------------- log


def test_log_channel_logs_the_body_at_the_severity_level(caplog):
    with caplog.at_level(logging.INFO, logger="mlops.alerts"):
        LoggingChannel().send(ALERT)
        LoggingChannel().send(ALERT.model_copy(update={"severity": "info"}))
    first, second = caplog.records
    assert (first.levelno, second.levelno) == (logging.ERROR, logging.INFO)
    assert first.getMessage().splitlines()[:3] == [
        "[ALERT] churn: drift-detected: feature drift",
        "- monthly_charges: PSI 0.81 > 0.25",
        "- plan: PSI 0.30 > 0.25",
    ]
    assert first.alert == ALERT.payload()


def test_log_channel_below_the_logger_level_emits_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="mlops.alerts"):
        LoggingChannel().send(ALERT.model_copy(update={"severity": "info"}))
    assert caplog.records == []


# ---------------------------------------------------------------------------- jsonl


def test_jsonl_channel_appends_one_object_per_line_and_creates_the_folder(tmp_path):
    path = tmp_path / "deep" / "alerts.jsonl"
    channel = JsonlFileChannel(path)
    channel.send(ALERT)
    channel.send(ALERT.model_copy(update={"severity": "warn"}))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["severity"] for line in lines] == ["alert", "warn"]
    assert json.loads(lines[0]) == ALERT.payload()
    assert json.loads(lines[0])["window_start"] == "2025-03-01T00:00:00Z"


def test_jsonl_channel_closes_a_line_a_crash_left_open(tmp_path):
    path = tmp_path / "alerts.jsonl"
    path.write_text('{"cut": ')
    JsonlFileChannel(path).send(ALERT)
    assert json.loads(path.read_text().splitlines()[1]) == ALERT.payload()


def test_jsonl_channel_names_the_path_it_cannot_write(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(ChannelError, match=r"jsonl: cannot append to .*taken/alerts.jsonl"):
        JsonlFileChannel(tmp_path / "taken" / "alerts.jsonl").send(ALERT)


# ---------------------------------------------------------------------------- webhook


def webhook(handler) -> WebhookChannel:
    return WebhookChannel(URL, client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_webhook_posts_text_and_blocks():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, text="ok")

    webhook(handler).send(ALERT)
    (body,) = seen
    assert body == message(ALERT)
    assert body["text"].startswith("[ALERT] churn: drift-detected: feature drift\n- monthly")
    assert body["blocks"][0]["text"]["text"] == "[ALERT] churn: drift-detected: feature drift"
    assert "• plan: PSI 0.30 &gt; 0.25" in body["blocks"][1]["text"]["text"]


def test_httpx_request_log_lines_hide_the_url(caplog):
    with caplog.at_level(logging.DEBUG):
        webhook(lambda request: httpx.Response(200)).send(ALERT)
    assert 'HTTP Request: POST https://hooks.example.com/… "HTTP/1.1 200 OK"' in caplog.text
    assert "s3cr3t" not in caplog.text


def test_webhook_errors_never_show_the_url_path():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    with pytest.raises(ChannelError) as caught:
        webhook(refuse).send(ALERT)
    assert str(caught.value) == (
        "slack: POST to https://hooks.example.com/… failed: "
        "ConnectError: cannot connect to https://hooks.example.com/…"
    )
    assert caught.value.__suppress_context__  # no traceback of the httpx error, which has it


def test_webhook_status_errors_are_masked_and_say_whether_to_retry():
    def answer(status):
        return webhook(lambda request: httpx.Response(status, text=f"bad hook {request.url.path}"))

    with pytest.raises(ChannelError) as server:
        answer(503).send(ALERT)
    assert "s3cr3t" not in str(server.value) and "T000" not in str(server.value)
    assert "answered HTTP 503" in str(server.value) and server.value.retryable
    with pytest.raises(ChannelError) as gone:
        answer(404).send(ALERT)
    assert not gone.value.retryable


def test_webhook_repr_and_config_errors_hide_the_url():
    assert "s3cr3t" not in repr(WebhookChannel(URL))
    with pytest.raises(ValueError, match=r"\(ftp://hooks.example.com/…\) must start with https://"):
        WebhookChannel("ftp://hooks.example.com/s3cr3t")


# ---------------------------------------------------------------------------- sns


class FakeSns:
    def __init__(self, error: ClientError | None = None) -> None:
        self.published, self.error = [], error

    def publish(self, **kwargs):
        if self.error:
            raise self.error
        self.published.append(kwargs)
        return {"MessageId": "1"}


def test_sns_publishes_a_short_ascii_subject_and_the_payload_as_json():
    client = FakeSns()
    long = ALERT.model_copy(update={"title": "drift — " + "x" * 200})
    SnsTopicChannel(ARN, client).send(long)
    (call,) = client.published
    assert call["TopicArn"] == ARN
    assert json.loads(call["Message"]) == long.payload()
    assert len(call["Subject"]) == 99 and call["Subject"].endswith("...")
    assert call["Subject"].startswith("[ALERT] churn: drift-detected: drift ? xxx")


def test_sns_subject_is_kept_whole_when_short():
    assert subject(ALERT) == "[ALERT] churn: drift-detected: feature drift"


def test_sns_errors_name_the_topic_and_aws_code():
    refused = ClientError(
        {"Error": {"Code": "NotFound", "Message": "Topic does not exist"}}, "Publish"
    )
    with pytest.raises(
        ChannelError, match=f"sns: publish to {ARN} failed: NotFound: Topic"
    ) as caught:
        SnsTopicChannel(ARN, FakeSns(refused)).send(ALERT)
    assert not caught.value.retryable
    with pytest.raises(ValueError, match="is not an SNS topic ARN"):
        SnsTopicChannel("mlops-alerts", FakeSns())


# ---------------------------------------------------------------------------- prefect block


class FakeBlock:
    """What the channel needs of a Prefect notification block: notify and raise_on_failure."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.raising, self.notified = error, False, []

    @contextmanager
    def raise_on_failure(self):
        self.raising = True
        try:
            yield
        finally:
            self.raising = False

    def notify(self, body, subject=None):
        if self.error:
            raise self.error
        self.notified.append((body, subject, self.raising))


def test_prefect_block_channel_notifies_inside_raise_on_failure():
    block, loads = FakeBlock(), []
    channel = PrefectBlockChannel("slack-webhook/ops", lambda name: loads.append(name) or block)
    channel.send(ALERT)
    channel.send(ALERT)
    assert loads == ["slack-webhook/ops"]
    assert block.notified[0] == (ALERT.body(), ALERT.subject(), True)
    assert not block.raising


def test_prefect_block_failures_are_channel_errors_with_urls_masked():
    block = FakeBlock(RuntimeError(f"apprise: POST {URL} failed"))
    with pytest.raises(ChannelError) as caught:
        PrefectBlockChannel("slack-webhook/ops", lambda name: block).send(ALERT)
    assert str(caught.value) == (
        "prefect: block 'slack-webhook/ops' failed to notify: "
        "RuntimeError: apprise: POST https://hooks.example.com/… failed"
    )


def test_a_block_that_cannot_be_loaded_is_loaded_again_on_the_next_send():
    attempts = []

    def load(name):
        attempts.append(name)
        if len(attempts) == 1:
            raise ValueError(f"Unable to find block document named {name}")
        return FakeBlock()

    channel = PrefectBlockChannel("slack-webhook/ops", load)
    with pytest.raises(ChannelError, match="cannot load block 'slack-webhook/ops': ValueError"):
        channel.send(ALERT)
    channel.send(ALERT)
    assert len(attempts) == 2


def test_a_block_without_notify_or_an_async_notify_is_refused_for_good():
    with pytest.raises(ChannelError, match="is a object, which cannot notify") as plain:
        PrefectBlockChannel("secret/x", lambda name: object()).send(ALERT)
    assert not plain.value.retryable

    class AsyncBlock(FakeBlock):
        def notify(self, body, subject=None):
            async def later():
                self.notified.append(body)

            return later()

    block = AsyncBlock()
    with pytest.raises(ChannelError, match="returned a coroutine, so nothing was sent") as caught:
        PrefectBlockChannel("slack-webhook/ops", lambda name: block).send(ALERT)
    assert not caught.value.retryable and block.notified == []
