"""The service under a real `bentoml serve` on 127.0.0.1 with two workers: the same cases as
the in-process tests, and a SIGTERM that loses nothing already answered; with the capture
journal on, a SIGKILL that loses nothing either, and a replayer that dies started again."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import time

import httpx
import psutil
import pytest
from service_cases import BAD_REQUESTS, GOOD

from bentos.packaging import serve
from components.capture.buffer import read_captures
from components.core.store import LocalStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def running(served_model, tmp_path_factory):
    store = tmp_path_factory.mktemp("serve-store")
    server = _serve(
        served_model, store, workers=2, MLOPS_CAPTURE_FLUSH_S="60", MLOPS_SERVE_BODY_TIMEOUT_S="2"
    )
    yield server, store
    server.stop()


def test_predict_feedback_metadata(running, served_model):
    server, _ = running
    response = httpx.post(f"{server.url}/predict", json={"records": served_model.records})
    assert response.status_code == 200
    probabilities = [a["probability"] for a in response.json()["predictions"]]
    assert probabilities == pytest.approx(served_model.expected, abs=1e-6)
    first = response.json()["predictions"][0]["prediction_id"]
    feedback = httpx.post(f"{server.url}/feedback", json={"prediction_id": first, "label": 1})
    assert feedback.status_code == 200
    assert httpx.get(f"{server.url}/metadata").json()["version"] == "v7"


@pytest.mark.parametrize(
    ("case", "path", "body", "status", "fragment"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_client_mistakes(running, case, path, body, status, fragment):
    server, _ = running
    response = httpx.post(
        f"{server.url}{path}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert fragment in response.text


def test_an_oversized_body_without_length_is_cut_off_with_413(running):
    # Chunked transfer: no Content-Length to check up front; the guard counts while reading.
    server, _ = running

    def chunks():
        for _ in range(40):
            yield b" " * 65_536  # 2.5 MiB in all, over the 1 MiB limit

    response = httpx.post(
        f"{server.url}/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "exceeds the limit" in response.text


def test_a_body_that_stops_arriving_gets_408_not_504(running):
    # The client announces 100 bytes and sends 12: the guard's deadline (2 s here) answers
    # before BentoML's request timeout would cancel the request with a 504.
    server, _ = running
    url = httpx.URL(server.url)
    start = time.monotonic()
    with socket.create_connection((url.host, url.port), timeout=20) as client:
        client.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"records": ['
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = client.recv(65536)
            if not data:
                break
            answer += data
    took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"MLOPS_SERVE_BODY_TIMEOUT_S" in answer
    assert 2 <= took < 10
    # The worker goes on serving.
    assert httpx.post(f"{server.url}/predict", json={"records": [GOOD]}).status_code == 200


def test_the_access_log_has_the_failures_only(running):
    # After the cases above: by default (MLOPS_SERVE_ACCESS_LOG=errors) BentoML's access log
    # keeps the client mistakes and leaves out the successes.
    server, _ = running
    assert httpx.post(f"{server.url}/predict", json={"records": [GOOD]}).status_code == 200
    assert httpx.post(f"{server.url}/predict", json={"records": [{}]}).status_code == 422
    deadline = time.monotonic() + 10
    while "status=422" not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    access = [line for line in server.logs().splitlines() if "(scheme=http," in line]
    assert any("path=/predict" in line and "status=422" in line for line in access), access
    assert not [line for line in access if "status=200" in line]


# Last: it stops the module's server.
def test_sigterm_loses_no_answered_prediction(running):
    # The flush interval is 60 s, so whatever reaches the store was flushed at shutdown.
    server, store = running
    with httpx.Client() as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: client.post(f"{server.url}/predict", json={"records": [GOOD, GOOD]}),
                range(40),
            )
        )
    ids = {a["prediction_id"] for r in answers for a in r.json()["predictions"]}
    assert len(ids) == 80
    assert server.stop() == 0
    captured = set(read_captures(LocalStore(store), "churn")["prediction_id"])
    assert ids <= captured


def test_a_worker_killed_without_warning_loses_no_answered_prediction(served_model, tmp_path):
    """With the journal on, SIGKILL to the whole server: no shutdown hook runs, yet the
    journal already holds every answered request and the worker's replayer (in its own
    session) stores it, then exits."""
    store = tmp_path / "store"
    server = _serve(served_model, store, MLOPS_CAPTURE_FLUSH_S="60", MLOPS_CAPTURE_JOURNAL="true")
    workers, replayers = [], []
    try:
        answers = [
            httpx.post(f"{server.url}/predict", json={"records": [GOOD] * n}) for n in (1, 5, 20)
        ]
        workers = psutil.Process(server.process.pid).children()
        replayers = _replayers(server)
    finally:
        server.stop(timeout=0)  # no time for a graceful stop: SIGKILL, workers included
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert len(replayers) == 1
    ids = {a["prediction_id"] for r in answers for a in r.json()["predictions"]}
    assert len(ids) == 26
    _, alive = psutil.wait_procs(replayers, timeout=90)
    assert not alive, "the replayer did not exit after storing its dead worker's journal"
    assert set(read_captures(LocalStore(store), "churn")["prediction_id"]) == ids
    assert not [p for p in (tmp_path / "journal").rglob("*") if p.suffix != ".log" and p.is_file()]


def test_a_replayer_that_dies_is_started_again(served_model, tmp_path):
    store = tmp_path / "store"
    server = _serve(served_model, store, MLOPS_CAPTURE_JOURNAL="true")
    try:
        (first,) = _replayers(server)
        first.kill()
        deadline = time.monotonic() + 60
        while [p.pid for p in _replayers(server)] in ([], [first.pid]):
            assert time.monotonic() < deadline, "no new replayer within 60 s"
            time.sleep(0.5)
        (second,) = _replayers(server)
        assert second.pid != first.pid
        response = httpx.post(f"{server.url}/predict", json={"records": [GOOD] * 3})
        ids = {a["prediction_id"] for a in response.json()["predictions"]}
    finally:
        assert server.stop() == 0
    assert set(read_captures(LocalStore(store), "churn")["prediction_id"]) == ids


def _replayers(server) -> list[psutil.Process]:
    """The capture replayers the server's workers started (running ones)."""
    out = []
    for process in psutil.Process(server.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone, or a zombie not yet reaped
            if "bentos.replayer" in " ".join(process.cmdline()):
                out.append(process)
    return out


def _serve(served_model, store, workers: int = 1, **settings: str):
    env = {
        "MLOPS_MODEL_TAG": served_model.tag,
        "MLOPS_STORE": str(store),
        "MLOPS_SERVE_API_KEY": "",
        **settings,
    }
    return serve("bentos.service:PredictionService", env=env, workers=workers)
