"""Rejection counts: every refused row is counted exactly once, by minute and reason, written
with the capture's flushes (retried through store outages, flushed on close), and read back
summed per monitoring window."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from capture_cases import FAST, T0, Clock, FlakyStore, in_threads, record_n, wait_until

from components.capture.buffer import Capture, CaptureConfig
from components.capture.readers import read_captures
from components.capture.rejections import (
    ALL,
    BODY,
    OTHER,
    RejectionCounter,
    WindowRejections,
    read_rejections,
    rejections_by_window,
)
from components.core import keys


def rejection_keys(store) -> list[str]:
    return store.list("rejections/churn/")


def lines(frame: pd.DataFrame) -> list[tuple]:
    """(minute as HH:MM, field, check, rows) of each line of read_rejections' frame."""
    return [
        (m.strftime("%H:%M"), f, c, r)
        for m, f, c, r in frame[["minute", "field", "check", "rows"]].itertuples(index=False)
    ]


def totals(frame: pd.DataFrame) -> int:
    return int(frame.loc[(frame["field"] == ALL) & (frame["check"] == ALL), "rows"].sum())


def test_counts_are_kept_by_minute_field_and_check(spec, store):
    clock = Clock()
    capture = Capture(store, spec, worker_id="w1", clock=clock)
    # A request of 3 records refused with 422: two records had a bad tenure, one no region.
    tenure = ("tenure_months", "int_type")
    capture.record_rejection(3, [tenure, ("region", "missing"), tenure])
    clock.now = T0 + timedelta(seconds=59)  # the same minute
    capture.record_rejection(1, [(BODY, "json_invalid")])
    capture.record_rejection(
        2, [("region", "literal_error")], received_at=T0 + timedelta(minutes=1)
    )
    assert store.list() == []  # recording does no I/O
    assert capture.rejections.unwritten_rows == 6
    assert capture.flush() == 0  # no capture rows; the counts are written all the same
    assert capture.rejections.unwritten_rows == 0

    frame = read_rejections(store, "churn")
    assert list(frame.columns) == ["minute", "field", "check", "rows"]
    assert str(frame["minute"].dt.tz) == "UTC"
    assert lines(frame) == [
        ("10:15", ALL, ALL, 4),
        ("10:15", BODY, "json_invalid", 1),
        ("10:15", "region", "missing", 1),
        ("10:15", "tenure_months", "int_type", 2),
        ("10:16", ALL, ALL, 2),
        ("10:16", "region", "literal_error", 1),
    ]
    [key] = rejection_keys(store)  # one object for the worker's flush of this hour
    assert key.startswith("rejections/churn/date=2024-05-01/hour=10/w1-000001-")
    assert key.endswith(".json")


def test_the_stored_object_is_small_self_describing_json(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    capture.record_rejection(2, [("region", "missing")])
    capture.flush()
    [key] = rejection_keys(store)
    assert json.loads(store.get_bytes(key)) == {
        "format": 1,
        "problem": "churn",
        "worker": "w1",
        "hour": "2024-05-01T10:00:00+00:00",
        "counts": [
            {"minute": "2024-05-01T10:15:00+00:00", "field": ALL, "check": ALL, "rows": 2},
            {
                "minute": "2024-05-01T10:15:00+00:00",
                "field": "region",
                "check": "missing",
                "rows": 1,
            },
        ],
    }


def test_each_hour_is_an_object_of_its_own_partition(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    capture.record_rejection(1, [], received_at=datetime(2024, 5, 1, 10, 59, 59, tzinfo=UTC))
    capture.record_rejection(1, [], received_at=datetime(2024, 5, 1, 11, 0, tzinfo=UTC))
    capture.flush()
    folders = [k.rsplit("/", 1)[0] for k in rejection_keys(store)]
    assert folders == [
        "rejections/churn/date=2024-05-01/hour=10",
        "rejections/churn/date=2024-05-01/hour=11",
    ]


def test_totals_are_exact_across_flushes_and_threads(spec, store):
    config = CaptureConfig(flush_interval_s=0.005)
    capture = Capture(store, spec, worker_id="w1", config=config)
    capture.start()

    def client(t: int) -> None:
        for i in range(200):
            capture.record_rejection(1 + i % 3, [("region", "missing")] * (1 + i % 2))
            if i % 50 == 0:
                capture.flush()  # explicit flushes race with the thread's

    in_threads(client, 8)
    capture.close()
    assert len(rejection_keys(store)) > 1  # several flushes wrote
    frame = read_rejections(store, "churn")
    per_client_rows = sum(1 + i % 3 for i in range(200))
    per_client_reasons = sum(1 + i % 2 for i in range(200))
    assert totals(frame) == 8 * per_client_rows
    reasons = frame[frame["field"] == "region"]["rows"].sum()
    assert reasons == 8 * per_client_reasons


def test_close_flushes_every_count_and_then_refuses_more(spec, store):
    # As on SIGTERM: the interval is long, so only close() can have written the counts.
    capture = Capture(store, spec, worker_id="w1", config=CaptureConfig(flush_interval_s=60))
    capture.start()
    record_n(capture, 4)
    capture.record_rejection(5, [("tenure_months", "missing")])
    capture.record_rejection(1, [(BODY, "too_large")])
    capture.close()
    assert capture.rejections.unwritten_rows == 0
    assert totals(read_rejections(store, "churn")) == 6
    assert len(read_captures(store, "churn")) == 4
    with pytest.raises(RuntimeError, match="closed"):
        capture.record_rejection(1, [])
    assert totals(read_rejections(store, "churn")) == 6


def test_the_thread_flushes_the_counts_on_its_interval(spec, store):
    capture = Capture(store, spec, worker_id="w1", config=FAST, clock=Clock())
    capture.start()
    try:
        capture.record_rejection(2, [("region", "missing")])
        wait_until(lambda: capture.rejections.unwritten_rows == 0)
        assert totals(read_rejections(store, "churn")) == 2
    finally:
        capture.close()


def test_two_workers_write_separate_objects_that_the_reader_sums(spec, store):
    one = Capture(store, spec, worker_id="w1", clock=Clock())
    two = Capture(store, spec, worker_id="w2", clock=Clock())
    one.record_rejection(3, [("region", "missing")])
    two.record_rejection(2, [("region", "missing"), ("plan", "literal_error")])
    one.flush()
    two.flush()
    names = [k.rsplit("/", 1)[1] for k in rejection_keys(store)]
    assert [n.split("-")[0] for n in names] == ["w1", "w2"]
    assert lines(read_rejections(store, "churn")) == [
        ("10:15", ALL, ALL, 5),
        ("10:15", "plan", "literal_error", 1),
        ("10:15", "region", "missing", 2),
    ]


def test_a_store_outage_loses_and_duplicates_no_count(spec, tmp_path, caplog):
    store = FlakyStore(tmp_path / "store", fail_calls={1, 2})
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    capture.record_rejection(3, [("region", "missing")])
    with caplog.at_level(logging.WARNING, logger="components.capture.rejections"):
        capture.flush()
        # Counted during the outage: kept in memory, not merged into the object in retry.
        capture.record_rejection(2, [("plan", "literal_error")])
        capture.flush()
    assert "simulated failure of write 2" in caplog.text
    assert capture.rejections.unwritten_rows == 5
    assert rejection_keys(store) == []
    capture.flush()  # the kept object, then the counts taken since
    assert capture.rejections.unwritten_rows == 0
    assert len(rejection_keys(store)) == 2
    assert lines(read_rejections(store, "churn")) == [
        ("10:15", ALL, ALL, 5),
        ("10:15", "plan", "literal_error", 1),
        ("10:15", "region", "missing", 1),
    ]


def test_an_ambiguous_failure_is_not_counted_twice(spec, tmp_path):
    # The write succeeded but its answer was lost: the retry finds the same bytes, done.
    store = FlakyStore(tmp_path / "store", fail_calls={1}, after=True)
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    capture.record_rejection(3, [("region", "missing")])
    capture.flush()
    capture.flush()
    assert len(rejection_keys(store)) == 1
    assert totals(read_rejections(store, "churn")) == 3


def test_an_outage_does_not_hold_back_the_captured_rows(spec, tmp_path):
    # Write 1 (the counts) fails; the chunk after it is written in the same flush.
    store = FlakyStore(tmp_path / "store", fail_calls={1})
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    capture.record_rejection(1, [(BODY, "json_invalid")])
    record_n(capture, 2)
    assert capture._flush() == (2, False)  # not everything was written: close would retry
    assert capture._flush() == (0, True)
    assert totals(read_rejections(store, "churn")) == 1


def test_close_retries_a_failing_store_for_the_counts(spec, tmp_path):
    store = FlakyStore(tmp_path / "store", fail_calls={1, 2})
    config = CaptureConfig(flush_interval_s=0.01, close_timeout_s=2)
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock())
    capture.record_rejection(4, [])
    capture.close()
    assert totals(read_rejections(store, "churn")) == 4


def test_client_named_fields_cannot_grow_memory_without_bound(store):
    counter = RejectionCounter("churn", "w1", max_reasons=3)
    for i in range(10):
        counter.record(1, [(f"unknown{i}" + "x" * 200, "extra_forbidden")], T0)
    counter.flush(store)
    frame = read_rejections(store, "churn")
    assert totals(frame) == 10
    reasons = frame[frame["field"] != ALL]
    assert reasons["field"].str.len().max() <= 100
    assert reasons.set_index("field")["rows"].to_dict() == {
        "unknown0" + "x" * 92: 1,
        "unknown1" + "x" * 92: 1,
        OTHER: 8,
    }


def test_a_refusal_counts_at_least_one_row_and_not_the_total(store):
    counter = RejectionCounter("churn", "w1")
    for rows in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="at least one row"):
            counter.record(rows, [], T0)
    with pytest.raises(ValueError, match="is the total"):
        counter.record(1, [(ALL, ALL)], T0)
    assert counter.unwritten_rows == 0


def test_read_rejections_filters_by_minute(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    for hour, rows in [(9, 1), (10, 2), (11, 3)]:
        at = datetime(2024, 5, 1, hour, 30, tzinfo=UTC)
        capture.record_rejection(rows, [("region", "missing")], received_at=at)
    capture.flush()
    start, end = datetime(2024, 5, 1, 10, 30, tzinfo=UTC), datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
    assert totals(read_rejections(store, "churn", since=start, until=end)) == 2  # until excluded
    assert totals(read_rejections(store, "churn", since=end)) == 3
    assert totals(read_rejections(store, "churn", until=start)) == 1
    empty = read_rejections(store, "churn", since=datetime(2030, 1, 1, tzinfo=UTC))
    assert empty.empty and list(empty.columns) == ["minute", "field", "check", "rows"]
    assert read_rejections(store, "other").empty


def test_a_newer_format_is_refused_with_its_key(store):
    key = keys.rejection_counts("churn", T0, "w9-000001-abcdef12")
    store.put_json(key, {"format": 2, "counts": []})
    with pytest.raises(ValueError, match=r"w9-000001-abcdef12\.json: rejection counts of format 2"):
        read_rejections(store, "churn")


def test_rejections_are_summed_per_monitoring_window(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    at = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    capture.record_rejection(3, [("region", "missing")], received_at=at + timedelta(minutes=1))
    capture.record_rejection(1, [(BODY, "json_invalid")], received_at=at + timedelta(minutes=14))
    capture.record_rejection(
        2,
        [("region", "missing"), ("region", "missing"), ("plan", "literal_error")],
        received_at=at + timedelta(minutes=16),
    )
    capture.flush()
    frame = read_rejections(store, "churn")

    quarter = rejections_by_window(frame, "15m")
    assert quarter == [
        WindowRejections(at, 4, {(BODY, "json_invalid"): 1, ("region", "missing"): 1}),
        WindowRejections(
            at + timedelta(minutes=15),
            2,
            {("region", "missing"): 2, ("plan", "literal_error"): 1},  # most first
        ),
    ]
    [hour] = rejections_by_window(frame, timedelta(hours=1))
    assert (hour.start, hour.rows) == (at, 6)
    assert hour.reasons == {
        ("region", "missing"): 3,
        (BODY, "json_invalid"): 1,
        ("plan", "literal_error"): 1,
    }
    assert hour.rate(answered=94) == pytest.approx(0.06)  # 6 of 100 rows received
    assert WindowRejections(at, 0, {}).rate(answered=0) == 0.0
    assert rejections_by_window(read_rejections(store, "other"), "1d") == []
