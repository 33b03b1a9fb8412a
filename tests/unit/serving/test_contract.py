"""The request contract and the NumPy scoring path shared by the service and batch scoring."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from components.core.problem import load_problem
from components.data import datagen
from components.data.validation import validate_frame
from components.model import training
from components.serving.contract import Predictor, RequestError, Validator, record_model

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
GOOD = {
    "tenure_months": 5,
    "contract": "one-year",
    "plan": "basic",
    "monthly_charges": 50,
    "total_charges": None,
    "payment_method": "credit-card",
    "region": "north",
    "support_calls": 1,
    "usage_hours": 30.5,
    "tickets_open": 0,
    "discount_pct": 0,
}


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)


@pytest.fixture(scope="module")
def validator(spec):
    return Validator(spec, max_records=3)


def _body(*records) -> bytes:
    return json.dumps({"records": list(records)}).encode()


def _error(validator, body: bytes) -> RequestError:
    with pytest.raises(RequestError) as info:
        validator.parse(body)
    return info.value


def test_a_good_record_validates(validator):
    (record,) = validator.parse(_body(GOOD))
    assert record.tenure_months == 5
    assert record.monthly_charges == 50.0
    assert record.total_charges is None
    assert record.customer_id is None


def test_record_model_is_generated_from_the_spec(spec):
    fields = record_model(spec).model_fields
    assert set(fields) == {"customer_id", "event_time", *spec.input_features}
    assert fields["total_charges"].is_required() is False  # nullable
    assert fields["tenure_months"].is_required()


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"tenure_months": "5"}, "tenure_months", "int_type"),
        ({"tenure_months": 5.5}, "tenure_months", "int_type"),
        ({"tenure_months": True}, "tenure_months", "int_type"),
        ({"tenure_months": -1}, "tenure_months", "greater_than_equal"),
        ({"monthly_charges": 5000}, "monthly_charges", "less_than_equal"),
        ({"contract": "lifetime"}, "contract", "literal_error"),
        ({"plan": None}, "plan", "literal_error"),
        ({"colour": "red"}, "colour", "extra_forbidden"),
    ],
)
def test_each_bad_field_is_a_422_naming_it(validator, change, field, kind):
    error = _error(validator, _body(GOOD, {**GOOD, **change}))
    assert error.status == 422
    assert {"field": field, "type": kind, "record": 1} in [
        {k: d[k] for k in ("field", "type", "record")} for d in error.detail
    ]


def test_a_missing_field_is_a_422(validator):
    record = {k: v for k, v in GOOD.items() if k != "region"}
    error = _error(validator, _body(record))
    assert error.status == 422
    assert error.detail[0]["field"] == "region"
    assert error.detail[0]["message"] == "Field required"


def test_nan_is_refused(validator):
    body = _body(GOOD).replace(b'"usage_hours": 30.5', b'"usage_hours": NaN')
    error = _error(validator, body)
    assert error.status in (400, 422)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"records": [', 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b'{"records": []}', 422, "records is empty"),
        (b"[]", 422, "invalid field"),
        (b'{"rows": []}', 422, "invalid field"),
    ],
)
def test_request_level_mistakes(validator, body, status, message):
    error = _error(validator, body)
    assert error.status == status
    assert message in error.message


def test_too_many_records_is_413(validator):
    error = _error(validator, _body(GOOD, GOOD, GOOD, GOOD))
    assert error.status == 413
    assert "the limit is 3" in error.message


def test_unknown_categories_can_be_accepted_and_flagged(spec):
    flagging = Validator(spec, flag_unknown=True)
    (record,) = flagging.parse(_body({**GOOD, "region": "atlantis"}))
    assert record.region == "atlantis"


@pytest.fixture(scope="module")
def model_and_rows(spec):
    config = datagen.GeneratorConfig(rows=6000, days=60, start=date(2026, 1, 1), seed=4)
    frame = validate_frame(datagen.generate(config).frame.drop(columns=["label_time"]), spec).valid
    parts = training.split_by_time(frame, spec)
    model = training.train_model(
        parts.train, parts.validation, spec, training.TrainParams(num_boost_round=40), seed=1
    )
    return model.booster, parts.test.head(300)


def test_predictor_matches_the_pandas_path_exactly(spec, model_and_rows):
    booster, rows = model_and_rows
    records = record_model(spec).model_validate
    validated = [
        records(
            {
                k: (None if v is None or v != v else v)
                for k, v in row.items()
                if k in spec.input_features
            }
        )
        for row in rows[spec.input_features].astype(object).to_dict("records")
    ]
    predictor = Predictor(spec, booster, version="v1", threshold=0.3)
    np.testing.assert_array_equal(
        predictor.scores(validated), training.predict(booster, rows, spec)
    )
    answers = predictor.predict(validated[:5])
    assert [a["label"] for a in answers] == [int(a["probability"] >= 0.3) for a in answers]
    assert {a["model_version"] for a in answers} == {"v1"}
    assert len({a["prediction_id"] for a in answers}) == 5


def test_unknown_category_is_flagged_and_scored_as_missing(spec, model_and_rows):
    booster, _ = model_and_rows
    flagging = Validator(spec, flag_unknown=True)
    records = flagging.parse(_body({**GOOD, "region": "atlantis"}, GOOD))
    answers = Predictor(spec, booster, version="v1", threshold=0.5).predict(records)
    assert answers[0]["flags"] == {"unknown_categories": ["region"]}
    assert "flags" not in answers[1]


def test_categories_are_indexed_by_the_codes_of_the_matrix(spec, model_and_rows):
    booster, _ = model_and_rows
    predictor = Predictor(spec, booster, version="v1", threshold=0.5)
    other = {**GOOD, "region": spec.features["region"].categories[-1]}
    records = Validator(spec).parse(_body(GOOD, other))
    matrix = predictor.matrix(records)
    for j, name in enumerate(spec.input_features):
        if spec.features[name].is_categorical:
            categories = predictor.categories(name)
            decoded = [categories[int(code)] for code in matrix[:, j]]
            assert decoded == [r.__dict__[name] for r in records], name
