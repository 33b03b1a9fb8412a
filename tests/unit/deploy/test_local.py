"""components/deploy/local.py with fake serve functions: a real process in a process group of
its own stands in for the server (``sleep``; for a replacement, Python's ``http.server`` on
127.0.0.1, whose /readyz answers once it listens), so status, stop and replace act on real
pids and ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.core.store import LocalStore
from components.deploy.local import (
    LocalServer,
    NotReadyError,
    local_replace,
    local_start,
    local_status,
    local_stop,
    state_file,
)


@dataclass
class Running:
    process: subprocess.Popen
    url: str
    log: Path


class FakeServe:
    """Starts ``sleep`` in a new session, as ``bentos.packaging.serve`` starts its server."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.calls, self.processes = tmp_path, [], []

    def __call__(self, bento: str, *, env=None, port=None, workers=1) -> Running:
        self.calls.append({"bento": bento, "env": env, "port": port, "workers": workers})
        process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        self.processes.append(process)
        return Running(process, f"http://127.0.0.1:{port or 3000}", self.tmp_path / "serve.log")

    def cleanup(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def serve(tmp_path):
    fake = FakeServe(tmp_path)
    yield fake
    fake.cleanup()


def _wait_for_exit(process: subprocess.Popen) -> int:
    return process.wait(timeout=10)


def test_state_file_lives_in_a_local_store_or_at_an_explicit_path(tmp_path):
    store = LocalStore(tmp_path / "store")
    assert state_file("churn", store=store) == store.root / "serve" / "churn.json"
    explicit = tmp_path / "elsewhere.json"
    assert state_file("churn", store=store, path=explicit) == explicit
    assert state_file("churn", path=explicit) == explicit
    with pytest.raises(ValueError, match="needs a local store or an explicit state file"):
        state_file("churn")


def test_start_records_the_server_and_refuses_a_second_one(tmp_path, serve):
    state = tmp_path / "store" / "serve" / "churn.json"
    server = local_start("churn:v1", state, serve=serve, port=3999, workers=3)
    assert serve.calls == [{"bento": "churn:v1", "env": None, "port": 3999, "workers": 3}]
    assert server.pid == serve.processes[0].pid
    assert (server.url, server.bento) == ("http://127.0.0.1:3999", "churn:v1")
    assert local_status(state) == server
    with pytest.raises(RuntimeError, match=r"already served at http://127\.0\.0\.1:3999"):
        local_start("churn:v2", state, serve=serve)
    assert len(serve.calls) == 1


def test_status_of_a_dead_process_cleans_up(tmp_path, serve):
    state = tmp_path / "churn.json"
    local_start("churn:v1", state, serve=serve)
    serve.processes[0].kill()
    _wait_for_exit(serve.processes[0])  # reaped: the pid no longer exists
    assert local_status(state) is None
    assert not state.exists()
    assert local_start("churn:v2", state, serve=serve).bento == "churn:v2"


def test_stop_terminates_the_process_group(tmp_path, serve):
    state = tmp_path / "churn.json"
    server = local_start("churn:v1", state, serve=serve)
    assert local_stop(state) == server
    assert _wait_for_exit(serve.processes[0]) == -15  # SIGTERM
    assert not state.exists()
    assert local_status(state) is None
    assert local_stop(state) is None


def test_nothing_recorded_means_nothing_running(tmp_path):
    assert local_status(tmp_path / "absent.json") is None
    assert local_stop(tmp_path / "absent.json") is None


# ------------------------------------------------------------------------------ replace


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.read().decode()


class HttpServe(FakeServe):
    """Starts ``python -m http.server`` on 127.0.0.1 in a new session and returns at once, as
    a serve function may: its /readyz answers 200 once it listens, unless its bento (or
    ``(bento, port)``) is in ``never_ready``; its /bento names the bento it serves. A bento
    in ``raises`` makes the call fail, as ``bentos.packaging.serve`` does when its own wait
    for readiness runs out."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.never_ready: set = set()
        self.raises: set = set()

    def __call__(self, bento: str, *, env=None, port=None, workers=1, ready_timeout=None):
        self.calls.append({"bento": bento, "port": port, "ready_timeout": ready_timeout})
        if bento in self.raises:
            raise RuntimeError(f"bentoml serve not ready after {ready_timeout} s: (log tail)")
        n, port = len(self.calls), port or _free_port()
        site = self.tmp_path / f"site-{n}"
        site.mkdir()
        (site / "bento").write_text(bento)
        if not {bento, (bento, port)} & self.never_ready:
            (site / "readyz").write_text("ready")
        log = self.tmp_path / f"serve-{n}.log"
        command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, "--directory", str(site)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return Running(process, f"http://127.0.0.1:{port}", log)


@pytest.fixture
def http_serve(tmp_path):
    fake = HttpServe(tmp_path)
    yield fake
    fake.cleanup()


def _serving(tmp_path, http_serve) -> tuple[Path, LocalServer]:
    """churn:v1 started and answering, recorded in a state file."""
    state = tmp_path / "churn.json"
    old = local_start("churn:v1", state, serve=http_serve, port=_free_port())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            assert _get(f"{old.url}/bento") == "churn:v1"
            return state, old
        except OSError:
            time.sleep(0.05)
    pytest.fail("the fake server did not start")


def test_replace_with_nothing_running_starts_and_records(tmp_path, http_serve):
    state = tmp_path / "churn.json"
    server = local_replace("churn:v2", state, serve=http_serve, port=None, workers=3)
    assert http_serve.calls == [{"bento": "churn:v2", "port": None, "ready_timeout": 120.0}]
    assert server.pid == http_serve.processes[0].pid
    assert local_status(state) == server
    assert _get(f"{server.url}/bento") == "churn:v2"


def test_replace_tries_the_bento_beside_then_takes_over_the_url(tmp_path, http_serve):
    state, old = _serving(tmp_path, http_serve)
    port = int(old.url.rsplit(":", 1)[1])
    new = local_replace("churn:v2", state, serve=http_serve, ready_timeout_s=5)
    trial, final = http_serve.calls[1:]
    assert (trial["bento"], trial["port"]) == ("churn:v2", None)  # a free port, beside v1
    assert (final["bento"], final["port"]) == ("churn:v2", port)
    assert (new.url, new.bento, new.pid) == (old.url, "churn:v2", http_serve.processes[2].pid)
    assert local_status(state) == new
    assert _get(f"{new.url}/bento") == "churn:v2"
    old_process, trial_process = http_serve.processes[:2]
    assert old_process.poll() is not None and trial_process.poll() is not None


@pytest.mark.parametrize("failure", ["never answers", "serve raises"])
def test_a_bento_that_is_not_ready_leaves_the_old_one_serving(tmp_path, http_serve, failure):
    state, old = _serving(tmp_path, http_serve)
    (http_serve.never_ready if failure == "never answers" else http_serve.raises).add("churn:v2")
    with pytest.raises(NotReadyError, match=r"churn:v1 keeps serving at http://127\.0\.0\.1:") as e:
        local_replace("churn:v2", state, serve=http_serve, ready_timeout_s=0.5)
    if failure == "never answers":
        assert f"its log: {tmp_path / 'serve-2.log'}" in str(e.value)
        assert http_serve.processes[1].poll() is not None  # the trial was stopped
    else:
        assert "bentoml serve not ready after 0.5 s" in str(e.value)
    assert [c["bento"] for c in http_serve.calls] == ["churn:v1", "churn:v2"]
    assert local_status(state) == old
    assert _get(f"{old.url}/bento") == "churn:v1"


def test_a_bento_not_ready_on_the_port_brings_the_old_one_back(tmp_path, http_serve):
    state, old = _serving(tmp_path, http_serve)
    port = int(old.url.rsplit(":", 1)[1])
    http_serve.never_ready.add(("churn:v2", port))  # ready beside, not on the port
    with pytest.raises(NotReadyError, match=r"churn:v1 serves again at http://127\.0\.0\.1:"):
        local_replace("churn:v2", state, serve=http_serve, ready_timeout_s=0.5)
    assert [(c["bento"], c["port"]) for c in http_serve.calls[1:]] == [
        ("churn:v2", None),
        ("churn:v2", port),
        ("churn:v1", port),
    ]
    back = local_status(state)
    assert (back.bento, back.url, back.pid) == ("churn:v1", old.url, http_serve.processes[3].pid)
    assert _get(f"{old.url}/bento") == "churn:v1"


def test_replace_on_another_port_overlaps_and_moves_the_url(tmp_path, http_serve):
    state, old = _serving(tmp_path, http_serve)
    port = _free_port()
    new = local_replace("churn:v2", state, serve=http_serve, port=port, ready_timeout_s=5)
    assert [(c["bento"], c["port"]) for c in http_serve.calls[1:]] == [("churn:v2", port)]
    assert new.url == f"http://127.0.0.1:{port}" != old.url
    assert local_status(state) == new
    assert http_serve.processes[0].poll() is not None
