"""`local_replace` under a real `bentoml serve` on 127.0.0.1, while a client keeps sending
requests: afterwards the same URL answers with the new bento, the old server and its workers
are gone, and no request got a wrong status. BentoML cannot share a port between two servers
(components/deploy/local.py), so connections made while the port changes hands are refused:
those, and keep-alive connections the old server closes as it drains, are the only failures
allowed here."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bentos.packaging import build_bento, serve
from components.deploy.local import local_replace, local_start, local_status, local_stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bentos(served_model) -> list[str]:
    """Two bentos of served_model's model: as registry version v7, and a copy as v8."""
    import bentoml

    metadata = json.loads((served_model.folder / "metadata.json").read_text())
    with bentoml.models.create("mlops-model:test-v8") as model:
        for name in ("model.ubj", "problem.json"):
            shutil.copy(served_model.folder / name, Path(model.path) / name)
        (Path(model.path) / "metadata.json").write_text(json.dumps({**metadata, "version": "v8"}))
    return [
        build_bento(served_model.tag, version_label="replace-v7"),
        build_bento("mlops-model:test-v8", version_label="replace-v8"),
    ]


@contextlib.contextmanager
def _client(url: str, records: list[dict]):
    """A thread POSTing /predict to ``url`` until the block ends; yields the list of what
    each request got: a status code, "refused" or "dropped"."""
    outcomes: list[int | str] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=30, trust_env=False) as http:
            while not stop.is_set():
                try:
                    outcomes.append(
                        http.post(f"{url}/predict", json={"records": records}).status_code
                    )
                except httpx.ConnectError:
                    outcomes.append("refused")
                except httpx.TransportError:
                    outcomes.append("dropped")
                if outcomes[-1] != 200:
                    time.sleep(0.01)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        thread.join()


def _version(url: str) -> str:
    return httpx.get(f"{url}/metadata", timeout=10).json()["version"]


def test_replace_while_a_client_sends(bentos, served_model, tmp_path):
    state = tmp_path / "serve" / "churn.json"
    env = {"MLOPS_CAPTURE": "false", "MLOPS_STORE": str(tmp_path / "store")}
    options = {"serve": serve, "workers": 1, "env": env}
    old = local_start(bentos[0], state, **options)
    try:
        assert _version(old.url) == "v7"
        arbiter = psutil.Process(old.pid)
        old_processes = [arbiter, *arbiter.children(recursive=True)]
        assert len(old_processes) >= 2  # the arbiter and its worker, in a session of its own
        with _client(old.url, served_model.records[:1]) as outcomes:
            time.sleep(1)
            before = len(outcomes)
            new = local_replace(bentos[1], state, **options, ready_timeout_s=120)
            time.sleep(1)
        assert (new.url, new.bento) == (old.url, bentos[1])
        assert local_status(state) == new
        assert _version(new.url) == "v8"
        _, alive = psutil.wait_procs(old_processes, timeout=30)
        assert alive == []
        assert set(outcomes) <= {200, "refused", "dropped"}, outcomes
        assert 200 in outcomes[:before] and outcomes[-1] == 200
    finally:
        stopped = local_stop(state)
        if stopped is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.wait_procs([psutil.Process(stopped.pid)], timeout=60)
