"""Training: time splits, the feature matrix, determinism and the model's behaviour."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.problem import load_problem
from components.data import datagen
from components.data.validation import validate_frame
from components.model import tuning
from components.model.evaluation import metrics_for
from components.model.training import (
    SplitError,
    TrainParams,
    cross_validate,
    feature_importance,
    features,
    load_model,
    model_bytes,
    predict,
    split_by_time,
    target,
    train_model,
    xgb_params,
)

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
FAST = TrainParams(num_boost_round=60, early_stopping_rounds=10, learning_rate=0.2)


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)


@pytest.fixture(scope="module")
def data(spec):
    config = datagen.GeneratorConfig(rows=12_000, days=60, start=date(2026, 1, 1), seed=3)
    frame = datagen.generate(config).frame.drop(columns=["label_time"])
    return validate_frame(frame, spec).valid


@pytest.fixture(scope="module")
def parts(data, spec):
    return split_by_time(data, spec)


def test_split_is_ordered_in_time_and_loses_no_row(parts, data, spec):
    t = spec.event_time_column
    assert parts.train[t].max() < parts.validation[t].min()
    assert parts.validation[t].max() < parts.test[t].min()
    assert sum(parts.sizes.values()) == len(data)
    assert parts.sizes["train"] == pytest.approx(0.70 * len(data), abs=50)
    ids = pd.concat([parts.train, parts.validation, parts.test])[spec.id_column]
    assert ids.is_unique


def test_split_keeps_equal_times_together(spec):
    times = pd.to_datetime(["2026-01-01"] * 6 + ["2026-01-02"] * 2 + ["2026-01-03"] * 2, utc=True)
    frame = pd.DataFrame({spec.event_time_column: times, "x": range(10)})
    parts = split_by_time(frame, spec, validation=0.2, test=0.2)
    assert parts.sizes == {"train": 6, "validation": 2, "test": 2}


def test_split_without_enough_distinct_times_is_an_error(spec):
    frame = pd.DataFrame({spec.event_time_column: pd.to_datetime(["2026-01-01"] * 5, utc=True)})
    with pytest.raises(SplitError, match="left no rows in train, validation"):
        split_by_time(frame, spec)


def test_features_use_the_specs_categories_and_floats(data, spec):
    matrix = features(data.head(5), spec)
    assert list(matrix.columns) == spec.input_features
    assert list(matrix["contract"].cat.categories) == spec.features["contract"].categories
    assert matrix["tenure_months"].dtype == "float64"
    assert target(data.head(5), spec).dtype == np.float64


def test_unseen_category_becomes_missing_not_a_new_code(spec, data):
    row = data.head(1).copy()
    row["region"] = "atlantis"
    assert features(row, spec)["region"].isna().all()


def test_xgb_params_follow_the_problem(spec):
    params = xgb_params(spec, TrainParams(), seed=1, nthread=2)
    assert params["objective"] == "binary:logistic"
    assert params["tree_method"] == "hist"
    monotone = [0] * len(spec.input_features)
    monotone[spec.input_features.index("support_calls")] = 1
    assert params["monotone_constraints"] == "(" + ",".join(map(str, monotone)) + ")"


def test_same_data_params_and_seed_give_a_byte_identical_model(parts, spec):
    one = train_model(parts.train, parts.validation, spec, FAST, seed=5, nthread=1)
    two = train_model(parts.train, parts.validation, spec, FAST, seed=5, nthread=2)
    other = train_model(parts.train, parts.validation, spec, FAST, seed=6, nthread=1)
    assert model_bytes(one.booster) == model_bytes(two.booster)
    assert model_bytes(one.booster) != model_bytes(other.booster)


def test_model_round_trips_through_ubjson(parts, spec):
    model = train_model(parts.train, parts.validation, spec, FAST, seed=5)
    data = model_bytes(model.booster)
    assert data[:1] == b"{"  # UBJSON object, not a pickle
    again = load_model(data)
    np.testing.assert_array_equal(
        predict(again, parts.test, spec), predict(model.booster, parts.test, spec)
    )
    assert again.num_boosted_rounds() == model.best_iteration + 1


@pytest.fixture(scope="module")
def model(parts, spec):
    return train_model(parts.train, parts.validation, spec, TrainParams(), seed=1).booster


def test_model_learns_the_signal(model, parts, spec):
    scores = predict(model, parts.test, spec)
    assert metrics_for(spec, target(parts.test, spec), scores, 0.5)["roc_auc"] > 0.78


def test_more_support_calls_never_lower_the_churn_probability(model, parts, spec):
    # The generating process says support calls raise churn; the problem declares it
    # monotone, so the model must agree for every customer, at every count.
    sample = parts.test.head(200)
    grid = np.arange(0, 51)
    rows = sample.loc[sample.index.repeat(len(grid))].reset_index(drop=True)
    rows["support_calls"] = np.tile(grid, len(sample))
    scores = predict(model, rows, spec).reshape(len(sample), len(grid))
    assert (np.diff(scores, axis=1) >= 0).all()
    assert (scores[:, -1] > scores[:, 0]).mean() > 0.9


def test_two_year_contracts_churn_less_than_monthly(model, parts, spec):
    sample = parts.test.head(500)
    monthly = predict(model, sample.assign(contract="month-to-month"), spec)
    two_year = predict(model, sample.assign(contract="two-year"), spec)
    assert two_year.mean() < monthly.mean()


def test_feature_importance_covers_every_input(model, spec):
    importance = feature_importance(model, spec)
    assert list(importance) == spec.input_features
    assert max(importance, key=importance.get) in {"contract", "tenure_months", "support_calls"}


def test_cross_validation_reports_mean_and_spread(parts, spec):
    cv = cross_validate(parts.train, spec, FAST, rounds=30, folds=3, seed=2)
    assert cv["metric"] == "roc_auc"
    assert cv["folds"] == 3
    assert len(cv["scores"]) == 3
    assert 0.7 < cv["mean"] < 1.0
    assert cv["std"] == pytest.approx(np.std(cv["scores"]))


def test_tuning_is_seeded_and_scores_on_validation(parts, spec):
    def search(seed):
        study = tuning.make_study(spec, seed, startup_trials=2)
        results = []
        for _ in range(3):
            trial = study.ask()
            params = tuning.suggest_params(trial, FAST)
            result = tuning.run_trial(
                trial.number, parts.train, parts.validation, spec, params, seed=seed, nthread=1
            )
            study.tell(trial, result.score)
            results.append(result)
        return study, results

    study, results = search(9)
    again, _ = search(9)
    assert study.best_params == again.best_params
    best = tuning.best_params(study, FAST)
    assert best.learning_rate == study.best_params["learning_rate"]
    assert best.num_boost_round == FAST.num_boost_round  # outside the search space: kept
    assert study.best_value == max(r.score for r in results)
