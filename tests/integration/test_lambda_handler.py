"""The Lambda handler (Mangum over the service's ASGI app), invoked in-process with API
Gateway v2 events, in a fresh interpreter like a new Lambda container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _invoke(served_model, store: Path, records: int = 3, **settings) -> dict:
    env = {
        **os.environ,
        "MLOPS_MODEL_TAG": served_model.tag,
        "MLOPS_STORE": str(store),
        "MLOPS_SERVE_API_KEY": "",
        "PYTHONPATH": str(HERE.parents[1]),
        **settings,
    }
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "lambda_invoke.py"),
            json.dumps(served_model.records[:records]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


@pytest.fixture(scope="module")
def invoked(served_model, tmp_path_factory):
    return _invoke(served_model, tmp_path_factory.mktemp("lambda-store"), MLOPS_CAPTURE="false")


def test_answers_like_the_service(invoked, served_model):
    statuses = [r["status"] for r in invoked["responses"]]
    assert statuses == [200, 200, 200, 400, 200]
    answers = json.loads(invoked["responses"][0]["body"])["predictions"]
    assert [a["probability"] for a in answers] == pytest.approx(served_model.expected[:3], abs=1e-6)
    again = json.loads(invoked["responses"][1]["body"])["predictions"]  # base64-encoded body
    assert [a["probability"] for a in again] == pytest.approx(served_model.expected[:3], abs=1e-6)
    assert json.loads(invoked["responses"][2]["body"])["version"] == "v7"


def test_service_starts_once_per_container(invoked):
    assert invoked["model_loads"] == 1
    cold, *warm = invoked["seconds"]
    assert max(warm) < cold  # only the first invocation pays for the start-up


def test_each_invocation_stores_what_it_captured(served_model, tmp_path):
    # The flush interval is an hour and the container ends without a shutdown (os._exit),
    # as a reclaimed Lambda container does: rows must already be stored per invocation.
    from components.capture.readers import read_captures
    from components.core.store import LocalStore

    store = tmp_path / "store"
    invoked = _invoke(
        served_model, store, records=10, MLOPS_CAPTURE="true", MLOPS_CAPTURE_FLUSH_S="3600"
    )
    answered = [
        a["prediction_id"]
        for r in invoked["responses"][:2]
        for a in json.loads(r["body"])["predictions"]
    ]
    assert len(answered) == 20
    stored = read_captures(LocalStore(store), "churn")
    assert sorted(stored["prediction_id"]) == sorted(answered)
