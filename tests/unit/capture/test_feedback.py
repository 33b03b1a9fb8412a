"""Feedback labels: written once per prediction, conflicts refused, read back."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from capture_cases import (
    Clock,
)

from components.capture.buffer import Capture
from components.capture.feedback import FeedbackConflictError, read_feedback


def test_feedback_is_written_once_and_read_back(spec, store):
    clock = Clock(datetime(2024, 6, 1, 9, tzinfo=UTC))
    capture = Capture(store, spec, worker_id="w1", clock=clock)
    assert capture.record_feedback("a", 1) is True
    assert capture.record_feedback("a", 1) is False  # idempotent
    assert capture.record_feedback("a", True) is False  # the same label, spelled differently
    later = datetime(2024, 6, 2, tzinfo=UTC)
    assert capture.record_feedback("b", 0, observed_at=later) is True
    with pytest.raises(FeedbackConflictError, match="already has label 1") as err:
        capture.record_feedback("a", 0)
    assert (err.value.prediction_id, err.value.stored, err.value.given) == ("a", 1, 0)
    assert store.get_json("feedback/churn/a.json") == {
        "prediction_id": "a",
        "label": 1,
        "observed_at": "2024-06-01T09:00:00+00:00",
    }
    frame = read_feedback(store, "churn")
    assert frame["prediction_id"].tolist() == ["a", "b"]
    assert frame["label"].tolist() == [1, 0]
    assert frame["observed_at"].tolist() == [pd.Timestamp(clock.now), pd.Timestamp(later)]


def test_feedback_refuses_bad_ids_and_labels(spec, store):
    capture = Capture(store, spec, worker_id="w1")
    for bad_id in ("", "../x", "a/b", ".tmp-x"):
        with pytest.raises(ValueError, match="invalid prediction id"):
            capture.record_feedback(bad_id, 1)
    for bad_label in (2, 0.5, float("nan"), "1"):
        with pytest.raises(ValueError, match="invalid label"):
            capture.record_feedback("a", bad_label)
    assert read_feedback(store, "churn").empty
    assert list(read_feedback(store, "churn").columns) == ["prediction_id", "label", "observed_at"]
