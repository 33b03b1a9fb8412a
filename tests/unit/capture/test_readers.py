"""Reading captured rows back, by time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from capture_cases import (
    T0,
    Clock,
    record_n,
)

from components.capture.buffer import Capture
from components.capture.readers import read_captures


def test_read_captures_filters_by_time(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    for hour, prefix in [(9, "a"), (10, "b"), (11, "c")]:
        record_n(capture, 2, prefix, received_at=datetime(2024, 5, 1, hour, 30, tzinfo=UTC))
    capture.flush()
    start, end = datetime(2024, 5, 1, 10, 30, tzinfo=UTC), datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
    frame = read_captures(store, "churn", start=start, end=end)  # end is exclusive
    assert frame["prediction_id"].tolist() == ["b0", "b1"]
    assert read_captures(store, "churn", start=end)["prediction_id"].tolist() == ["c0", "c1"]
    assert len(read_captures(store, "churn", end=start)) == 2
    assert read_captures(store, "churn", start=datetime(2030, 1, 1, tzinfo=UTC)).empty
    assert read_captures(store, "other").empty


def test_read_captures_sorts_by_captured_at(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    record_n(capture, 1, "late", received_at=T0 + timedelta(minutes=5))
    record_n(capture, 1, "early", received_at=T0)
    capture.flush()
    assert read_captures(store, "churn")["prediction_id"].tolist() == ["early0", "late0"]
