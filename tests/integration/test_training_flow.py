"""The training flow for real under a temporary Prefect server: a first model becomes
champion, a second run on the same snapshot ties and is rejected by the gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.core.store import LocalStore
from components.data.snapshot import NoSnapshotError
from components.model.registry import Registry
from flows.data_prep import DataPrepParams, GeneratedInput, data_prep
from flows.training import TrainingParams, train

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training") / "store"
    data_prep(
        DataPrepParams(
            problem=CHURN, store=str(folder), generated=GeneratedInput(rows=30_000, days=90, seed=8)
        )
    )
    return folder


def _params(store_dir, **changes) -> TrainingParams:
    defaults = {
        "problem": CHURN,
        "store": str(store_dir),
        "trials": 4,
        "cv_folds": 2,
        "concurrency": 2,
        "seed": 3,
    }
    return TrainingParams(**{**defaults, **changes})


@pytest.fixture(scope="module")
def first(store_dir):
    return train(_params(store_dir))


def test_first_model_clears_the_floors_and_becomes_champion(first, store_dir):
    assert first.gate_passed
    assert first.promoted
    assert first.champion_before is None
    assert first.metrics["roc_auc"] >= 0.75
    registry = Registry(LocalStore(store_dir), "churn")
    assert registry.alias("champion") == first.version
    registry.verify(first.version)
    meta = registry.metadata(first.version)
    assert meta["snapshot_id"] == first.snapshot_id
    assert meta["cv"]["folds"] == 2
    assert 0 < meta["threshold"] < 1
    assert meta["metrics"]["roc_auc"] > meta["baseline"]["roc_auc"]
    assert set(meta["split"]) == {"train", "validation", "test"}
    assert "xgboost" in meta["packages"]
    names = set(meta["files"])
    assert {
        "model.ubj",
        "model_card.md",
        "model_card.html",
        "reference_profile.bin",
        "problem.json",
        "plots/roc.png",
        "plots/feature_importance.png",
    } <= names
    card = registry.read_file(first.version, "model_card.html").decode()
    assert f"churn, version {first.version} (champion)" in card
    assert "pending" not in card
    assert "https://" not in card


def test_second_run_on_the_same_snapshot_ties_and_is_rejected(first, store_dir):
    second = train(_params(store_dir))
    assert not second.gate_passed
    assert not second.promoted
    assert second.champion_before == first.version
    assert any("tie" in r for r in second.gate_reasons)
    registry = Registry(LocalStore(store_dir), "churn")
    assert registry.alias("champion") == first.version
    statuses = {v.version: v.status for v in registry.versions()}
    assert statuses[second.version] == "rejected"
    # Same snapshot, parameters and seed: the very same model bytes.
    assert registry.read_file(second.version, "model.ubj") == registry.read_file(
        first.version, "model.ubj"
    )


def test_no_snapshot_is_a_clear_error(tmp_path):
    where = r"empty/snapshots/churn: no snapshot for problem 'churn' yet"
    with pytest.raises(NoSnapshotError, match=where + ".*run `mlops data prep` first"):
        train(_params(tmp_path / "empty"))
