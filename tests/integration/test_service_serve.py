"""The service under a real `bentoml serve` on 127.0.0.1 with two workers: the same cases as
the in-process tests, a SIGTERM that loses nothing already answered, and a SIGKILL that loses
at most the rows of one flush interval."""

from __future__ import annotations

import concurrent.futures
import socket
import time

import httpx
import psutil
import pytest
from service_cases import BAD_REQUESTS, GOOD

from bentos.packaging import serve
from components.capture.readers import read_captures
from components.capture.rejections import read_rejections
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
    # Refused rows too: their counts are written by the same shutdown flush (a field no
    # other test sends, so the count is this test's whatever else ran).
    marked = {"records": [{**GOOD, "sigterm_marker": 1}] * 2}
    refused = [httpx.post(f"{server.url}/predict", json=marked) for _ in range(3)]
    assert [r.status_code for r in refused] == [422] * 3
    assert server.stop() == 0
    captured = set(read_captures(LocalStore(store), "churn")["prediction_id"])
    assert ids <= captured
    counts = read_rejections(LocalStore(store), "churn")
    marker = counts[counts["field"] == "sigterm_marker"]
    assert marker["check"].tolist() == ["extra_forbidden"] and marker["rows"].sum() == 6


def test_a_killed_server_loses_at_most_the_rows_of_one_flush_interval(served_model, tmp_path):
    """SIGKILL to the whole server: no shutdown hook runs, so the rows answered since the
    last flush are lost; every row answered a flush interval (1 s here) earlier is stored."""
    store = LocalStore(tmp_path / "store")
    server = _serve(served_model, tmp_path / "store", MLOPS_CAPTURE_FLUSH_S="1")
    workers, late = [], set()
    try:
        early = _answered(server, (1, 5, 20))
        started = time.monotonic()
        while not early <= _captured(store):
            assert time.monotonic() - started < 1 + 10, "not flushed within its interval"
            time.sleep(0.1)
        late = _answered(server, (3,))
        workers = psutil.Process(server.process.pid).children()
    finally:
        server.stop(timeout=0)  # no time for a graceful stop: SIGKILL, workers included
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert len(early) == 26 and len(late) == 3
    captured = _captured(store)
    assert early <= captured <= early | late


def _answered(server, sizes) -> set[str]:
    responses = [httpx.post(f"{server.url}/predict", json={"records": [GOOD] * n}) for n in sizes]
    return {a["prediction_id"] for r in responses for a in r.json()["predictions"]}


def _captured(store) -> set[str]:
    return set(read_captures(store, "churn")["prediction_id"])


def _serve(served_model, store, workers: int = 1, **settings: str):
    env = {
        "MLOPS_MODEL_TAG": served_model.tag,
        "MLOPS_STORE": str(store),
        "MLOPS_SERVE_API_KEY": "",
        **settings,
    }
    return serve("bentos.service:PredictionService", env=env, workers=workers)
