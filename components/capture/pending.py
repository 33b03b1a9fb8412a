"""An object a worker's flusher writes to the store, kept under its key across retries.

Both the chunks and the rejection counts are written create-only under a name unique to
their writer. A write that fails is retried under the same key with the same bytes, so that
a write that did succeed but reported a failure (a timeout after the store stored it) is
recognised rather than stored twice: finding the same bytes under the key means it is done.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from components.core.store import KeyNotFoundError, ObjectExistsError, Store


@dataclass
class Pending:
    key: str
    hour: datetime
    data: bytes
    rows: int


def writer_name(worker_id: str, seq: int) -> str:
    """A name no other writer uses: the worker's id, its sequence number, a random tag."""
    return f"{worker_id}-{seq:06d}-{uuid.uuid4().hex[:8]}"


def put_once(store: Store, item: Pending, new_key: Callable[[datetime], str]) -> None:
    """Write ``item`` create-only; if its key is taken by other bytes (another writer's),
    under a new key from ``new_key``. Store errors propagate: the caller keeps the item."""
    while True:
        try:
            store.put_bytes(item.key, item.data, create_only=True)
            return
        except ObjectExistsError:
            if _holds(store, item):
                return  # an earlier attempt did write it, though it reported a failure
            item.key = new_key(item.hour)


def _holds(store: Store, item: Pending) -> bool:
    try:
        return store.get_bytes(item.key) == item.data
    except KeyNotFoundError:
        return False
