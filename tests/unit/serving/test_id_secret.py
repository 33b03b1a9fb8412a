"""Prediction ids stay valid across model versions: one secret per problem in the store,
created once; ids a version issued under its own derived secret are still recognised by
that version, and refused elsewhere with a message that says why."""

from __future__ import annotations

import json
from datetime import date

import pytest

from components.core import keys, provenance
from components.core.store import ObjectExistsError
from components.data import datagen
from components.data.validation import validate_frame
from components.model import training
from components.serving.contract import RequestError
from components.serving.ids import PredictionIds, problem_secret
from components.serving.online import OnlineModel, ServingOptions


@pytest.fixture(scope="module")
def versions(spec, tmp_path_factory):
    """Two packaged versions of different models (v1: 20 trees, v2: 10 of them)."""
    config = datagen.GeneratorConfig(rows=3000, days=30, start=date(2026, 1, 1), seed=4)
    valid = validate_frame(datagen.generate(config).frame.drop(columns=["label_time"]), spec)
    parts = training.split_by_time(valid.valid, spec)
    model = training.train_model(
        parts.train, parts.validation, spec, training.TrainParams(num_boost_round=20), seed=1
    )
    folders = {}
    for version, booster in (("v1", model.booster), ("v2", model.booster[:10])):
        files = {
            "model.ubj": training.model_bytes(booster),
            "problem.json": spec.model_dump_json().encode(),
        }
        metadata = {
            "version": version,
            "problem": spec.name,
            "threshold": 0.3,
            "files": {
                n: {"sha256": provenance.sha256_hex(d), "bytes": len(d)} for n, d in files.items()
            },
        }
        folder = tmp_path_factory.mktemp(version)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        (folder / "metadata.json").write_text(json.dumps(metadata))
        folders[version] = folder
    record = {**parts.test.iloc[0][spec.input_features].to_dict()}
    return folders, record


def _predict_id(model: OnlineModel, record: dict) -> str:
    body = json.dumps({"records": [record]}, default=str).encode()
    return model.predict(body)["predictions"][0]["prediction_id"]


def _feedback(model: OnlineModel, prediction_id: str) -> dict:
    return model.feedback(json.dumps({"prediction_id": prediction_id, "label": 1}).encode())


def test_the_problems_secret_is_created_once(store):
    first = problem_secret(store, "churn")
    assert len(first) == 32
    assert problem_secret(store, "churn") == first
    assert store.get_bytes(keys.prediction_id_secret("churn")) == first
    assert problem_secret(store, "other") != first
    with pytest.raises(ObjectExistsError):  # never replaced
        store.put_bytes(keys.prediction_id_secret("churn"), b"x" * 32, create_only=True)


def test_an_earlier_secret_is_still_recognised_but_not_issued():
    old, new = PredictionIds(b"old" * 11), PredictionIds(b"new" * 11, also_accepted=(b"old" * 11,))
    (legacy,) = old.new_many(1)
    assert new.issued(legacy) and not PredictionIds(b"new" * 11).issued(legacy)
    assert not old.issued(new.new_many(1)[0])


def test_labels_for_an_earlier_versions_ids_are_accepted_after_a_retrain(versions, store):
    folders, record = versions
    options = ServingOptions(id_store=store)
    v1 = OnlineModel.open(folders["v1"], options=options)
    issued = _predict_id(v1, record)
    v2 = OnlineModel.open(folders["v2"], options=options)  # the retrained champion
    # No capture here: recognising the id is what matters; storing needs capture.
    with pytest.raises(RequestError) as stored:
        _feedback(v2, issued)
    assert stored.value.status == 503  # recognised, then "capture is off"
    with pytest.raises(RequestError) as unknown:
        _feedback(v2, "0" * 48)
    assert unknown.value.status == 404


def test_ids_issued_before_the_problem_had_a_secret(versions, store):
    folders, record = versions
    before = OnlineModel.open(folders["v1"])  # the old scheme: a secret derived per model
    legacy = _predict_id(before, record)
    same_version = OnlineModel.open(folders["v1"], options=ServingOptions(id_store=store))
    with pytest.raises(RequestError) as kept:
        _feedback(same_version, legacy)
    assert kept.value.status == 503  # still recognised by the version that issued it
    other_version = OnlineModel.open(folders["v2"], options=ServingOptions(id_store=store))
    with pytest.raises(RequestError) as refused:
        _feedback(other_version, legacy)
    assert refused.value.status == 404
    assert "recognised only by that version" in str(refused.value)
