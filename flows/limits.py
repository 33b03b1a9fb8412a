"""Prefect global concurrency limits that keep one step of one model to one run at a time.

`exclusive(name)` holds the single slot of the limit ``name`` for its block, strictly: with
``strict=True`` Prefect raises instead of skipping silently when the limit is missing, so
the limit is created first when the server has none (`mlops prefect setup` creates the
promotion limits of the problems it finds; a new problem, the ephemeral API and the test
server get theirs on first use). A limit someone made wider or inactive is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound


def promotion_limit(problem: str) -> str:
    """The name of the limit that serialises the promotions of ``problem``'s models."""
    return f"promotion-{problem}"


def ensure_limit(name: str, slots: int = 1) -> bool:
    """Create the global concurrency limit ``name`` with ``slots`` unless it exists; True if
    this call created it (two runs racing to create it both go on)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=slots)
            )
        except ObjectAlreadyExists:
            return False
    return True


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the one slot of the limit ``name`` (created if missing) while the block runs."""
    ensure_limit(name)
    with concurrency(name, occupy=1, strict=True):
        yield
