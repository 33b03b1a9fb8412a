"""The candidate's evaluation on its test rows, and the champion's on the same rows."""

from __future__ import annotations

import math

import pytest

from components.core import keys
from components.core.store import LocalStore
from components.model import training
from components.model.assessment import ChampionEvaluation, evaluate_candidate, evaluate_champion
from components.model.evaluation import CLASSIFICATION_KEYS
from components.model.registry import Registry, VersionNotFoundError


@pytest.fixture(scope="module")
def result(trained):
    return evaluate_candidate(trained.parts, trained.spec, trained.model)


def test_candidate_is_measured_on_the_test_rows(result, trained):
    n_test = trained.parts.sizes["test"]
    assert set(result.metrics) == {*CLASSIFICATION_KEYS, "n"}
    assert result.metrics["n"] == n_test
    assert result.test_scores.shape == (n_test,)
    assert 0 < result.threshold < 1
    assert result.metrics["roc_auc"] > 0.6


def test_baseline_is_the_training_prior(result, trained):
    prior = float(training.target(trained.parts.train, trained.spec).mean())
    assert result.baseline["roc_auc"] == 0.5  # one constant score ranks nothing
    assert result.baseline["n"] == result.metrics["n"]
    assert result.baseline["positive_rate"] == (1.0 if prior >= result.threshold else 0.0)


def test_slices_are_records_for_every_declared_slice(result, trained):
    assert {row["slice"] for row in result.slices} == {s.label for s in trained.spec.slices}
    contract = [row for row in result.slices if row["slice"] == "contract"]
    assert [row["group"] for row in contract] == trained.spec.features["contract"].categories
    assert sum(row["n"] for row in contract) == trained.parts.sizes["test"]


def test_no_champion_means_none(tmp_path, trained):
    registry = Registry(LocalStore(tmp_path / "store"), "churn")
    assert evaluate_champion(registry, trained.parts, trained.spec) is None


def test_champion_is_measured_at_its_own_threshold_on_the_same_rows(tmp_path, trained, result):
    registry = Registry(LocalStore(tmp_path / "store"), "churn")
    model = {"model.ubj": training.model_bytes(trained.model.booster)}
    version = registry.register(model, {"threshold": result.threshold})
    registry.promote(version, actor="test", reason="first")
    champion = evaluate_champion(registry, trained.parts, trained.spec)
    assert champion == ChampionEvaluation(version="v1", metrics=champion.metrics)
    assert champion.metrics == pytest.approx(result.metrics, nan_ok=True)
    other = registry.register(model, {"threshold": 0.99})
    registry.promote(other, actor="test", reason="second")
    high = evaluate_champion(registry, trained.parts, trained.spec)
    assert high.version == "v2"
    assert high.metrics["roc_auc"] == champion.metrics["roc_auc"]  # ranking ignores it
    assert high.metrics["positive_rate"] < champion.metrics["positive_rate"]
    assert not math.isnan(high.metrics["log_loss"])


def test_a_champion_without_metadata_is_an_error(tmp_path, trained):
    store = LocalStore(tmp_path / "store")
    registry = Registry(store, "churn")
    version = registry.register({"model.ubj": b"x"}, {})
    registry.promote(version, actor="test", reason="first")
    store.delete(keys.model_version("churn", version, "metadata.json"))
    with pytest.raises(VersionNotFoundError, match="v1"):
        evaluate_champion(registry, trained.parts, trained.spec)
