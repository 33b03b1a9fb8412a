"""The AWS SNS channel: each alert published to a topic, its payload as the JSON Message.

Subscribers (an SQS queue, a Lambda, e-mail) receive ``Message`` as the alert's JSON, so a
machine can act on it; ``Subject`` (e-mail's subject line) is the one-line summary. The
client is passed in (:func:`make_sns_client` builds one with explicit timeouts).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from components.alerts.alert import Alert
from components.alerts.channels.base import ChannelError, redact_urls

TOPIC_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
# SNS wants a subject under 100 characters, ASCII-printable, with no line breaks.
SUBJECT_MAX = 99
# Codes for requests SNS refused as wrong: sending them again cannot succeed.
_FINAL_CODES = frozenset(
    {"InvalidParameter", "InvalidParameterValue", "NotFound", "AuthorizationError"}
)


def make_sns_client(
    region: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
) -> Any:
    """A boto3 SNS client with explicit timeouts and a single try per call: the dispatch
    retries a failed channel itself, with its own backoff."""
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    return boto3.client("sns", region_name=region, endpoint_url=endpoint_url, config=config)


@dataclass(frozen=True)
class SnsTopicChannel:
    """Publishes to ``topic_arn`` with ``client`` (a boto3 SNS client)."""

    topic_arn: str
    client: Any = field(repr=False, compare=False)
    name: str = "sns"

    def __post_init__(self) -> None:
        if not TOPIC_ARN.match(self.topic_arn):
            raise ValueError(
                f"{self.name}: {self.topic_arn!r} is not an SNS topic ARN "
                "(arn:aws:sns:<region>:<account>:<topic>)"
            )

    def send(self, alert: Alert) -> None:
        try:
            self.client.publish(
                TopicArn=self.topic_arn,
                Subject=subject(alert),
                Message=json.dumps(alert.payload(), ensure_ascii=False, sort_keys=True),
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            raise ChannelError(
                f"{self.name}: publish to {self.topic_arn} failed: {code}: "
                f"{redact_urls(str(error.get('Message', '')) or str(exc))}",
                retryable=code not in _FINAL_CODES,
            ) from None
        except BotoCoreError as exc:
            raise ChannelError(
                f"{self.name}: publish to {self.topic_arn} failed: "
                f"{type(exc).__name__}: {redact_urls(str(exc))}"
            ) from None


def subject(alert: Alert) -> str:
    """``alert.subject()`` made acceptable to SNS: printable ASCII, under 100 characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in alert.subject())
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3] + "..."
