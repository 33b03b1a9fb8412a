"""Snapshots: content-addressed ids, create-only objects, manifest last, LATEST pointer."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from components.core.problem import load_problem
from components.core.store import LocalStore
from components.data.snapshot import (
    NoSnapshotError,
    content_id,
    download_snapshot,
    latest_snapshot_id,
    read_manifest,
    read_snapshot,
    write_quarantine,
    write_snapshot,
)
from components.data.validation import validate_frame

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)


def _raw(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "event_time": [f"2026-01-{1 + i % 28:02d}T08:00:00Z" for i in range(n)],
            "tenure_months": [str(i % 70) for i in range(n)],
            "contract": ["one-year", "month-to-month"] * (n // 2),
            "plan": ["basic"] * n,
            "monthly_charges": [f"{20 + i % 50}.25" for i in range(n)],
            "total_charges": [None] * n,
            "payment_method": ["credit-card"] * n,
            "region": ["north", "south"] * (n // 2),
            "support_calls": [str(i % 4) for i in range(n)],
            "usage_hours": ["12.5"] * n,
            "tickets_open": ["0"] * n,
            "discount_pct": ["5"] * n,
            "churned": [str(i % 2) for i in range(n)],
        }
    )


def _write(store, spec, valid, source="in.csv"):
    return write_snapshot(
        store,
        spec,
        valid,
        source=source,
        profile=b"profile",
        quarantined_rows=0,
        quarantine_key=None,
        validation_key=None,
        now=NOW,
    )


def test_content_id_ignores_index_but_not_values_order_or_types():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert content_id(frame) == content_id(frame.set_axis([7, 8, 9]))
    assert content_id(frame) != content_id(frame.iloc[::-1])
    assert content_id(frame) != content_id(frame.assign(a=[1, 2, 4]))
    assert content_id(frame) != content_id(frame.astype({"a": "float64"}))
    assert content_id(frame) != content_id(frame[["b", "a"]])
    assert content_id(frame, 1) != content_id(frame, 2)
    assert len(content_id(frame)) == 16


def test_same_data_from_csv_and_parquet_gives_the_same_snapshot_id(spec, tmp_path):
    raw = _raw(10)
    raw.to_csv(tmp_path / "a.csv", index=False)
    from_csv = validate_frame(pd.read_csv(tmp_path / "a.csv", dtype=str), spec).valid
    typed = raw.assign(
        event_time=pd.to_datetime(raw["event_time"]),
        tenure_months=raw["tenure_months"].astype(int),
        monthly_charges=raw["monthly_charges"].astype(float),
        churned=raw["churned"].astype(int),
    )
    from_typed = validate_frame(typed, spec).valid
    assert content_id(from_csv) == content_id(from_typed)


def test_snapshot_layout_manifest_and_pointer(spec, tmp_path):
    store = LocalStore(tmp_path)
    valid = validate_frame(_raw(10), spec).valid
    manifest = _write(store, spec, valid)
    prefix = f"snapshots/churn/{manifest.snapshot_id}"
    assert store.list(prefix) == [
        f"{prefix}/data.parquet",
        f"{prefix}/manifest.json",
        f"{prefix}/profile.bin",
    ]
    assert manifest.rows == 10
    assert manifest.source == "in.csv"
    assert manifest.columns["tenure_months"] == "Int64"
    assert manifest.event_time_min == "2026-01-01T08:00:00+00:00"
    assert manifest.event_time_max == "2026-01-10T08:00:00+00:00"
    assert manifest.data_sha256 == hashlib.sha256(store.get_bytes(manifest.data_key)).hexdigest()
    assert latest_snapshot_id(store, "churn") == manifest.snapshot_id
    assert read_manifest(store, "churn", manifest.snapshot_id) == manifest
    pd.testing.assert_frame_equal(read_snapshot(store, "churn", manifest.snapshot_id), valid)


def test_writing_the_same_snapshot_twice_is_a_no_op(spec, tmp_path):
    store = LocalStore(tmp_path)
    valid = validate_frame(_raw(10), spec).valid
    first = _write(store, spec, valid)
    before = {k: store.get_bytes(k) for k in store.list("snapshots/churn/" + first.snapshot_id)}
    second = _write(store, spec, valid.copy(), source="elsewhere.parquet")
    assert second == first  # the manifest already stored wins; nothing is rewritten
    after = {k: store.get_bytes(k) for k in store.list("snapshots/churn/" + first.snapshot_id)}
    assert after == before


def test_latest_follows_the_newest_snapshot(spec, tmp_path):
    store = LocalStore(tmp_path)
    one = _write(store, spec, validate_frame(_raw(10), spec).valid)
    two = _write(store, spec, validate_frame(_raw(12), spec).valid)
    assert one.snapshot_id != two.snapshot_id
    assert latest_snapshot_id(store, "churn") == two.snapshot_id


def test_no_snapshot_yet(tmp_path):
    assert latest_snapshot_id(LocalStore(tmp_path), "churn") is None


def test_tampered_data_is_refused(spec, tmp_path):
    store = LocalStore(tmp_path)
    manifest = _write(store, spec, validate_frame(_raw(10), spec).valid)
    (tmp_path / manifest.data_key).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_snapshot(store, "churn", manifest.snapshot_id)


def test_a_downloaded_snapshot_is_verified(spec, tmp_path):
    store = LocalStore(tmp_path / "store")
    valid = validate_frame(_raw(10), spec).valid
    manifest = _write(store, spec, valid)
    path = download_snapshot(store, "churn", manifest.snapshot_id, tmp_path / "got.parquet")
    assert path == tmp_path / "got.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), valid)

    (tmp_path / "store" / manifest.data_key).write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"checksum mismatch.*the snapshot is corrupt"):
        download_snapshot(store, "churn", manifest.snapshot_id, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()
    with pytest.raises(NoSnapshotError, match="no snapshot 'absent' for problem 'churn'"):
        download_snapshot(store, "churn", "absent", tmp_path / "none.parquet")


def test_quarantine_rows_and_report_are_stored(spec, tmp_path):
    store = LocalStore(tmp_path)
    raw = _raw(10)
    raw.loc[3, "region"] = "mars"
    result = validate_frame(raw, spec)
    report_key, rows_key = write_quarantine(
        store, spec, "abc", result.quarantined, result.report.to_dict()
    )
    assert report_key == "quarantine/churn/abc/report.json"
    assert rows_key == "quarantine/churn/abc/rows.parquet"
    stored = pd.read_parquet(tmp_path / rows_key)
    assert stored["customer_id"].tolist() == ["C3"]
    assert stored["_reasons"].tolist() == ["region: not an allowed category ('mars')"]
    report = json.loads(store.get_bytes(report_key))
    assert report["rows_quarantined"] == 1


def test_clean_input_stores_only_the_report(spec, tmp_path):
    store = LocalStore(tmp_path)
    result = validate_frame(_raw(4), spec)
    assert (
        write_quarantine(store, spec, "x", result.quarantined, result.report.to_dict())[1] is None
    )
    assert store.list("quarantine") == ["quarantine/churn/x/report.json"]
