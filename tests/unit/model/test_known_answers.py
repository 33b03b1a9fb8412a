"""Known answers: request records typed as the problem declares, None for missing values,
and the registry model's own predictions on them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.core.problem import parse_problem
from components.model import training
from components.model.known_answers import KnownAnswers, known_answers, request_record
from components.model.registry import Registry, VersionNotFoundError


@pytest.fixture(scope="module")
def with_bool(trained):
    raw = trained.spec.model_dump(exclude_none=True)
    raw["features"]["autopay"] = {"type": "bool", "nullable": True}
    return parse_problem(raw)


def _row(**values) -> pd.Series:
    base = {
        "tenure_months": np.int64(7),
        "contract": "one-year",
        "plan": "basic",
        "monthly_charges": np.float64(20.5),
        "total_charges": np.float64(143.5),
        "payment_method": "credit-card",
        "region": "north",
        "support_calls": 2.0,  # an int feature that arrived as a float
        "usage_hours": np.float32(3.25),
        "tickets_open": np.int64(0),
        "discount_pct": 5,
        "autopay": np.True_,
        "churned": 1,
    }
    return pd.Series({**base, **values}, dtype=object)


def test_a_record_holds_plain_values_of_the_declared_types(with_bool):
    record = request_record(_row(), with_bool)
    assert list(record) == with_bool.input_features
    assert record == {
        "tenure_months": 7,
        "contract": "one-year",
        "plan": "basic",
        "monthly_charges": 20.5,
        "total_charges": 143.5,
        "payment_method": "credit-card",
        "region": "north",
        "support_calls": 2,
        "usage_hours": 3.25,
        "tickets_open": 0,
        "discount_pct": 5.0,
        "autopay": True,
    }
    expected_types = {"int": int, "float": float, "category": str, "bool": bool}
    for name, value in record.items():
        assert type(value) is expected_types[with_bool.features[name].type], name


@pytest.mark.parametrize("missing", [None, math.nan, np.nan, pd.NA, pd.NaT])
def test_missing_values_become_none(with_bool, missing):
    row = _row(total_charges=missing, autopay=missing, contract=missing)
    record = request_record(row, with_bool)
    assert (record["total_charges"], record["autopay"], record["contract"]) == (None,) * 3


def test_known_answers_are_the_registry_models_predictions(snapshot, trained):
    registry = Registry(snapshot.store, "churn")
    model = {"model.ubj": training.model_bytes(trained.model.booster)}
    version = registry.register(model, {"snapshot_id": snapshot.snapshot_id})
    answers = known_answers(snapshot.store, registry, trained.spec, version, rows=25)
    assert isinstance(answers, KnownAnswers)
    assert len(answers.records) == 25
    assert answers.expected.shape == (25,)
    assert all(list(record) == trained.spec.input_features for record in answers.records)
    again = training.predict(trained.model.booster, pd.DataFrame(answers.records), trained.spec)
    np.testing.assert_allclose(answers.expected, again, rtol=0, atol=1e-6)
    same = known_answers(snapshot.store, registry, trained.spec, version, rows=25)
    assert same.records == answers.records  # a seeded sample


def test_asking_for_more_rows_than_the_snapshot_has_gives_them_all(snapshot, trained):
    registry = Registry(snapshot.store, "churn")
    model = {"model.ubj": training.model_bytes(trained.model.booster)}
    version = registry.register(model, {"snapshot_id": snapshot.snapshot_id})
    answers = known_answers(snapshot.store, registry, trained.spec, version, rows=10**6)
    assert len(answers.records) == len(trained.rows)


def test_an_unknown_version_is_an_error(snapshot, trained):
    registry = Registry(snapshot.store, "churn")
    with pytest.raises(VersionNotFoundError, match="v9 of problem 'churn'"):
        known_answers(snapshot.store, registry, trained.spec, "v9", rows=5)
