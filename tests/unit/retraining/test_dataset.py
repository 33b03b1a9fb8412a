"""The retraining snapshot: production labels joined, validated, held out and merged, with
its lineage in the manifest."""

from __future__ import annotations

import io
from datetime import timedelta

import pandas as pd
import pytest
from retraining_cases import Timeline

from components.core.store import LocalStore
from components.data.snapshot import read_holdout, read_manifest, read_snapshot
from components.data.validation import QuarantineThresholdError
from components.retraining.dataset import build_snapshot

pytestmark = pytest.mark.slow  # trains a champion and serves days of traffic


@pytest.fixture(scope="module")
def timeline(tmp_path_factory, spec):
    """Shared by the module's tests: each writes only snapshots of its own (content ids)."""
    store = LocalStore(tmp_path_factory.mktemp("timeline") / "store")
    timeline = Timeline(store, spec, rows_per_day=400, history_days=20, days=6, label_delay=2)
    timeline.champion = timeline.train_champion()
    for index in range(6):
        timeline.serve_day(index)
        timeline.now = timeline.day(index + 1)
        timeline.record_labels(timeline.now)
    return timeline


def _parent(timeline):
    return timeline.registry().metadata(timeline.champion)["snapshot_id"]


def test_the_manifest_records_where_every_row_came_from(timeline, spec):
    store = timeline.store
    parent = _parent(timeline)
    data = build_snapshot(store, spec, parent, as_of=timeline.now)
    manifest = read_manifest(store, spec.name, data.manifest.snapshot_id)
    lineage = manifest.lineage
    assert lineage["parent_snapshot"] == parent
    rows = lineage["rows"]
    reference = read_snapshot(store, spec.name, parent)
    assert rows["reference"] == len(reference)
    # Labels arrive 2 days after the event: days 0-3 are labelled by the end of day 5.
    labelled = timeline.frame[
        (timeline.frame["event_time"] >= timeline.day(0))
        & (timeline.frame["label_time"] <= timeline.now)
    ]
    assert lineage["feedback"]["labelled"] == len(labelled)
    assert rows["production"] + rows["held_out"] + rows["quarantined"] == len(labelled)
    assert manifest.rows == rows["reference"] + rows["production"]
    assert lineage["captures"]["models"] == [timeline.champion]
    assert lineage["feedback"]["unlabelled"] > 0  # the newest days wait for their labels
    # The newest labelled windows are held out, until they hold enough rows, stored with the
    # snapshot and never trained on.
    held = read_holdout(store, spec.name, manifest.snapshot_id)
    assert len(held) == rows["held_out"] >= spec.retraining.training_data.holdout_min_rows
    windows = lineage["holdout"]["windows"]
    assert windows[-1] == timeline.day(3).isoformat()  # the last day whose labels are in
    trained = read_snapshot(store, spec.name, manifest.snapshot_id)
    assert not set(held[spec.id_column]) & set(trained[spec.id_column])
    assert trained[spec.event_time_column].max() < pd.Timestamp(windows[0])
    assert lineage["captures"]["windows"][-1] < windows[0]


def test_the_same_inputs_give_the_same_snapshot(timeline, spec):
    store = timeline.store
    first = build_snapshot(store, spec, _parent(timeline), as_of=timeline.now)
    again = build_snapshot(store, spec, _parent(timeline), as_of=timeline.now)
    assert first.manifest.snapshot_id == again.manifest.snapshot_id


def test_production_rows_failing_the_schema_are_quarantined_with_reasons(timeline, spec):
    store = timeline.store
    # The problem file tightened since the rows were served: charges above 100 now fail.
    doc = spec.model_dump()
    doc["features"]["monthly_charges"]["max"] = 100
    doc["data_quality"]["max_quarantined_fraction"] = 1.0
    tightened = type(spec).model_validate(doc)
    data = build_snapshot(store, tightened, _parent(timeline), as_of=timeline.now)
    manifest = data.manifest
    assert manifest.lineage["rows"]["quarantined"] == manifest.quarantined_rows > 0
    rows = pd.read_parquet(io.BytesIO(store.get_bytes(manifest.quarantine_key)))
    assert rows["_reasons"].str.contains("monthly_charges").all()
    assert rows["prediction_id"].notna().all()


def test_too_many_bad_production_rows_refuse_the_snapshot(timeline, spec):
    store = timeline.store
    doc = spec.model_dump()
    doc["features"]["monthly_charges"]["max"] = 60
    tightened = type(spec).model_validate(doc)
    with pytest.raises(QuarantineThresholdError, match="max_quarantined_fraction"):
        build_snapshot(store, tightened, _parent(timeline), as_of=timeline.now)


def test_a_sliding_window_keeps_the_most_recent_days(timeline, spec):
    store = timeline.store
    doc = spec.model_dump()
    doc["retraining"]["training_data"]["window_days"] = 10
    windowed = type(spec).model_validate(doc)
    data = build_snapshot(store, windowed, _parent(timeline), as_of=timeline.now)
    trained = read_snapshot(store, spec.name, data.manifest.snapshot_id)
    assert trained[spec.event_time_column].min() >= timeline.now - timedelta(days=10)
    assert data.manifest.lineage["rows"]["outside_window"] > 0


def test_no_labels_yet_means_the_reference_rows_only(store, spec):
    timeline = Timeline(store, spec, rows_per_day=300, history_days=20, days=2, label_delay=2)
    champion = timeline.train_champion()
    parent = timeline.registry().metadata(champion)["snapshot_id"]
    data = build_snapshot(store, spec, parent, as_of=timeline.now)
    assert data.holdout.empty and data.holdout_windows == []
    assert data.manifest.lineage["rows"]["production"] == 0


def test_the_policy_reads_the_champions_windows_runs_and_new_labels(timeline, spec):
    from components.capture.feedback import read_feedback
    from components.retraining import history

    store = timeline.store
    reports = [timeline.monitor_day(i) for i in (0, 1)]
    later = history.record_run(store, spec.name, timeline.day(4), "b", {"reasons": ["x"]})
    history.record_run(store, spec.name, timeline.day(2), "a", {"reasons": ["y"]})
    history.finish_run(store, later, {"outcome": "kept"})
    inputs = history.policy_inputs(store, timeline.registry(), spec, timeline.champion)
    assert [s.start for s in inputs.signals] == [r.window_start for r in reports]
    assert inputs.retrainings == [timeline.day(2), timeline.day(4)]
    assert store.get_json(later)["outcome"] == "kept"
    # The labels observed after the later of the champion's data (day 0) and the last run.
    observed = read_feedback(store, spec.name)["observed_at"]
    assert inputs.new_labelled_rows == (observed > timeline.day(4)).sum() > 0
    assert inputs.trained_at == timeline.day(0)
