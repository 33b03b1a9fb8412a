"""The challenger's split and refit, and the shadow check on the champion's traffic."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from components.data import datagen
from components.data.validation import validate_frame
from components.model import training
from components.model.gate import Decision
from components.retraining import challenger, shadow

PARAMS = training.TrainParams(num_boost_round=40)


@pytest.fixture(scope="module")
def rows(spec) -> pd.DataFrame:
    config = datagen.GeneratorConfig(rows=4000, days=30, start=date(2026, 1, 1), seed=8)
    return validate_frame(datagen.generate(config).frame.drop(columns=["label_time"]), spec).valid


def _with(spec, **retraining):
    doc = spec.model_dump()
    for key, value in retraining.items():
        doc["retraining"][key] = {**doc["retraining"][key], **value}
    return type(spec).model_validate(doc)


def test_the_held_out_rows_are_the_test_rows(rows, spec):
    spec = _with(spec, training_data={"recency_half_life_days": None})
    frame, holdout = rows.iloc[:3000], rows.iloc[3000:]
    parts = challenger.retraining_split(
        frame, holdout, spec, as_of=pd.Timestamp("2026-02-01", tz="UTC")
    )
    assert parts.test[spec.id_column].tolist() == holdout[spec.id_column].tolist()
    assert len(parts.train) + len(parts.validation) == len(frame)
    assert (
        parts.train[spec.event_time_column].max() < parts.validation[spec.event_time_column].min()
    )
    assert parts.weighting is None and parts.train_weights() is None


def test_without_a_holdout_the_newest_rows_are_the_test_rows(rows, spec):
    parts = challenger.retraining_split(
        rows, rows.iloc[:0], spec, as_of=pd.Timestamp("2026-02-01", tz="UTC")
    )
    assert (
        parts.test[spec.event_time_column].min() >= parts.validation[spec.event_time_column].max()
    )
    assert "newest" in challenger.evaluated_on(parts, spec, [])


def test_recent_rows_weigh_more(rows, spec):
    weighted = _with(spec, training_data={"recency_half_life_days": 7})
    as_of = rows[spec.event_time_column].max()
    parts = challenger.retraining_split(rows, rows.iloc[:0], weighted, as_of=as_of)
    weights = parts.train_weights()
    age = (as_of - parts.train[spec.event_time_column]) / pd.Timedelta(days=1)
    np.testing.assert_allclose(weights, 0.5 ** (age.to_numpy() / 7))
    summary = challenger.weight_summary(parts)
    assert summary["effective_rows"] < summary["rows"]


def test_the_refit_trains_on_the_validation_rows_too(rows, spec):
    parts = challenger.retraining_split(
        rows.iloc[:3000], rows.iloc[3000:], spec, as_of=pd.Timestamp("2026-02-01", tz="UTC")
    )
    early = training.train_model(parts.train, parts.validation, spec, PARAMS, seed=1)
    final = challenger.refit(parts, spec, PARAMS, early, seed=1)
    assert final.best_iteration == early.best_iteration
    assert final.booster.num_boosted_rounds() == early.best_iteration + 1
    # Not the same model: the validation rows were trained on.
    on_validation = training.predict(final.booster, parts.validation, spec)
    assert not np.allclose(on_validation, training.predict(early.booster, parts.validation, spec))
    # Deterministic, like every training here.
    again = challenger.refit(parts, spec, PARAMS, early, seed=1)
    np.testing.assert_array_equal(
        on_validation, training.predict(again.booster, parts.validation, spec)
    )


@pytest.fixture(scope="module")
def booster(rows, spec):
    parts = training.split_by_time(rows, spec)
    return training.train_model(parts.train, parts.validation, spec, PARAMS, seed=1).booster


def _traffic(rows, spec, booster, *, version="v1", threshold=0.3):
    """What production captured: the rows answered by ``version`` with these scores."""
    scores = training.predict(booster, rows, spec)
    return rows.assign(
        model_version=version, probability=scores, label=(scores >= threshold).astype(int)
    )


def test_the_same_model_changes_nothing(rows, spec, booster):
    report = shadow.shadow_compare(spec, _traffic(rows, spec, booster), "v1", booster, 0.3)
    assert report.rows == len(rows)
    assert report.changed_labels == 0 and abs(report.mean_shift) < 1e-6
    assert report.passed
    assert all(r.startswith("pass: shadow") for r in report.to_dict()["reasons"])


def test_changed_answers_are_measured_and_may_block(rows, spec, booster):
    traffic = _traffic(rows, spec, booster)
    # Production answered with higher scores and a lower threshold than the challenger.
    traffic = traffic.assign(probability=traffic["probability"] + 0.1, label=1)
    strict = _with(spec, shadow={"max_changed_labels": 0.05, "max_mean_shift": 0.05})
    report = shadow.shadow_compare(strict, traffic, "v1", booster, 0.3)
    expected = float(np.mean(training.predict(booster, rows, spec) < 0.3))
    assert report.changed_labels == pytest.approx(expected)
    assert report.mean_shift == pytest.approx(-0.1, abs=1e-6)
    assert not report.passed
    failures = [text for ok, text in report.checks if not ok]
    assert len(failures) == 2 and "at most 5.00%" in failures[0]
    # Without limits the figures are reported and nothing blocks.
    free = _with(spec, shadow={"max_changed_labels": None, "max_mean_shift": None})
    assert shadow.shadow_compare(free, traffic, "v1", booster, 0.3).passed


def test_only_the_champions_answers_are_compared(rows, spec, booster):
    traffic = _traffic(rows, spec, booster, version="v0")
    report = shadow.shadow_compare(spec, traffic, "v1", booster, 0.3)
    assert report.rows == 0 and report.passed
    assert "no captured traffic" in report.to_dict()["reasons"][0]


def test_the_shadow_check_joins_the_gate(rows, spec, booster):
    traffic = _traffic(rows, spec, booster).assign(label=1)
    strict = _with(spec, shadow={"max_changed_labels": 0.01})
    report = shadow.shadow_compare(strict, traffic, "v1", booster, 0.3)
    passed = Decision(True, ["pass: floors"], [])
    combined = shadow.with_shadow(passed, report)
    assert not combined.passed
    assert combined.reasons[0] == "pass: floors" and len(combined.reasons) == 3
    assert combined.failures == [text for ok, text in report.checks if not ok]
    failed = Decision(False, ["FAIL: floors"], ["floors"])
    assert not shadow.with_shadow(
        failed, shadow.shadow_compare(spec, traffic, "v1", booster, 0.3)
    ).passed


def test_a_window_without_captures_has_nothing_to_shadow(spec, booster):
    empty = pd.DataFrame({"prediction_id": [], "captured_at": [], "model_version": []})
    report = shadow.shadow_compare(spec, empty, "v1", booster, 0.3)
    assert report.rows == 0 and report.passed
