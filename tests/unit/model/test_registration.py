"""Registering a candidate: the card's status rules, the files and the metadata written,
and a missing reference profile failing before anything is reserved."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import pytest

from components.core.problem import ProblemSpec
from components.core.store import KeyNotFoundError, LocalStore
from components.data.profiling import column_sketches
from components.model import training
from components.model.assessment import ChampionEvaluation, evaluate_candidate
from components.model.gate import Decision
from components.model.registration import (
    INTENDED_USE,
    LIMITATIONS,
    Candidate,
    Registered,
    build_registration,
    card_status,
    register_version,
    split_times,
)
from components.model.registry import Registry

PROFILE = b"profile"
NOW = datetime(2026, 2, 2, 9, 30, tzinfo=UTC)
PASSED = Decision(True, ["pass: floors", "pass: no champion yet"], [])
FAILED = Decision(False, ["FAIL: roc_auc below floor", "pass: no champion yet"], ["below floor"])
CV = {"metric": "roc_auc", "mean": 0.8, "std": 0.01, "folds": 2, "scores": [0.79, 0.81]}
PLOTS = {
    "plots/roc.png",
    "plots/precision_recall.png",
    "plots/calibration.png",
    "plots/confusion_matrix.png",
    "plots/feature_importance.png",
}
METADATA_KEYS = {
    "snapshot_id",
    "split",
    "split_times",
    "params",
    "xgboost_params",
    "best_iteration",
    "threshold",
    "metrics",
    "estimated_metrics",
    "baseline",
    "champion",
    "cv",
    "slices",
    "feature_importance",
    "features",
    "gate",
    "code_version",
    "packages",
    "trials",
    "evaluated_on",
    "shadow",
}


@pytest.fixture(scope="module")
def candidate(trained) -> Candidate:
    return Candidate(
        snapshot_id="snap",
        parts=trained.parts,
        model=trained.model,
        params=trained.params,
        seed=7,
        trials=3,
        cv=CV,
        evaluation=evaluate_candidate(trained.parts, trained.spec, trained.model),
        champion=None,
    )


@pytest.fixture(scope="module")
def built(trained, candidate):
    return build_registration(
        trained.spec, candidate, PASSED, profile=PROFILE, promote=True, now=NOW
    )


@pytest.mark.parametrize(
    ("decision", "promote", "status"),
    [
        (PASSED, True, "champion"),
        (PASSED, False, "challenger"),
        (FAILED, True, "rejected"),
        (FAILED, False, "rejected"),
    ],
)
def test_card_status(decision, promote, status):
    assert card_status(decision, promote) == status


def test_files_are_model_problem_profiles_and_plots(built, trained):
    expected = {"model.ubj", "problem.json", "reference_profile.bin", "score_profile.bin"}
    assert set(built.files) == expected | PLOTS
    assert built.files["reference_profile.bin"] == PROFILE
    assert built.files["model.ubj"] == training.model_bytes(trained.model.booster)
    assert ProblemSpec.model_validate_json(built.files["problem.json"]) == trained.spec
    assert {f"plots/{name}" for name in built.figures} == PLOTS


def test_the_estimate_baseline_is_near_the_realised_test_figure(built):
    # A model about calibrated: the estimate from its test scores alone is near the figure.
    estimated = built.metadata["estimated_metrics"]["roc_auc"]
    assert abs(estimated - built.metadata["metrics"]["roc_auc"]) < 0.05


def test_the_score_reference_profiles_validation_and_test_scores(built, trained, candidate):
    (scores,) = column_sketches(built.files["score_profile.bin"]).values()
    rows = len(trained.parts.validation) + len(trained.parts.test)
    assert scores.numbers == rows and scores.nulls == 0
    test_scores = candidate.evaluation.test_scores
    assert 0 <= scores.min <= test_scores.min() and test_scores.max() <= scores.max <= 1


def test_metadata_records_how_the_model_was_made(built, candidate, trained):
    meta = built.metadata
    assert set(meta) == METADATA_KEYS
    assert meta["snapshot_id"] == "snap"
    assert meta["split"] == trained.parts.sizes
    assert meta["params"] == trained.params.model_dump()
    assert meta["xgboost_params"]["seed"] == 7
    assert meta["best_iteration"] == trained.model.best_iteration
    assert meta["threshold"] == candidate.evaluation.threshold
    assert meta["metrics"] == candidate.evaluation.metrics
    assert meta["baseline"] == candidate.evaluation.baseline
    assert meta["slices"] == candidate.evaluation.slices
    assert meta["champion"] == {"version": None, "metrics": None}
    assert meta["cv"] == CV
    assert meta["features"] == trained.spec.input_features
    assert set(meta["feature_importance"]) <= set(trained.spec.input_features)
    assert meta["gate"] == {"passed": True, "reasons": PASSED.reasons}
    assert meta["code_version"] == built.card.code_version
    assert "xgboost" in meta["packages"]
    assert meta["trials"] == 3
    json.dumps(meta)  # the registry stores it as JSON


def test_card_shows_the_candidate_and_waits_for_its_version(built, candidate, trained):
    card = built.card
    assert (card.version, card.status, card.created_at) == ("pending", "champion", NOW.isoformat())
    assert card.problem == "churn"
    assert card.primary_metric == "roc_auc"
    assert card.rows == trained.parts.sizes
    best_iteration = trained.model.best_iteration
    assert card.params == {
        **trained.params.model_dump(),
        "best_iteration": best_iteration,
        "seed": 7,
    }
    assert card.cv == {"metric": "roc_auc", "mean": 0.8, "std": 0.01, "folds": 2}
    assert card.metrics == candidate.evaluation.metrics
    assert card.champion is None
    assert (card.gate_passed, card.gate_reasons) == (True, PASSED.reasons)
    assert (card.intended_use, card.limitations) == (INTENDED_USE, LIMITATIONS)


def test_split_times_are_each_parts_first_and_last_event_time(trained):
    spec = trained.spec
    times = pd.to_datetime(
        ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"], utc=True
    )
    frame = pd.DataFrame({spec.event_time_column: times})
    parts = training.Split(train=frame.iloc[:2], validation=frame.iloc[2:3], test=frame.iloc[3:])
    assert split_times(parts, spec) == {
        "train": ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"],
        "validation": ["2026-01-03T00:00:00+00:00", "2026-01-03T00:00:00+00:00"],
        "test": ["2026-01-04T00:00:00+00:00", "2026-01-05T00:00:00+00:00"],
    }


def _register(store, trained, candidate, decision, promote=True) -> Registered:
    registry = Registry(store, "churn")
    return register_version(
        registry, store, trained.spec, candidate, decision, promote=promote, clock=lambda: NOW
    )


def test_register_writes_a_version_whose_card_names_it(snapshot, trained, candidate):
    store, snapshot_id = snapshot.store, snapshot.snapshot_id
    mine = replace(candidate, snapshot_id=snapshot_id)
    registered = _register(store, trained, mine, PASSED)
    assert registered.version == "v1"
    assert (registered.card.version, registered.card.status) == ("v1", "champion")
    registry = Registry(store, "churn")
    registry.verify("v1")
    meta = registry.metadata("v1")
    assert set(meta) == METADATA_KEYS | {
        "version",
        "problem",
        "created_at",
        "status_at_registration",
        "files",
    }
    assert meta["status_at_registration"] == "registered"
    assert meta["snapshot_id"] == snapshot_id
    assert meta["split_times"] == split_times(trained.parts, trained.spec)
    assert set(meta["files"]) == {
        "model.ubj",
        "problem.json",
        "reference_profile.bin",
        "score_profile.bin",
        "model_card.md",
        "model_card.html",
        *PLOTS,
    }
    assert registry.read_file("v1", "reference_profile.bin") == snapshot.profile
    html = registry.read_file("v1", "model_card.html").decode()
    assert "churn, version v1 (champion)" in html
    assert "pending" not in html
    markdown = registry.read_file("v1", "model_card.md").decode()
    assert "](plots/roc.png)" in markdown
    assert registry.alias("champion") is None  # promoting is the caller's step


def test_a_failed_gate_registers_a_rejected_version(snapshot, trained, candidate):
    store, snapshot_id = snapshot.store, snapshot.snapshot_id
    champion = ChampionEvaluation(version="v0", metrics={"roc_auc": 0.9})
    mine = replace(candidate, snapshot_id=snapshot_id, champion=champion)
    registered = _register(store, trained, mine, FAILED)
    assert registered.card.status == "rejected"
    assert registered.card.champion == {"roc_auc": 0.9}
    registry = Registry(store, "churn")
    (info,) = registry.versions()
    assert (info.status, info.reason) == ("rejected", "below floor")
    meta = registry.metadata(registered.version)
    assert meta["champion"] == {"version": "v0", "metrics": {"roc_auc": 0.9}}
    assert meta["gate"] == {"passed": False, "reasons": FAILED.reasons}
    card = registry.read_file(registered.version, "model_card.md").decode()
    assert "(rejected)" in card


def test_passing_without_promotion_is_a_challenger_card(snapshot, trained, candidate):
    store, snapshot_id = snapshot.store, snapshot.snapshot_id
    mine = replace(candidate, snapshot_id=snapshot_id)
    registered = _register(store, trained, mine, PASSED, promote=False)
    assert registered.card.status == "challenger"
    assert Registry(store, "churn").versions()[0].status == "registered"


def test_a_missing_reference_profile_registers_nothing(tmp_path, trained, candidate):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(KeyNotFoundError, match=r"profile\.bin"):
        _register(store, trained, candidate, PASSED)
    assert Registry(store, "churn").versions() == []
