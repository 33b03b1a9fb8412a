"""The generator's data-quality incident, run through validation: every corruption kind is
caught, and exactly the corrupted rows are quarantined, each with the matching reason."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from components.core.problem import load_problem
from components.data import datagen
from components.data.validation import validate_frame

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
REASON_FOR_KIND = {
    "null": "null in a non-nullable column",
    "out_of_range": "out of range",
    "unit_change": "out of range",
    "unseen_category": "not an allowed category",
}


@pytest.fixture(scope="module")
def outcome():
    spec = load_problem(CHURN)
    config = datagen.GeneratorConfig(
        rows=20_000,
        days=30,
        start=date(2026, 1, 1),
        seed=7,
        scenario="quality",
        drift_day=10,
        quality_fraction=0.05,
    )
    generated = datagen.generate(config)
    frame = generated.frame.drop(columns=["label_time"])
    return generated.corruptions, validate_frame(frame, spec)


def test_exactly_the_corrupted_rows_are_quarantined(outcome):
    corruptions, result = outcome
    assert set(corruptions["kind"]) == set(REASON_FOR_KIND)
    assert sorted(result.quarantined["customer_id"]) == sorted(corruptions["customer_id"])
    assert result.report.rows_valid + result.report.rows_quarantined == 20_000


@pytest.mark.parametrize("kind", sorted(REASON_FOR_KIND))
def test_each_kind_gets_its_reason_on_its_column(outcome, kind):
    corruptions, result = outcome
    reasons = result.quarantined.set_index("customer_id")["_reasons"]
    cells = corruptions[corruptions["kind"] == kind]
    assert len(cells) > 0
    for customer, column in zip(cells["customer_id"], cells["column"], strict=True):
        assert reasons[customer].startswith(f"{column}: {REASON_FOR_KIND[kind]}"), (
            customer,
            reasons[customer],
        )
