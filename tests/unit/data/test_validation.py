"""Validation on a few literal rows: exactly the bad rows are quarantined, with reasons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from components.core.problem import load_problem
from components.data.schema import EVENT_TIME_DTYPE
from components.data.validation import (
    EmptyDataError,
    QuarantineThresholdError,
    SchemaMismatchError,
    check_quarantine_threshold,
    validate_frame,
)

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)


def _row(i: int, **changes) -> dict:
    row = {
        "customer_id": f"C{i}",
        "event_time": "2026-01-02T10:00:00Z",
        "tenure_months": "5",
        "contract": "one-year",
        "plan": "basic",
        "monthly_charges": "50.5",
        "total_charges": "",
        "payment_method": "credit-card",
        "region": "north",
        "support_calls": "1",
        "usage_hours": "30",
        "tickets_open": "0",
        "discount_pct": "0",
        "churned": "0",
    }
    return {**row, **changes}


def _frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_clean_rows_pass_with_canonical_dtypes(spec):
    result = validate_frame(_frame(_row(1), _row(2, total_charges="99.9", churned="1")), spec)
    assert result.report.rows_quarantined == 0
    assert result.report.failures == []
    valid = result.valid
    assert list(valid.columns)[:2] == ["customer_id", "event_time"]
    assert valid["event_time"].dtype == EVENT_TIME_DTYPE
    assert str(valid["tenure_months"].dtype) == "Int64"
    assert valid["monthly_charges"].tolist() == [50.5, 50.5]
    assert valid["total_charges"].isna().tolist() == [True, False]  # empty field is null
    assert valid["churned"].tolist() == [0, 1]
    assert result.quarantined.empty


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tenure_months": "abc"}, "tenure_months: type: expected int ('abc')"),
        ({"tenure_months": "2.5"}, "tenure_months: type: expected int ('2.5')"),
        ({"tenure_months": "-3"}, "tenure_months: out of range [0.0, 120.0] (-3)"),
        ({"monthly_charges": "5000"}, "monthly_charges: out of range [0.0, 500.0] (5000.0)"),
        ({"monthly_charges": None}, "monthly_charges: null in a non-nullable column (null)"),
        ({"contract": "lifetime"}, "contract: not an allowed category ('lifetime')"),
        ({"churned": "2"}, "churned: not an allowed category (2)"),
        ({"event_time": "yesterday"}, "event_time: type: expected a timestamp ('yesterday')"),
        ({"customer_id": None}, "customer_id: null in a non-nullable column (null)"),
    ],
)
def test_each_failure_quarantines_exactly_that_row(spec, changes, reason):
    result = validate_frame(_frame(_row(0), _row(1, **changes), _row(2)), spec, source="s.csv")
    assert result.valid["customer_id"].tolist() == ["C0", "C2"]
    assert result.quarantined["_row"].tolist() == [1]
    assert result.quarantined["_reasons"].tolist() == [reason]
    assert result.report.rows_in == 3
    assert result.report.rows_quarantined == 1
    assert [f.count for f in result.report.failures] == [1]


def test_duplicate_ids_quarantine_every_copy(spec):
    frame = _frame(_row(1), _row(2), _row(1, plan="premium"))
    result = validate_frame(frame, spec)
    assert result.valid["customer_id"].tolist() == ["C2"]
    assert result.quarantined["_row"].tolist() == [0, 2]
    assert result.quarantined["_reasons"].tolist() == ["customer_id: duplicate id ('C1')"] * 2


def test_quarantined_rows_keep_their_original_values_and_all_reasons(spec):
    bad = _row(1, tenure_months="-1", region="mars", support_calls="many")
    result = validate_frame(_frame(_row(0), bad), spec)
    row = result.quarantined.iloc[0]
    assert row["tenure_months"] == "-1"
    assert row["region"] == "mars"
    assert row["_reasons"] == (
        "region: not an allowed category ('mars'); "
        "support_calls: type: expected int ('many'); "
        "tenure_months: out of range [0.0, 120.0] (-1)"
    )


def test_report_counts_each_check_with_examples(spec):
    rows = [_row(i) for i in range(10)]
    rows[3]["contract"] = "weekly"
    rows[5]["contract"] = "daily"
    rows[7]["usage_hours"] = "1000"
    result = validate_frame(_frame(*rows), spec, source="batch.csv")
    failures = {(f.column, f.check): (f.count, f.examples) for f in result.report.failures}
    assert failures == {
        ("contract", "not an allowed category"): (2, ["'weekly'", "'daily'"]),
        ("usage_hours", "out of range [0.0, 744.0]"): (1, ["1000.0"]),
    }
    assert result.report.quarantined_fraction == pytest.approx(0.3)
    markdown = result.report.to_markdown()
    assert "| contract | not an allowed category | 2 | `'weekly'`, `'daily'` |" in markdown
    assert "quarantined: **3** (30.00%)" in markdown


def test_missing_columns_are_named(spec):
    frame = _frame(_row(1)).drop(columns=["plan", "region"])
    with pytest.raises(SchemaMismatchError, match=r"in\.csv: missing columns: plan, region$"):
        validate_frame(frame, spec, source="in.csv")


def test_extra_columns_are_named(spec):
    frame = _frame(_row(1)).assign(notes="vip", score=3)
    with pytest.raises(SchemaMismatchError, match=r"unexpected columns: notes, score \(declare"):
        validate_frame(frame, spec, source="in.csv")


def test_extra_columns_can_be_ignored_and_are_reported(spec):
    lenient = spec.model_copy(
        update={"data_quality": spec.data_quality.model_copy(update={"extra_columns": "ignore"})}
    )
    result = validate_frame(_frame(_row(1)).assign(notes="vip"), lenient)
    assert result.report.ignored_columns == ["notes"]
    assert "notes" not in result.valid.columns


def test_typed_input_is_accepted_as_is(spec):
    frame = _frame(_row(1), _row(2))
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    for name in ("tenure_months", "support_calls", "tickets_open", "churned"):
        frame[name] = frame[name].astype("int64")
    for name in ("monthly_charges", "usage_hours", "discount_pct"):
        frame[name] = frame[name].astype("float64")
    frame["total_charges"] = float("nan")
    result = validate_frame(frame, spec)
    assert result.report.rows_quarantined == 0


def test_threshold_failure_names_the_limit_and_causes(spec):
    rows = [_row(i) for i in range(10)]
    rows[0]["region"] = "mars"
    result = validate_frame(_frame(*rows), spec, source="b.csv")
    with pytest.raises(QuarantineThresholdError) as info:
        check_quarantine_threshold(result.report, spec)
    message = str(info.value)
    assert "1 of 10 rows (10.00%) failed validation" in message
    assert "max_quarantined_fraction = 5.00%" in message
    assert "region: not an allowed category (1 rows)" in message


def test_threshold_passes_at_the_limit(spec):
    rows = [_row(i) for i in range(20)]
    rows[0]["region"] = "mars"
    result = validate_frame(_frame(*rows), spec)
    check_quarantine_threshold(result.report, spec)  # exactly 5%: allowed


def test_no_rows_is_an_error(spec):
    with pytest.raises(EmptyDataError, match=r"e\.csv: has the right columns but no rows"):
        validate_frame(_frame(_row(1)).iloc[:0], spec, source="e.csv")


def test_traffic_without_target_validates(spec):
    frame = _frame(_row(1)).drop(columns=["churned"])
    result = validate_frame(frame, spec, include_target=False)
    assert result.report.rows_valid == 1
