"""Progress of long flows, for whoever is watching (the CLI's progress bar).

A flow reports through `report_progress`; by default nothing listens. The CLI installs a
listener with `listening(callback)` around the flow call. A context variable keeps this out
of the flow's parameters, which must stay JSON for deployments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Listener = Callable[[str, int, int, float | None], None]
_listener: ContextVar[Listener | None] = ContextVar("mlops_progress", default=None)


def report_progress(stage: str, done: int, total: int, best: float | None = None) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(stage, done, total, best)


@contextmanager
def listening(callback: Listener) -> Iterator[None]:
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)
