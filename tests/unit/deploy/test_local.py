"""components/deploy/local.py with a fake serve function: a real process (``sleep``) in a
process group of its own stands in for the server, so status and stop act on real pids."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.core.store import LocalStore
from components.deploy.local import local_start, local_status, local_stop, state_file


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
