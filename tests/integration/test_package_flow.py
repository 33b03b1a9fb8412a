"""`package` for real: build the bento, smoke-test it under `bentoml serve` on 127.0.0.1,
upload it; and refuse to ship when the smoke test fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import flows.packaging as packaging
from bentos.packaging import SmokeTestError
from components.core.store import LocalStore
from components.model.known_answers import KnownAnswers
from flows.data_prep import DataPrepParams, GeneratedInput, data_prep
from flows.training import TrainingParams, train

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("package") / "store"
    data_prep(
        DataPrepParams(
            problem=CHURN,
            store=str(folder),
            generated=GeneratedInput(rows=20_000, days=90, seed=21),
        )
    )
    result = train(TrainingParams(problem=CHURN, store=str(folder), trials=0, cv_folds=0))
    assert result.promoted
    return folder


def test_package_builds_smoke_tests_and_uploads(store_dir, served_model, monkeypatch):
    # Another model's tag in this process's environment must not reach the bento under test.
    monkeypatch.setenv("MLOPS_MODEL_TAG", served_model.tag)
    result = packaging.package(packaging.PackageParams(problem=CHURN, store=str(store_dir)))
    assert result.version == "v1"
    assert result.bento_tag.startswith("mlops-prediction:churn-v1-")
    assert result.bento_tag.split(":")[1] == result.model_tag.split(":")[1]
    assert any("known answers match" in line for line in result.smoke)
    assert any("422" in line for line in result.smoke)
    assert LocalStore(store_dir).exists(result.bento_key)
    assert Path(result.dockerfile).is_file()
    again = packaging.package(packaging.PackageParams(problem=CHURN, store=str(store_dir)))
    assert again.bento_tag == result.bento_tag  # immutable: rebuilt never, reused


def test_a_failed_smoke_test_ships_nothing(store_dir, monkeypatch, tmp_path):
    real = packaging.known_answers

    def wrong_answers(*args, **kwargs):
        right = real(*args, **kwargs)
        return KnownAnswers(right.records, np.clip(right.expected + 0.25, 0, 1))

    monkeypatch.setattr(packaging, "known_answers", wrong_answers)
    store = LocalStore(store_dir)
    for key in store.list("bentos"):  # whatever an earlier test shipped
        store.delete(key)
    with pytest.raises(SmokeTestError, match="predictions differ"):
        packaging.package(packaging.PackageParams(problem=CHURN, store=str(store_dir)))
    assert store.list("bentos") == []
