"""The feedback join, the held-out window and the merge with the reference rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from components.retraining.production import hold_out, join_labels, merge_rows

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def captured(ids, *, versions=None, hours=None, customer=None, event=None) -> pd.DataFrame:
    n = len(ids)
    hours = hours if hours is not None else list(range(n))
    frame = pd.DataFrame(
        {
            "prediction_id": ids,
            "captured_at": [T0 + timedelta(hours=h) for h in hours],
            "model_version": versions or ["v1"] * n,
            "customer_id": customer if customer is not None else [f"c{i}" for i in range(n)],
            "event_time": event if event is not None else [T0 + timedelta(hours=h) for h in hours],
            "tenure_months": [12] * n,
            "contract": pd.Categorical(["one-year"] * n),
            "probability": [0.3] * n,
            "label": [0] * n,  # the model's answer, not the observed label
        }
    )
    return frame


def feedback(pairs, *, observed_hours=None) -> pd.DataFrame:
    hours = observed_hours or [100] * len(pairs)
    return pd.DataFrame(
        {
            "prediction_id": [p for p, _ in pairs],
            "label": [y for _, y in pairs],
            "observed_at": [T0 + timedelta(hours=h) for h in hours],
        }
    )


AS_OF = T0 + timedelta(hours=200)


def test_labels_join_whatever_model_version_issued_the_id(spec):
    rows = captured(["a", "b", "c"], versions=["v1", "v1", "v2"])
    joined = join_labels(rows, feedback([("a", 1), ("c", 0)]), spec, as_of=AS_OF)
    assert list(joined.rows["prediction_id"]) == ["a", "c"]
    assert list(joined.rows["model_version"]) == ["v1", "v2"]
    # The observed label, not the model's answer captured under the same name.
    assert list(joined.rows[spec.target]) == [1, 0]
    assert joined.counts["unlabelled"] == 1


def test_duplicate_captures_and_feedback_count_once(spec):
    rows = captured(["a", "a", "b"], hours=[0, 5, 1])
    labels = feedback([("a", 1), ("a", 1), ("b", 0)], observed_hours=[50, 60, 50])
    joined = join_labels(rows, labels, spec, as_of=AS_OF)
    assert len(joined.rows) == 2
    assert joined.duplicate_captures == 1
    # The first capture of "a" is the one kept.
    assert joined.rows.set_index("prediction_id").loc["a", "captured_at"] == T0


def test_late_labels_wait_for_the_next_retraining(spec):
    rows = captured(["a", "b"])
    labels = feedback([("a", 1), ("b", 0)], observed_hours=[10, 300])
    joined = join_labels(rows, labels, spec, as_of=AS_OF)
    assert list(joined.rows["prediction_id"]) == ["a"]
    assert (joined.late_labels, joined.unlabelled) == (1, 1)
    later = join_labels(rows, labels, spec, as_of=T0 + timedelta(hours=400))
    assert len(later.rows) == 2 and later.late_labels == 0


def test_ids_without_labels_and_labels_without_captures_are_counted(spec):
    joined = join_labels(captured(["a", "b"]), feedback([("a", 0), ("zz", 1)]), spec, as_of=AS_OF)
    assert joined.counts == {
        "captured": 2,
        "labelled": 1,
        "duplicate_captures": 0,
        "unlabelled": 1,
        "late_labels": 0,
        "orphan_labels": 1,
    }


def test_missing_request_id_and_time_fall_back_to_the_prediction(spec):
    rows = captured(["a"], customer=[None], event=[None])
    joined = join_labels(rows, feedback([("a", 1)]), spec, as_of=AS_OF)
    assert joined.rows.loc[0, spec.id_column] == "a"
    assert joined.rows.loc[0, spec.event_time_column] == pd.Timestamp(T0)


def test_categories_come_back_as_values(spec):
    joined = join_labels(captured(["a"]), feedback([("a", 1)]), spec, as_of=AS_OF)
    assert joined.rows["contract"].dtype == object
    assert joined.rows.loc[0, "contract"] == "one-year"


def test_no_capture_no_row(spec):
    empty = captured([])
    joined = join_labels(empty, feedback([("a", 1)]), spec, as_of=AS_OF)
    assert joined.rows.empty and joined.orphan_labels == 1


def _days(counts) -> pd.DataFrame:
    """Joined-like rows: counts[i] rows captured on day i."""
    stamps = [T0 + timedelta(days=d, minutes=k) for d, n in enumerate(counts) for k in range(n)]
    return pd.DataFrame({"captured_at": pd.to_datetime(stamps, utc=True), "x": range(len(stamps))})


def test_the_newest_windows_are_held_out_until_they_hold_enough_rows():
    rows = _days([50, 40, 30, 20])
    held = hold_out(rows, timedelta(days=1), 45)
    assert [w.day for w in held.windows] == [3, 4]
    assert len(held.rows) == 50 and len(held.remaining) == 90
    assert held.remaining["captured_at"].max() < held.rows["captured_at"].min()


def test_one_window_is_enough_when_it_holds_enough():
    held = hold_out(_days([50, 40, 30, 20]), timedelta(days=1), 20)
    assert [w.day for w in held.windows] == [4] and len(held.rows) == 20


@pytest.mark.parametrize("min_rows", [141, 1000])
def test_too_few_labelled_rows_hold_nothing_out(min_rows):
    held = hold_out(_days([50, 40, 30, 20]), timedelta(days=1), min_rows)
    assert held.rows.empty and held.windows == [] and len(held.remaining) == 140


def _rows(ids, days) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "event_time": [T0 + timedelta(days=d) for d in days],
            "churned": [0] * len(ids),
        }
    )


def test_merge_keeps_the_reference_row_of_an_id_seen_twice(spec):
    reference = _rows(["r1", "r2", "p1"], [0, 1, 2])
    production = _rows(["p1", "p2"], [2, 3]).assign(extra=1)
    merged = merge_rows(reference, production, spec, window_days=None, as_of=T0 + timedelta(days=4))
    assert list(merged.frame["customer_id"]) == ["r1", "r2", "p1", "p2"]
    assert list(merged.frame.columns) == list(reference.columns)
    assert merged.counts == {
        "reference": 3,
        "production": 1,
        "overlapping": 1,
        "outside_window": 0,
    }


def test_merge_keeps_the_most_recent_days(spec):
    reference = _rows(["r1", "r2", "r3"], [0, 5, 8])
    production = _rows(["p1", "p2"], [9, 1])
    merged = merge_rows(reference, production, spec, window_days=3, as_of=T0 + timedelta(days=10))
    assert list(merged.frame["customer_id"]) == ["r3", "p1"]
    assert merged.counts["outside_window"] == 3
    assert (merged.counts["reference"], merged.counts["production"]) == (1, 1)
