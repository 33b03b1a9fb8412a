"""The channels of a problem's alert spec, built with the clients the caller passes in.

Secrets named by ``*_env`` keys are read from ``environ`` now, at build time, so a missing
variable fails before any alert is due, not at 3 a.m. Every problem in the spec is
collected into one :class:`AlertConfigError`, each line naming the channel's index.
``flows.alerting.build_channels`` calls this with the real SNS client and Prefect loader.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from components.alerts.channels.base import Channel
from components.alerts.channels.jsonl import JsonlFileChannel
from components.alerts.channels.log import LoggingChannel
from components.alerts.channels.prefect_block import PrefectBlockChannel
from components.alerts.channels.sns import SnsTopicChannel
from components.alerts.channels.webhook import WebhookChannel
from components.core import problem
from components.core.problem import AlertSpec


class AlertConfigError(ValueError):
    """Channels that cannot be built, one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot build the alert channels:\n{lines}")


def channel_names(spec: AlertSpec) -> list[str]:
    """A unique name per channel: its type, then ``<type>-2``, ``<type>-3`` for repeats, so
    adding a second channel of a type leaves the first one's dedupe state as it was."""
    seen: Counter[str] = Counter()
    names = []
    for config in spec.channels:
        seen[config.type] += 1
        names.append(
            config.type if seen[config.type] == 1 else f"{config.type}-{seen[config.type]}"
        )
    return names


def channels_from_spec(
    spec: AlertSpec,
    *,
    environ: Mapping[str, str],
    sns_client: Callable[[], Any] | None = None,
    load_block: Callable[[str], Any] | None = None,
    http_client: httpx.Client | None = None,
) -> list[Channel]:
    """One channel per entry of ``spec.channels``, in order. ``sns_client`` builds the boto3
    SNS client (called once, only if an SNS channel exists); ``load_block`` loads a Prefect
    block by name; ``http_client`` is shared by the webhook channels when given."""
    clients: dict[str, Any] = {}

    def sns() -> Any:
        if sns_client is None:
            raise ValueError("needs an SNS client: pass sns_client (a boto3 client factory)")
        if "sns" not in clients:
            clients["sns"] = sns_client()
        return clients["sns"]

    channels, problems = [], []
    for index, (config, name) in enumerate(zip(spec.channels, channel_names(spec), strict=True)):
        try:
            channels.append(_channel(config, name, environ, sns, load_block, http_client))
        except ValueError as exc:
            problems.append(f"alerts.channels.{index} ({name}): {exc}")
    if problems:
        raise AlertConfigError(problems)
    return channels


def _channel(
    config: Any,
    name: str,
    environ: Mapping[str, str],
    sns: Callable[[], Any],
    load_block: Callable[[str], Any] | None,
    http_client: httpx.Client | None,
) -> Channel:
    match config:
        case problem.LogChannel():
            return LoggingChannel(name=name)
        case problem.JsonlChannel(path=path):
            return JsonlFileChannel(Path(path), name=name)
        case problem.SlackChannel(webhook_url=url, webhook_url_env=env):
            url = url or _from_env(environ, env, "webhook_url_env", "the incoming-webhook URL")
            return WebhookChannel(url, name=name, client=http_client)
        case problem.SnsChannel(topic_arn=arn, topic_arn_env=env):
            arn = arn or _from_env(environ, env, "topic_arn_env", "the SNS topic ARN")
            return SnsTopicChannel(arn, sns(), name=name)
        case problem.PrefectBlockChannel(block=block):
            if load_block is None:
                raise ValueError("needs a block loader: pass load_block (Block.load in a flow)")
            if "/" not in block.strip("/"):
                raise ValueError(
                    f"block {block!r} must be '<block-type-slug>/<block-name>', "
                    "e.g. 'slack-webhook/ops' (see `prefect block ls`)"
                )
            return PrefectBlockChannel(block, load_block, name=name)
    raise ValueError(f"unknown channel type {type(config).__name__}")


def _from_env(environ: Mapping[str, str], variable: str | None, key: str, what: str) -> str:
    value = environ.get(variable or "", "").strip()
    if not value:
        state = "is empty" if variable in environ else "is not set"
        raise ValueError(
            f"environment variable {variable} ({key}) {state}: set it to {what}, "
            "or remove the channel from the problem file"
        )
    return value


def with_settings_channels(spec: AlertSpec, channels_json: str | None) -> AlertSpec:
    """``spec`` with its channels replaced by ``channels_json`` (the ``MLOPS_ALERT_CHANNELS``
    setting: a JSON list of channels as in the problem file), when that is set."""
    if not channels_json:
        return spec
    try:
        channels = json.loads(channels_json)
        return AlertSpec.model_validate({"min_severity": spec.min_severity, "channels": channels})
    except json.JSONDecodeError as exc:
        raise AlertConfigError(
            [f"MLOPS_ALERT_CHANNELS: not JSON ({exc.msg} at {exc.pos})"]
        ) from None
    except ValidationError as exc:
        raise AlertConfigError(
            [
                f"MLOPS_ALERT_CHANNELS[{e['loc'][1]}]: {e['msg']}"
                if len(e["loc"]) > 1
                else f"MLOPS_ALERT_CHANNELS: {e['msg']}"
                for e in exc.errors()
            ]
        ) from None
