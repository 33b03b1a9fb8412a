"""The local target: one managed serving process per problem, started, checked and stopped.

The serving function is injected (the flow passes ``bentos.packaging.serve``), so this module
starts no server of its own and imports no web framework. What was started is recorded in a
small JSON state file: in the store's folder for a local store
(``<store root>/serve/<problem>.json``), or at a path the caller gives.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from components.core.store import LocalStore, Store


class _Process(Protocol):
    pid: int


class Served(Protocol):
    """What the injected serve function returns: the process it started (in a process group
    of its own), the URL it answers on, and its log file."""

    process: _Process
    url: str
    log: Any


ServeFn = Callable[..., Served]  # serve(bento, *, env, port, workers) -> Served


class LocalServer(BaseModel):
    pid: int
    url: str
    bento: str
    log: str


def state_file(problem: str, *, store: Store | None = None, path: Path | None = None) -> Path:
    """Where the state of ``problem``'s local server lives: ``path`` if given, else
    ``<store root>/serve/<problem>.json`` for a local store. A remote store has no folder
    on this machine, so it needs an explicit ``path``."""
    if path is not None:
        return Path(path)
    if isinstance(store, LocalStore):
        return store.root / "serve" / f"{problem}.json"
    raise ValueError(
        f"the local server's state needs a local store or an explicit state file "
        f"(the store is {store!r})"
    )


def local_start(
    bento: str,
    state: Path,
    *,
    serve: ServeFn,
    port: int | None = None,
    workers: int = 2,
    env: dict[str, str] | None = None,
) -> LocalServer:
    """Serve ``bento`` with ``serve`` and record the process in ``state``. Refuses while the
    server recorded there still runs."""
    current = local_status(state)
    if current is not None:
        raise RuntimeError(
            f"{current.bento} is already served at {current.url} (pid {current.pid}); stop it first"
        )
    running = serve(bento, env=env, port=port, workers=workers)
    server = LocalServer(
        pid=running.process.pid, url=running.url, bento=bento, log=str(running.log)
    )
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(server.model_dump_json())
    return server


def local_status(state: Path) -> LocalServer | None:
    """The server recorded in ``state`` if its process is alive; a dead one's record is
    removed."""
    if not state.exists():
        return None
    server = LocalServer.model_validate_json(state.read_text())
    try:
        os.kill(server.pid, 0)
    except ProcessLookupError:
        state.unlink(missing_ok=True)
        return None
    return server


def local_stop(state: Path) -> LocalServer | None:
    """SIGTERM to the recorded server's whole process group (the serving workers too), and
    its record removed; None when nothing was running."""
    server = local_status(state)
    if server is None:
        return None
    with contextlib.suppress(ProcessLookupError):  # it ended since the status check
        os.killpg(server.pid, signal.SIGTERM)
    state.unlink(missing_ok=True)
    return server


__all__ = ["LocalServer", "Served", "local_start", "local_status", "local_stop", "state_file"]
