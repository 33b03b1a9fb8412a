"""The real wiring of the alert channels: Prefect's block loader, the SNS client from the
settings and the secrets from the environment. The channels, routing and dispatch are in
``components.alerts``; flows call :func:`build_channels`, then
``components.alerts.dispatch.dispatch_alerts`` from a synchronous task.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from prefect.blocks.core import Block

from components.alerts.build import channels_from_spec
from components.alerts.channels.base import Channel
from components.alerts.channels.sns import make_sns_client
from components.core.problem import AlertSpec
from components.core.settings import Settings


def prefect_block_loader() -> Callable[[str], Any]:
    """``Block.load`` for ``<block-type-slug>/<block-name>``, always the synchronous
    version: the channel calls it from synchronous code, and inside an async flow
    Prefect would otherwise hand back a coroutine."""

    def load(name: str) -> Any:
        return Block.load(name, _sync=True)

    return load


def build_channels(
    spec_alerts: AlertSpec,
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    load_block: Callable[[str], Any] | None = None,
) -> list[Channel]:
    """The channels of ``spec_alerts``: SNS through ``settings.aws_region`` and
    ``settings.aws_endpoint_url``, Prefect blocks through :func:`prefect_block_loader`
    unless ``load_block`` is given, ``*_env`` secrets from ``environ`` (default
    ``os.environ``). Raises ``AlertConfigError`` naming each channel's index and problem."""
    return channels_from_spec(
        spec_alerts,
        environ=os.environ if environ is None else environ,
        sns_client=lambda: make_sns_client(
            region=settings.aws_region, endpoint_url=settings.aws_endpoint_url
        ),
        load_block=load_block or prefect_block_loader(),
    )
