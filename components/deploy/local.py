"""The local target: one managed serving process per problem, started, checked and stopped.

The serving function is injected (the flow passes ``bentos.packaging.serve``), so this module
starts no server of its own and imports no web framework. What was started is recorded in a
small JSON state file: in the store's folder for a local store
(``<store root>/serve/<problem>.json``), or at a path the caller gives.

``local_replace`` puts a new bento in the place of the running one on the same URL. Two
servers cannot listen on one port here: BentoML 1.4's ``bentoml serve`` binds its HTTP
socket once, in its process manager (circus), with SO_REUSEADDR but not SO_REUSEPORT, and
Linux lets a second socket bind a listening port only when both set SO_REUSEPORT (the second
server exits with "Address already in use"). So the replacement proves the new bento on a
free port first, while the old one serves, and then hands the port over with the shortest
gap the platform allows (see :func:`local_replace`).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

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


# serve(bento, *, env, port, workers[, ready_timeout]) -> Served; port None: a free port.
# local_replace passes ready_timeout; a serve that waits for readiness itself (as
# bentos.packaging.serve does) raises RuntimeError when the server is not ready in time.
ServeFn = Callable[..., Served]

_POLL_S = 0.1
_RELEASE_TIMEOUT_S = 30.0  # for the old server to close its listening socket after SIGTERM
_DRAIN_TIMEOUT_S = 60.0  # for a stopped server to finish the requests it holds and exit


class NotReadyError(RuntimeError):
    """A new server did not answer /readyz in time; the message says which server still
    serves and where the new one's log is."""


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
    return _record(state, _as_server(bento, serve(bento, env=env, port=port, workers=workers)))


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


def local_replace(
    bento: str,
    state: Path,
    *,
    serve: ServeFn,
    port: int | None = None,
    workers: int = 2,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 120.0,
) -> LocalServer:
    """Serve ``bento`` in place of the server recorded in ``state``, record the new server
    and return it; with nothing running, just start it. Raises :class:`NotReadyError` when
    the new server does not answer /readyz within ``ready_timeout_s``.

    ``port`` None (or the old server's port) keeps the URL, in three steps, as the port
    cannot be shared (module docstring):

    1. ``bento`` is started on a free port while the old server serves. If it is not ready,
       it is stopped, the old server serves on and the error names the new one's log.
    2. The trial stopped, the old server gets SIGTERM; as soon as its listening socket is
       closed (its workers go on finishing the requests they hold), ``bento`` is started on
       the port. Connections are refused from that close until the new server binds the
       port early in its start-up; those made after the bind wait in its backlog until its
       workers are ready. Readiness is probed only once the old socket is closed, so the
       answer is the new server's.
    3. If the new server is not ready on the port, the old bento is started there again.

    A different ``port`` overlaps instead: the new server is ready before the old one gets
    SIGTERM and nothing is refused, but the URL changes; clients must take it from the
    result or from ``state``. Either way this returns once the old server has exited (or
    after a minute of draining).
    """
    start = functools.partial(
        _start_ready, serve=serve, workers=workers, env=env, timeout=ready_timeout_s
    )
    old = local_status(state)
    if old is None:
        return _record(state, start(bento, port=port))
    host, old_port = _address(old.url)
    if port is not None and port != old_port:
        if not _port_free(host, port):
            raise RuntimeError(f"port {port} is in use; {old.bento} keeps serving at {old.url}")
        new = _record(state, _start_beside(old, start, bento, port))
        _terminate(old.pid, _DRAIN_TIMEOUT_S)
        return new
    trial = _start_beside(old, start, bento, None)
    _terminate(trial.pid, _DRAIN_TIMEOUT_S)
    _release(old, host, old_port)
    try:
        new = start(bento, port=old_port)
    except NotReadyError as err:
        raise _restart_old(state, old, old_port, start, err) from err
    _record(state, new)
    _wait_gone(old.pid, _DRAIN_TIMEOUT_S)
    return new


def _start_ready(
    bento: str,
    *,
    port: int | None,
    serve: ServeFn,
    workers: int,
    env: dict[str, str] | None,
    timeout: float,
) -> LocalServer:
    """``serve(bento)``, then /readyz probed until it answers 200; a server that does not
    is stopped (its whole process group) and :class:`NotReadyError` names its log."""
    deadline = time.monotonic() + timeout
    try:
        running = serve(bento, env=env, port=port, workers=workers, ready_timeout=timeout)
    except RuntimeError as err:  # serve waited for readiness itself, stopped it and raised
        raise NotReadyError(f"{bento} did not start: {err}") from err
    server = _as_server(bento, running)
    if not _wait_ready(server, deadline):
        _terminate(server.pid, _DRAIN_TIMEOUT_S)
        raise NotReadyError(
            f"{bento} did not answer {server.url}/readyz within {timeout:g} s and was "
            f"stopped; its log: {server.log}"
        )
    return server


def _start_beside(
    old: LocalServer, start: Callable[..., LocalServer], bento: str, port: int | None
) -> LocalServer:
    """``start(bento)`` while ``old`` serves on; the error says that it does."""
    try:
        return start(bento, port=port)
    except NotReadyError as err:
        raise NotReadyError(
            f"{old.bento} keeps serving at {old.url} (pid {old.pid}): {err}"
        ) from err


def _restart_old(
    state: Path, old: LocalServer, port: int, start: Callable[..., LocalServer], err: Exception
) -> NotReadyError:
    """The error to raise once the old bento was started again on ``port`` (and recorded),
    or could not be (and nothing is recorded)."""
    try:
        back = _record(state, start(old.bento, port=port))
    except NotReadyError as again:
        state.unlink(missing_ok=True)
        return NotReadyError(f"{err}; starting {old.bento} again failed too: {again}")
    return NotReadyError(f"{err}; {old.bento} serves again at {back.url} (pid {back.pid})")


def _release(old: LocalServer, host: str, port: int) -> None:
    """SIGTERM to the old server's process group; returns as soon as its listening socket
    is closed, while its workers may still be finishing requests."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(old.pid, signal.SIGTERM)
    deadline = time.monotonic() + _RELEASE_TIMEOUT_S
    while not _port_free(host, port):
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{old.bento} (pid {old.pid}) still holds port {port} "
                f"{_RELEASE_TIMEOUT_S:g} s after SIGTERM; nothing new was started there"
            )
        time.sleep(0.005)  # the gap in which connections are refused starts here


def _as_server(bento: str, running: Served) -> LocalServer:
    return LocalServer(pid=running.process.pid, url=running.url, bento=bento, log=str(running.log))


def _record(state: Path, server: LocalServer) -> LocalServer:
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(server.model_dump_json())
    return server


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"the recorded server's URL {url!r} names no host and port")
    return parts.hostname, parts.port


def _port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now (SO_REUSEADDR, as circus sets it, so
    connections of a closed server in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _answers_ready(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, 503
        return False


def _wait_ready(server: LocalServer, deadline: float) -> bool:
    while _alive(server.pid):
        if _answers_ready(server.url):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return False


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a child of this process that exited is reaped (a zombie would
    still accept signals)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM to the process group of ``pid``; whether it exited within ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    return _wait_gone(pid, timeout)


__all__ = [
    "LocalServer",
    "NotReadyError",
    "Served",
    "local_replace",
    "local_start",
    "local_status",
    "local_stop",
    "state_file",
]
