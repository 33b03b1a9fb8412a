"""One window monitored end to end on a local store: traffic captured as the service would,
the profile job, labels arriving, the checks, the verdict and the stored report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from components.capture.buffer import Capture, CaptureConfig
from components.capture.feedback import record_feedback
from components.core.store import ObjectExistsError
from components.data.datagen import GeneratorConfig, generate, true_churn_probability
from components.data.profiling import column_sketches, profile_frame
from components.monitoring.monitor import (
    References,
    assess_window,
    gather_window,
    report_history,
    store_report,
)
from components.monitoring.performance import estimated_metric
from components.monitoring.performance_checks import Baseline
from components.monitoring.profile_job import profile_captures

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def traffic():
    config = GeneratorConfig(
        rows=8 * 1_500, days=8, start=START.date(), scenario="covariate", drift_day=7, seed=5
    )
    frame = generate(config).frame
    frame["p"] = true_churn_probability(frame)
    return frame


@pytest.fixture(scope="module")
def references(traffic, spec):
    old = traffic[traffic["event_time"] < START + 6 * DAY]
    scores = column_sketches(profile_frame(pd.DataFrame({"probability": old["p"]})))
    return References(
        version="v1",
        features=column_sketches(profile_frame(old[spec.input_features])),
        scores=scores["probability"],
        baseline=Baseline(
            metrics={"roc_auc": roc_auc_score(old["churned"], old["p"])},
            threshold=0.5,
            estimated={"roc_auc": estimated_metric("roc_auc", old["p"].to_numpy())},
        ),
    )


def capture_day(store, spec, rows: pd.DataFrame, day: datetime) -> list[str]:
    capture = Capture(store, spec, worker_id="w1", config=CaptureConfig(flush_interval_s=60))
    ids = [f"{day:%m%d}-{i}" for i in range(len(rows))]
    records = rows[spec.input_features].to_dict("records")
    answers = [
        {"prediction_id": pid, "model_version": "v1", "probability": p, "label": int(p >= 0.5)}
        for pid, p in zip(ids, rows["p"], strict=True)
    ]
    for lo in range(0, len(rows), 100):
        capture.record(records[lo : lo + 100], answers[lo : lo + 100], received_at=day + DAY / 2)
    capture.flush()
    return ids


def test_a_price_rise_is_caught_and_a_quiet_day_is_not(traffic, references, spec, store):
    days = {
        d: traffic[traffic["event_time"].dt.floor("D") == d]
        for d in (START + 6 * DAY, START + 7 * DAY)
    }
    quiet, drifted = days
    ids = capture_day(store, spec, days[quiet], quiet)
    capture_day(store, spec, days[drifted], drifted)
    for pid, label in zip(ids, days[quiet]["churned"], strict=True):
        record_feedback(store, spec, pid, int(label))
    profile_captures(store, spec, window="1d")

    calm = assess_window(spec, references, gather_window(store, spec, quiet), now=quiet + DAY)
    assert calm.status == "ok", calm.reasons
    assert calm.rows == len(days[quiet]) and calm.unlabelled == 0
    assert set(calm.psi()) == set(spec.input_features)
    assert calm.performance["calibration"]["n"] == len(days[quiet])

    report = assess_window(spec, references, gather_window(store, spec, drifted), now=drifted + DAY)
    assert report.status == "alert"
    assert any(r.startswith("monthly_charges: PSI") for r in report.reasons)
    assert "drift-detected" in report.conditions
    assert report.unlabelled == len(days[drifted])
    assert report.served_versions == {"v1": len(days[drifted])}
    # The labelled window before it is still judged, and its metric is in the history.
    assert [h["labelled"] for h in report.performance["history"]] == [len(days[quiet])]

    store_report(store, calm)
    store_report(store, report)
    assert [r.window_start for r in report_history(store, spec.name)] == [quiet, drifted]
    with pytest.raises(ObjectExistsError):
        store_report(store, report)


def test_rejections_count_in_the_window(references, spec, store, traffic):
    day = START + 6 * DAY
    rows = traffic[traffic["event_time"].dt.floor("D") == day]
    capture = Capture(store, spec, worker_id="w2", config=CaptureConfig(flush_interval_s=60))
    for _ in range(4):  # four refused requests of 10 rows
        capture.record_rejection(10, [("usage_hours", "missing")], received_at=day + DAY / 2)
    capture.flush()
    capture_day(store, spec, rows, day)
    profile_captures(store, spec, window="1d")
    report = assess_window(spec, references, gather_window(store, spec, day), now=day + DAY)
    assert report.rejected == 40
    assert report.status == "alert"
    assert any(r.startswith("rejections: 40 of") for r in report.reasons)
    assert np.isclose(
        next(f for f in report.findings if f["check"] == "rejections")["value"],
        40 / (40 + len(rows)),
    )


def test_performance_is_judged_on_the_champions_own_predictions(traffic, spec, store):
    day = START + 6 * DAY
    rows = traffic[traffic["event_time"].dt.floor("D") == day]
    ids = capture_day(store, spec, rows, day)  # answered by v1
    for pid, label in zip(ids, rows["churned"], strict=True):
        record_feedback(store, spec, pid, int(label))
    assert gather_window(store, spec, day).labelled[0].y.size == len(rows)
    assert gather_window(store, spec, day, version="v1").labelled[0].y.size == len(rows)
    # A new champion: the labels of v1's predictions are not its performance.
    successor = gather_window(store, spec, day, version="v2")
    assert successor.labelled == [] and len(successor.scores) == len(rows)
