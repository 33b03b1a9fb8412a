"""The BentoML service in-process through `to_asgi()` (its lifespan runs the service's
__init__): predictions, feedback, metadata, probes and every client mistake."""

from __future__ import annotations

import importlib
import json
import logging

import pytest
from service_cases import BAD_REQUESTS, GOOD
from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def service_module(served_model):
    import os
    import sys

    # The service binds its model tag when the module is executed; `bentoml build` in other
    # tests may already have imported it with another tag, so execute it again under ours.
    before = os.environ.get("MLOPS_MODEL_TAG")
    os.environ["MLOPS_MODEL_TAG"] = served_model.tag
    try:
        if "bentos.service" in sys.modules:
            yield importlib.reload(sys.modules["bentos.service"])
        else:
            yield importlib.import_module("bentos.service")
    finally:  # later tests must not inherit this tag
        if before is None:
            os.environ.pop("MLOPS_MODEL_TAG", None)
        else:
            os.environ["MLOPS_MODEL_TAG"] = before


@pytest.fixture(scope="module")
def app(service_module):
    # One ASGI app per process: BentoML registers its Prometheus metrics when it builds one.
    # Each TestClient below runs the app's lifespan, which creates a new service instance
    # that reads the environment of that moment.
    return service_module.PredictionService.to_asgi()


def _client(app, monkeypatch, tmp_path, **env):
    monkeypatch.setenv("MLOPS_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MLOPS_CAPTURE_FLUSH_S", "0.2")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return TestClient(app)


@pytest.fixture
def client(app, monkeypatch, tmp_path):
    with _client(app, monkeypatch, tmp_path) as c:
        yield c


def test_probes(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_predictions_are_the_models_own(client, served_model):
    response = client.post("/predict", json={"records": served_model.records})
    assert response.status_code == 200
    answers = response.json()["predictions"]
    assert len(answers) == 100
    assert [a["probability"] for a in answers] == pytest.approx(served_model.expected, abs=1e-6)
    assert all(a["label"] == int(a["probability"] >= served_model.threshold) for a in answers)
    assert {a["model_version"] for a in answers} == {"v7"}
    assert len({a["prediction_id"] for a in answers}) == 100


def test_metadata(client):
    meta = client.get("/metadata").json()
    assert meta["version"] == "v7"
    assert meta["problem"] == "churn"
    assert "tenure_months" in meta["features"]


@pytest.mark.parametrize(
    ("case", "path", "body", "status", "fragment"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_client_mistakes_get_a_4xx_with_detail(client, case, path, body, status, fragment):
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert "error" in response.json()


def test_feedback_is_idempotent_and_conflicts_are_409(client):
    (answer,) = client.post("/predict", json={"records": [GOOD]}).json()["predictions"]
    body = {"prediction_id": answer["prediction_id"], "label": 1}
    first = client.post("/feedback", json=body)
    again = client.post("/feedback", json=body)
    assert (first.status_code, first.json()["stored"]) == (200, True)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    assert client.post("/feedback", json={**body, "label": 0}).status_code == 409


def test_captured_rows_reach_the_store(app, served_model, monkeypatch, tmp_path):
    from components.capture.feedback import read_feedback
    from components.capture.readers import read_captures
    from components.core.store import LocalStore

    with _client(app, monkeypatch, tmp_path) as c:
        answers = c.post("/predict", json={"records": served_model.records[:10]}).json()
        first = answers["predictions"][0]["prediction_id"]
        c.post("/feedback", json={"prediction_id": first, "label": 0})
    store = LocalStore(tmp_path / "store")  # the lifespan has ended: everything is flushed
    captured = read_captures(store, "churn")
    assert sorted(captured["prediction_id"]) == sorted(
        a["prediction_id"] for a in answers["predictions"]
    )
    # Ten records go through the columnar path: what is stored is exactly what was sent.
    by_id = captured.set_index("prediction_id")
    for record, answer in zip(served_model.records[:10], answers["predictions"], strict=True):
        row = by_id.loc[answer["prediction_id"]]
        for name, value in record.items():
            stored = row[name]
            assert (value is None and stored != stored) or stored == value, (name, value, stored)
        assert row["probability"] == answer["probability"]
        assert row["label"] == answer["label"]
    # One record goes through the row path; both paths land in the same table.
    with _client(app, monkeypatch, tmp_path) as c:
        single = c.post("/predict", json={"records": [GOOD]}).json()["predictions"][0]
    assert single["prediction_id"] in set(read_captures(store, "churn")["prediction_id"])
    assert read_feedback(store, "churn")["prediction_id"].tolist() == [first]


def test_api_key_protects_predict_and_feedback(app, monkeypatch, tmp_path):
    with _client(app, monkeypatch, tmp_path, MLOPS_SERVE_API_KEY="s3cret") as c:
        assert c.post("/predict", json={"records": [GOOD]}).status_code == 401
        wrong = c.post("/predict", json={"records": [GOOD]}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        ok = c.post("/predict", json={"records": [GOOD]}, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert c.post("/feedback", json={}).status_code == 401
        assert c.get("/metadata").status_code == 200
        assert c.get("/readyz").status_code == 200


def test_unknown_categories_can_be_flagged_instead(app, monkeypatch, tmp_path):
    env = {"MLOPS_SERVE_FLAG_UNKNOWN_CATEGORIES": "true"}
    with _client(app, monkeypatch, tmp_path, **env) as c:
        response = c.post("/predict", json={"records": [{**GOOD, "region": "atlantis"}]})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["flags"] == {"unknown_categories": ["region"]}


def test_flagged_requests_are_captured_as_sent(app, served_model, monkeypatch, tmp_path):
    from components.capture.readers import read_captures
    from components.core.store import LocalStore

    records = [*served_model.records[:9], {**GOOD, "region": "atlantis"}]  # columnar path
    env = {"MLOPS_SERVE_FLAG_UNKNOWN_CATEGORIES": "true"}
    with _client(app, monkeypatch, tmp_path, **env) as c:
        answers = c.post("/predict", json={"records": records}).json()["predictions"]
    by_id = read_captures(LocalStore(tmp_path / "store"), "churn").set_index("prediction_id")
    assert sorted(by_id.index) == sorted(a["prediction_id"] for a in answers)
    for record, answer in zip(records, answers, strict=True):
        row = by_id.loc[answer["prediction_id"]]
        for name, value in record.items():
            stored = row[name]
            assert (value is None and stored != stored) or stored == value, (name, value, stored)
        flags = json.loads(row["flags"]) if isinstance(row["flags"], str) else None
        assert flags == answer.get("flags")
    assert by_id.loc[answers[-1]["prediction_id"], "region"] == "atlantis"


def test_record_limit_is_configurable(app, monkeypatch, tmp_path):
    with _client(app, monkeypatch, tmp_path, MLOPS_SERVE_MAX_RECORDS="2") as c:
        response = c.post("/predict", json={"records": [GOOD] * 3})
    assert response.status_code == 413


def test_access_log_keeps_only_failures_by_default(app, service_module, monkeypatch, tmp_path):
    """BentoML's own access-log middleware, with the service's filter on its logger: a line
    for the 422 and the 404, none for the successes."""
    access = logging.getLogger(service_module.ACCESS_LOGGER)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        with _client(app, monkeypatch, tmp_path) as c:
            assert c.post("/predict", json={"records": [GOOD]}).status_code == 200
            assert c.get("/metadata").status_code == 200
            assert c.post("/predict", json={"records": [{}]}).status_code == 422
            missing = {"prediction_id": "0" * 48, "label": 1}
            assert c.post("/feedback", json=missing).status_code == 404
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
        for f in [f for f in access.filters if isinstance(f, service_module.FailuresOnly)]:
            access.removeFilter(f)
    assert len(lines) == 2, lines
    assert "path=/predict" in lines[0] and "status=422" in lines[0]
    assert "path=/feedback" in lines[1] and "status=404" in lines[1]


@pytest.mark.parametrize(
    ("given", "mode"),
    [("errors", "errors"), ("ALL", "all"), ("off", "off"), ("true", "all"), ("false", "off")],
)
def test_access_log_setting(given, mode, monkeypatch):
    from components.core.settings import Settings

    monkeypatch.setenv("MLOPS_SERVE_ACCESS_LOG", given)
    assert Settings().serve_access_log == mode


def test_a_wrong_access_log_setting_names_the_variable(monkeypatch):
    from pydantic import ValidationError

    from components.core.settings import Settings

    monkeypatch.setenv("MLOPS_SERVE_ACCESS_LOG", "some")
    with pytest.raises(ValidationError, match="MLOPS_SERVE_ACCESS_LOG='some'"):
        Settings()


@pytest.mark.parametrize("given", ["30", "0", "soon"])
def test_the_body_deadline_must_come_before_bentomls_timeout(given, monkeypatch):
    from pydantic import ValidationError

    from components.core.settings import Settings

    monkeypatch.setenv("MLOPS_SERVE_BODY_TIMEOUT_S", given)
    with pytest.raises(ValidationError, match="serve_body_timeout_s"):
        Settings()


def test_the_service_sets_the_guards_body_deadline(service_module, app, monkeypatch, tmp_path):
    with _client(app, monkeypatch, tmp_path, MLOPS_SERVE_BODY_TIMEOUT_S="3.5") as client:
        assert client.get("/healthz").status_code == 200
        assert service_module.guard.body_timeout_s == 3.5


def test_refused_rows_are_counted_by_reason_in_the_store(app, served_model, monkeypatch, tmp_path):
    """Rows refused on predict (400, 413, 422) are counted by minute and reason and written
    on shutdown; 401s and feedback mistakes are not, and capture off counts nothing."""
    from components.capture.rejections import ALL, read_rejections, rejections_by_window
    from components.core.store import LocalStore

    bad_region = {k: v for k, v in GOOD.items() if k != "region"}
    env = {"MLOPS_SERVE_API_KEY": "k", "MLOPS_SERVE_MAX_RECORDS": "4"}
    with _client(app, monkeypatch, tmp_path, **env) as c:

        def post(body, **headers):
            return c.post("/predict", content=body, headers={"X-API-Key": "k", **headers})

        records = served_model.records[:3]
        assert post(json.dumps({"records": records})).status_code == 200
        # 3 rows: one record without a region, one with a wrong type, and a valid one.
        three = [bad_region, {**GOOD, "tenure_months": "five"}, GOOD]
        assert post(json.dumps({"records": three})).status_code == 422
        assert post(b'{"records": [').status_code == 400
        assert post(json.dumps({"records": [GOOD] * 5})).status_code == 413  # over 4
        assert post(json.dumps({"records": []})).status_code == 422
        # A body sent without Content-Length, cut off while it is read: the service's 413.
        big = c.post(
            "/predict", content=iter([b" " * 700_000, b" " * 700_000]), headers={"X-API-Key": "k"}
        )
        assert big.status_code == 413
        # One that declares a Content-Length over the limit: the guard's 413.
        declared = post(b" " * 1_100_000, **{"Content-Length": "1100000"})
        assert declared.status_code == 413
        assert c.post("/predict", json={"records": three}).status_code == 401  # not counted
        assert c.post("/feedback", json={}, headers={"X-API-Key": "k"}).status_code == 422
    store = LocalStore(tmp_path / "store")  # the lifespan has ended: everything is flushed
    frame = read_rejections(store, "churn")
    by_reason = frame.groupby(["field", "check"])["rows"].sum().to_dict()
    assert by_reason == {
        (ALL, ALL): 3 + 1 + 5 + 1 + 1 + 1,
        ("region", "missing"): 1,
        ("tenure_months", "int_type"): 1,
        ("(body)", "json_invalid"): 1,
        ("(request)", "too_long"): 1,
        ("(request)", "too_short"): 1,
        ("(body)", "too_large"): 2,
    }
    [window] = rejections_by_window(frame, "1d")
    assert window.rows == 12
    assert window.rate(answered=len(records)) == pytest.approx(12 / 15)
    assert store.list("rejections/churn/")[0].endswith(".json")

    off = {"MLOPS_CAPTURE": "false", "MLOPS_SERVE_API_KEY": ""}
    with _client(app, monkeypatch, tmp_path / "off", **off) as c:
        assert c.post("/predict", content=b'{"records": [').status_code == 400
    assert LocalStore(tmp_path / "off" / "store").list() == []
