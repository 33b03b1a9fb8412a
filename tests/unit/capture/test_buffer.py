"""Capture: rows, chunks, partitions, profiles and feedback land in the store exactly once,
whatever the threads, the timing or the store's failures."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from components.capture.buffer import (
    Capture,
    CaptureConfig,
    Codes,
    FeatureMatrix,
    FeedbackConflictError,
    Packed,
    parse_window,
    profile_windows,
    read_captures,
    read_feedback,
    window_profiles,
    window_start,
)
from components.core.problem import load_problem
from components.core.store import LocalStore, StoreError
from components.data.profiling import merge_profiles, profile_summary

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
FAST = CaptureConfig(flush_interval_s=0.01, close_timeout_s=2.0)


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)


@pytest.fixture()
def store(tmp_path):
    return LocalStore(tmp_path / "store")


class Clock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class SlowStore(LocalStore):
    """Every write takes ``delay`` seconds, and waits for ``gate`` when one is given."""

    def __init__(self, root, delay: float = 0.0, gate: threading.Event | None = None):
        super().__init__(root)
        self.delay = delay
        self.gate = gate

    def put_bytes(self, key, data, *, create_only=False):
        if self.gate is not None:
            self.gate.wait(timeout=10)
        time.sleep(self.delay)
        super().put_bytes(key, data, create_only=create_only)


class FlakyStore(LocalStore):
    """Fails the writes whose call number (from 1) is in ``fail_calls``; with ``after``, the
    failing write is stored first and only the answer is lost (an ambiguous failure)."""

    def __init__(self, root, fail_calls, *, after=False, error=StoreError):
        super().__init__(root)
        self.fail_calls = set(fail_calls)
        self.after = after
        self.error = error
        self.calls = 0

    def put_bytes(self, key, data, *, create_only=False):
        self.calls += 1
        if self.calls in self.fail_calls:
            if self.after:
                super().put_bytes(key, data, create_only=create_only)
            raise self.error(f"simulated failure of write {self.calls}")
        super().put_bytes(key, data, create_only=create_only)


def features(i: int, **changes) -> dict:
    row = {
        "customer_id": f"c{i}",
        "event_time": datetime(2024, 4, 30, 8, 0, tzinfo=UTC),
        "tenure_months": i,
        "contract": "one-year",
        "plan": "basic",
        "monthly_charges": 10.5 + i,
        "total_charges": None,
        "payment_method": "credit-card",
        "region": "north",
        "support_calls": 1,
        "usage_hours": 20.0,
        "tickets_open": 0,
        "discount_pct": 5.0,
    }
    return {**row, **changes}


def answer(pid: str, probability: float = 0.25, **extra) -> dict:
    return {
        "prediction_id": pid,
        "model_version": "v1",
        "probability": probability,
        "label": int(probability >= 0.5),
        **extra,
    }


def record_n(capture: Capture, n: int, prefix: str = "p", **kwargs) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    capture.record([features(i) for i in range(n)], [answer(p) for p in ids], **kwargs)
    return ids


def capture_keys(store, problem: str = "churn") -> list[str]:
    return store.list(f"captures/{problem}/")


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_record_then_flush_writes_exactly_the_rows(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    flags = {"unknown_categories": ["region"]}
    capture.record(
        [features(1), features(2, region="atlantis", total_charges=99.5)],
        [answer("a", 0.25), answer("b", 0.75, flags=flags)],
    )
    assert store.list() == []  # record() does no I/O
    assert capture.flush() == 2
    assert capture.flush() == 0

    frame = read_captures(store, "churn")
    assert list(frame.columns) == [
        "prediction_id",
        "captured_at",
        "model_version",
        "customer_id",
        "event_time",
        *spec.input_features,
        "probability",
        "label",
        "flags",
    ]
    assert frame["prediction_id"].tolist() == ["a", "b"]
    assert (frame["captured_at"] == pd.Timestamp(T0)).all()
    assert frame["model_version"].tolist() == ["v1", "v1"]
    assert frame["customer_id"].tolist() == ["c1", "c2"]
    assert (frame["event_time"] == pd.Timestamp("2024-04-30T08:00Z")).all()
    assert frame["tenure_months"].tolist() == [1, 2]
    assert frame["monthly_charges"].tolist() == [11.5, 12.5]
    assert frame["region"].tolist() == ["north", "atlantis"]  # as given, even if unknown
    assert frame["total_charges"].isna().tolist() == [True, False]
    assert frame["probability"].tolist() == [0.25, 0.75]
    assert frame["label"].tolist() == [0, 1]
    assert frame["flags"].isna().iloc[0]
    assert json.loads(frame["flags"].iloc[1]) == flags
    [key] = capture_keys(store)
    assert key.startswith("captures/churn/date=2024-05-01/hour=10/w1-")
    assert key.endswith(".parquet")


def test_regression_captures_the_value(spec, store):
    raw = spec.model_dump()
    raw.update(task="regression", metric={"primary": "rmse"}, slices=[])
    raw["features"]["churned"] = {"type": "float"}
    regression = type(spec).model_validate(raw)
    capture = Capture(store, regression, worker_id="w1", clock=Clock(), profile=False)
    capture.record([features(1)], [{"prediction_id": "r", "model_version": "v2", "value": 3.5}])
    capture.flush()
    frame = read_captures(store, "churn")
    assert frame["value"].tolist() == [3.5]
    assert "probability" not in frame.columns


def test_values_that_do_not_fit_the_declared_type_are_kept_as_given(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    capture.record([features(1, tenure_months=1.5)], [answer("a")])
    assert capture.flush() == 1
    assert read_captures(store, "churn")["tenure_months"].tolist() == [1.5]  # not truncated


def test_ids_are_written_delta_length_encoded_unless_they_are_not_text(spec, store):
    import pyarrow.parquet as pq

    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    record_n(capture, 3)
    assert capture.flush() == 3
    capture.record([features(1, customer_id=12345)], [answer("int-id")])  # kept as given
    assert capture.flush() == 1  # a chunk whose customer_id is int64: no DELTA_LENGTH
    encodings = {}
    for key in capture_keys(store):
        meta = pq.ParquetFile(store.root / key).metadata
        for i in range(meta.num_columns):
            column = meta.row_group(0).column(i)
            encodings.setdefault(column.path_in_schema, set()).update(column.encodings)
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings["prediction_id"]
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings["customer_id"]
    frame = read_captures(store, "churn").set_index("prediction_id")
    assert frame.loc["int-id", "customer_id"] == 12345
    assert frame.loc["p0", "customer_id"] == "c0"


def test_chunks_hold_at_most_chunk_rows(spec, store):
    config = CaptureConfig(chunk_rows=4)
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock(), profile=False)
    record_n(capture, 10)
    assert capture.flush() == 10
    keys = capture_keys(store)
    assert len(keys) == 3
    sizes = [len(pd.read_parquet(store.root / k)) for k in keys]
    assert sorted(sizes) == [2, 4, 4]
    assert len({k.rsplit("/", 1)[1].split("-")[1] for k in keys}) == 3  # distinct sequences


def test_rows_are_partitioned_by_the_hour_they_were_captured(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    record_n(capture, 2, "a", received_at=datetime(2024, 5, 1, 10, 59, 59, tzinfo=UTC))
    # An aware time in another zone lands in its UTC hour (13:00+02:00 is 11:00 UTC).
    record_n(
        capture,
        3,
        "b",
        received_at=datetime(2024, 5, 1, 13, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    record_n(capture, 1, "c", received_at=datetime(2024, 5, 2, 0, 30, tzinfo=UTC))
    assert capture.flush() == 6
    folders = sorted({k.rsplit("/", 1)[0] for k in capture_keys(store)})
    assert folders == [
        "captures/churn/date=2024-05-01/hour=10",
        "captures/churn/date=2024-05-01/hour=11",
        "captures/churn/date=2024-05-02/hour=00",
    ]


def test_read_captures_filters_by_time(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
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
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    record_n(capture, 1, "late", received_at=T0 + timedelta(minutes=5))
    record_n(capture, 1, "early", received_at=T0)
    capture.flush()
    assert read_captures(store, "churn")["prediction_id"].tolist() == ["early0", "late0"]


def test_a_profile_is_written_per_window(spec, store):
    config = CaptureConfig(window="1h")
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock())
    record_n(capture, 3, "a", received_at=datetime(2024, 5, 1, 10, 15, tzinfo=UTC))
    record_n(capture, 2, "b", received_at=datetime(2024, 5, 1, 11, 5, tzinfo=UTC))
    capture.flush()
    record_n(capture, 4, "c", received_at=datetime(2024, 5, 1, 11, 45, tzinfo=UTC))
    capture.flush()

    ten, eleven = datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert profile_windows(store, "churn") == [ten, eleven]
    assert store.list("profiles/churn/window=20240501T100000Z/")[0].endswith(".bin")
    [first] = window_profiles(store, "churn", ten)
    summary = profile_summary(first)
    assert summary.loc["tenure_months", "count"] == 3
    assert summary.loc["probability", "count"] == 3
    assert {"label", *spec.input_features} <= set(summary.index)
    assert "prediction_id" not in summary.index
    later = window_profiles(store, "churn", eleven)
    assert len(later) == 2  # one per flush; monitoring merges them
    assert profile_summary(merge_profiles(later)).loc["monthly_charges", "count"] == 6


def test_the_thread_writes_profiles_on_their_own_interval(spec, store):
    # Rows are written every flush; a window's running profile only every
    # profile_interval_s, on an explicit flush() and on close().
    ten = datetime(2024, 5, 1, 10, tzinfo=UTC)
    slow = CaptureConfig(flush_interval_s=0.01, profile_interval_s=3600, close_timeout_s=2.0)
    capture = Capture(store, spec, worker_id="w1", config=slow, clock=Clock())
    capture.start()
    try:
        for i in range(3):
            record_n(capture, 2, f"r{i}-")
            wait_until(lambda: capture.unwritten_rows == 0)
        assert len(capture_keys(store)) == 3  # three flushes
        assert window_profiles(store, "churn", ten) == []
        capture.flush()
        [profile] = window_profiles(store, "churn", ten)
        assert profile_summary(profile).loc["tenure_months", "count"] == 6
        record_n(capture, 4, "last")
    finally:
        capture.close()
    assert len(window_profiles(store, "churn", ten)) == 2
    merged = profile_summary(merge_profiles(window_profiles(store, "churn", ten)))
    assert merged.loc["probability", "count"] == 10  # every row profiled exactly once

    due = CaptureConfig(flush_interval_s=0.01, profile_interval_s=0.05, close_timeout_s=2.0)
    capture = Capture(store, spec, worker_id="w2", config=due, clock=Clock())
    capture.start()
    try:
        record_n(capture, 5, "due")
        wait_until(lambda: len(window_profiles(store, "churn", ten)) == 3)
    finally:
        capture.close()
    with pytest.raises(ValueError, match="profile_interval_s must be positive"):
        CaptureConfig(profile_interval_s=0)


def test_windows_parse_and_align():
    assert parse_window("15m") == timedelta(minutes=15)
    assert parse_window("1h") == timedelta(hours=1)
    assert parse_window("1d") == timedelta(days=1)
    for bad in ("1w", "0h", "h", "1.5h", ""):
        with pytest.raises(ValueError, match="invalid capture window"):
            parse_window(bad)
    moment = datetime(2024, 5, 1, 10, 44, 59, tzinfo=UTC)
    assert window_start(moment, "15m") == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert window_start(moment, "1d") == datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="chunk_rows must be positive"):
        CaptureConfig(chunk_rows=0)


def test_close_flushes_everything_and_is_idempotent(spec, store):
    capture = Capture(store, spec, worker_id="w1", config=FAST, clock=Clock(), profile=False)
    capture.start()
    capture.close()  # nothing recorded: nothing written
    assert capture_keys(store) == []

    capture = Capture(store, spec, worker_id="w2", config=CaptureConfig(flush_interval_s=60))
    capture.start()
    record_n(capture, 5)
    capture.close()
    capture.close()
    assert len(read_captures(store, "churn")) == 5
    assert capture.unwritten_rows == 0
    with pytest.raises(RuntimeError, match="closed"):
        record_n(capture, 1)


def test_the_thread_flushes_on_its_interval(spec, store):
    capture = Capture(store, spec, worker_id="w1", config=FAST, clock=Clock(), profile=False)
    capture.start()
    capture.start()  # idempotent
    try:
        record_n(capture, 3)
        wait_until(lambda: capture.unwritten_rows == 0)
        assert len(read_captures(store, "churn")) == 3
    finally:
        capture.close()


def test_concurrent_records_lose_and_duplicate_nothing(spec, store):
    config = CaptureConfig(flush_interval_s=0.005, chunk_rows=37, max_buffered_rows=200)
    capture = Capture(store, spec, worker_id="w1", config=config, profile=False)
    capture.start()

    def client(t: int) -> None:
        for i in range(100):
            capture.record([features(i)], [answer(f"t{t}-{i}")])
            if i % 25 == 0:
                capture.flush()  # explicit flushes race with the thread's

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    capture.close()
    ids = read_captures(store, "churn")["prediction_id"]
    assert len(ids) == 800
    assert ids.nunique() == 800


def test_backpressure_blocks_record_instead_of_dropping(spec, tmp_path):
    gate = threading.Event()
    store = SlowStore(tmp_path / "store", gate=gate)
    config = CaptureConfig(flush_interval_s=0.01, max_buffered_rows=5, close_timeout_s=5)
    capture = Capture(store, spec, worker_id="w1", config=config, profile=False)
    capture.start()
    record_n(capture, 5, "a")  # fills the buffer; the flusher is stuck behind the gate
    blocked = threading.Thread(target=record_n, args=(capture, 1, "b"))
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive(), "record() returned although the buffer was full"
    assert capture.unwritten_rows == 5
    gate.set()
    blocked.join(timeout=5)
    assert not blocked.is_alive()
    capture.close()
    assert sorted(read_captures(store, "churn")["prediction_id"]) == [
        *(f"a{i}" for i in range(5)),
        "b0",
    ]


def test_backpressure_with_a_slow_store_bounds_memory_and_stores_everything(spec, tmp_path):
    store = SlowStore(tmp_path / "store", delay=0.02)
    config = CaptureConfig(flush_interval_s=0.01, max_buffered_rows=20, chunk_rows=8)
    capture = Capture(store, spec, worker_id="w1", config=config, profile=False)
    capture.start()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], capture.unwritten_rows)
            time.sleep(0.001)

    def client(t: int) -> None:
        for i in range(25):
            capture.record([features(i)] * 2, [answer(f"t{t}-{i}-a"), answer(f"t{t}-{i}-b")])

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=client, args=(t,)) for t in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    done.set()
    sampler.join()
    capture.close()
    assert peak[0] <= 20 - 1 + 2  # the limit, exceeded by at most one call's records
    ids = read_captures(store, "churn")["prediction_id"]
    assert len(ids) == ids.nunique() == 200


def test_backpressure_without_a_thread_flushes_in_the_caller(spec, store):
    config = CaptureConfig(max_buffered_rows=3)
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock(), profile=False)
    record_n(capture, 3, "a")
    record_n(capture, 1, "b")  # the buffer was full and no thread runs: flushed here
    assert capture.unwritten_rows == 1
    assert len(read_captures(store, "churn")) == 3


def test_a_store_that_fails_twice_loses_no_rows(spec, tmp_path, caplog):
    store = FlakyStore(tmp_path / "store", fail_calls={1, 2})
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    record_n(capture, 3)
    with caplog.at_level(logging.WARNING, logger="components.capture.buffer"):
        assert capture.flush() == 0
        assert capture.flush() == 0
    assert "simulated failure of write 2" in caplog.text
    assert capture.unwritten_rows == 3
    assert capture.flush() == 3
    ids = read_captures(store, "churn")["prediction_id"]
    assert sorted(ids) == ["p0", "p1", "p2"]


def test_a_failure_midway_keeps_only_the_unwritten_chunks(spec, tmp_path):
    store = FlakyStore(tmp_path / "store", fail_calls={2})
    config = CaptureConfig(chunk_rows=2)
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock(), profile=False)
    record_n(capture, 5)
    assert capture.flush() == 2  # the first chunk, then the store failed
    assert capture.unwritten_rows == 3
    assert capture.flush() == 3
    ids = read_captures(store, "churn")["prediction_id"]
    assert len(ids) == ids.nunique() == 5


def test_an_ambiguous_failure_is_not_written_twice(spec, tmp_path):
    # The write succeeded but its answer was lost: the retry finds the same bytes, done.
    store = FlakyStore(tmp_path / "store", fail_calls={1}, after=True)
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    record_n(capture, 3)
    assert capture.flush() == 0
    assert capture.flush() == 3
    assert len(capture_keys(store)) == 1
    assert len(read_captures(store, "churn")) == 3


def test_the_thread_survives_unexpected_errors(spec, tmp_path):
    store = FlakyStore(tmp_path / "store", fail_calls={1, 2}, error=RuntimeError)
    capture = Capture(store, spec, worker_id="w1", config=FAST, clock=Clock(), profile=False)
    capture.start()
    try:
        record_n(capture, 4)
        wait_until(lambda: capture.unwritten_rows == 0)
        assert capture._thread.is_alive()
        assert store.calls == 3
    finally:
        capture.close()
    assert len(read_captures(store, "churn")) == 4


def test_close_retries_a_failing_store(spec, tmp_path):
    store = FlakyStore(tmp_path / "store", fail_calls={1})
    config = CaptureConfig(flush_interval_s=0.01, close_timeout_s=2)
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock(), profile=False)
    record_n(capture, 2)
    capture.close()
    assert len(read_captures(store, "churn")) == 2


def test_feedback_is_written_once_and_read_back(spec, store):
    clock = Clock(datetime(2024, 6, 1, 9, tzinfo=UTC))
    capture = Capture(store, spec, worker_id="w1", clock=clock, profile=False)
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
    capture = Capture(store, spec, worker_id="w1", profile=False)
    for bad_id in ("", "../x", "a/b", ".tmp-x"):
        with pytest.raises(ValueError, match="invalid prediction id"):
            capture.record_feedback(bad_id, 1)
    for bad_label in (2, 0.5, float("nan"), "1"):
        with pytest.raises(ValueError, match="invalid label"):
            capture.record_feedback("a", bad_label)
    assert read_feedback(store, "churn").empty
    assert list(read_feedback(store, "churn").columns) == ["prediction_id", "label", "observed_at"]


def test_mismatched_or_incomplete_calls_are_refused(spec, store):
    capture = Capture(store, spec, worker_id="w1", profile=False)
    with pytest.raises(ValueError, match="1 feature records but 2 answers"):
        capture.record([features(1)], [answer("a"), answer("b")])
    with pytest.raises(ValueError, match="no prediction_id"):
        capture.record([features(1)], [{"model_version": "v1"}])
    with pytest.raises(ValueError, match="invalid worker_id"):
        Capture(store, spec, worker_id="a/b")
    assert capture.unwritten_rows == 0


def test_a_full_chunk_wakes_the_flusher_before_the_interval(spec, store):
    # The interval is long; a chunk's worth of rows must still be written promptly, so the
    # buffer never reaches its bound under steady load (requests would wait there).
    config = CaptureConfig(flush_interval_s=60, chunk_rows=50, max_buffered_rows=10_000)
    capture = Capture(store, spec, worker_id="w1", config=config, profile=False)
    capture.start()
    try:
        record_n(capture, 60)
        wait_until(lambda: capture.unwritten_rows < 50, timeout=10)
    finally:
        capture.close()


def test_columns_and_rows_land_in_one_table(spec, store):
    import numpy as np

    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    capture.record([features(1)], [answer("row")])
    columns = {name: [features(2)[name]] * 2 for name in spec.input_features}
    columns["tenure_months"] = np.array([3.0, np.nan])  # NaN is null
    columns.update(
        prediction_id=["c1", "c2"],
        model_version="v1",
        probability=np.array([0.1, 0.9]),
        label=np.array([0, 1]),
    )
    capture.record_columns(columns, 2)
    assert capture.flush() == 3
    frame = read_captures(store, "churn").set_index("prediction_id")
    assert frame.loc["c1", "tenure_months"] == 3
    assert pd.isna(frame.loc["c2", "tenure_months"])
    assert frame.loc["c2", "label"] == 1
    assert frame.loc["c1", "model_version"] == "v1"
    assert set(frame.index) == {"row", "c1", "c2"}


def test_a_window_can_be_profiled_from_its_captured_chunks(spec, store):
    from components.capture.buffer import profile_captured_window, window_start

    clock = Clock()
    capture = Capture(store, spec, worker_id="w1", clock=clock, profile=False)
    record_n(capture, 7)
    capture.flush()
    start = window_start(clock(), "1h")
    assert window_profiles(store, "churn", start) == []  # the worker did not profile
    key = profile_captured_window(store, spec, clock(), "1h")
    (profile,) = window_profiles(store, "churn", start)
    assert key.endswith(".bin")
    summary = profile_summary(profile)
    assert summary.loc["monthly_charges", "count"] == 7
    assert summary.loc["probability", "count"] == 7
    empty_window = start.replace(year=start.year - 1)
    assert profile_captured_window(store, spec, empty_window, "1h") is None


def test_a_window_profiled_chunk_by_chunk_matches_the_workers_own_profile(spec, tmp_path):
    from components.capture.buffer import profile_captured_window, window_start

    # 15-minute windows, chunks of 3 rows: the window's 8 rows span three chunks, the third
    # shared with the next window's rows, which must not be counted.
    config = CaptureConfig(window="15m", chunk_rows=3)
    profiled = {}
    for who in ("worker", "job"):
        store = LocalStore(tmp_path / who)
        clock = Clock()
        capture = Capture(store, spec, worker_id="w1", clock=clock, config=config)
        capture.profile = who == "worker"
        record_n(capture, 8, "a")
        clock.now = T0 + timedelta(minutes=15)
        record_n(capture, 4, "b")
        capture.close()
        start = window_start(T0, "15m")
        if who == "job":
            assert window_profiles(store, "churn", start) == []
            assert len(capture_keys(store)) == 4
            profile_captured_window(store, spec, T0, "15m")
        (profile,) = window_profiles(store, "churn", start)
        profiled[who] = profile_summary(profile)
    assert profiled["job"].loc["monthly_charges", "count"] == 8
    columns = ["count", "nulls", "mean", "min", "max"]
    pd.testing.assert_frame_equal(profiled["job"][columns], profiled["worker"][columns])


def _window_count(store, start, column="monthly_charges") -> int:
    profiles = window_profiles(store, "churn", start)
    return int(profile_summary(merge_profiles(profiles)).loc[column, "count"]) if profiles else 0


class CountingStore(LocalStore):
    """Counts the reads of each key; fails the writes of keys ending in ``fail_suffix``."""

    def __init__(self, root):
        super().__init__(root)
        self.reads: dict[str, int] = {}
        self.fail_suffix: str | None = None
        self.fail_read: str | None = None

    def get_bytes(self, key):
        if self.fail_read and self.fail_read in key:
            raise StoreError(f"injected failure reading {key}")
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get_bytes(key)

    def put_bytes(self, key, data, *, create_only=False):
        if self.fail_suffix and key.endswith(self.fail_suffix):
            raise StoreError(f"injected failure writing {key}")
        super().put_bytes(key, data, create_only=create_only)


def test_the_profile_job_profiles_each_chunk_once_however_often_it_runs(spec, tmp_path):
    from components.capture.buffer import profile_captures

    store, clock = CountingStore(tmp_path / "s"), Clock()
    start = window_start(T0, "1h")
    capture = Capture(store, spec, worker_id="w1", clock=clock, profile=False)
    record_n(capture, 5, "a")
    capture.flush()
    (done,) = profile_captures(store, spec)
    assert (done.start, done.chunks, done.rows, done.skipped) == (start, 1, 5, None)
    assert done.key.startswith(f"profiles/churn/window={start:%Y%m%dT%H%M%SZ}/chunks=")
    # Nothing new: no chunk read (only the ledger), nothing written.
    keys = store.list("profiles/")
    (again,) = profile_captures(store, spec)
    assert (again.chunks, again.rows, again.key) == (0, 0, None)
    assert store.list("profiles/") == keys
    assert _window_count(store, start) == 5
    # A chunk arriving later in the same window gets a profile of its own; they merge.
    clock.now = T0 + timedelta(minutes=30)
    record_n(capture, 3, "b")
    capture.flush()
    (late,) = profile_captures(store, spec)
    assert (late.chunks, late.rows) == (1, 3)
    assert len(window_profiles(store, "churn", start)) == 2
    assert _window_count(store, start) == 8
    assert all(n == 1 for key, n in store.reads.items() if key.startswith("captures/"))


def test_a_profile_job_that_dies_midway_is_redone_without_counting_twice(spec, tmp_path):
    from components.capture.buffer import profile_captures

    store, clock = CountingStore(tmp_path / "s"), Clock()
    capture = Capture(store, spec, worker_id="w1", clock=clock, profile=False)
    record_n(capture, 4, "a")
    capture.flush()
    store.fail_suffix = ".bin"  # dies after its ledger, before its profile
    with pytest.raises(StoreError, match="injected failure"):
        profile_captures(store, spec)
    store.fail_suffix = None
    record_n(capture, 2, "b")  # and more rows arrive before the next run
    capture.flush()
    (done,) = profile_captures(store, spec)
    assert (done.chunks, done.rows) == (2, 6)
    start = window_start(T0, "1h")
    assert _window_count(store, start) == 6
    assert profile_captures(store, spec)[0].rows == 0


def _three_hours(capture, clock) -> None:
    for hour, n in ((10, 2), (11, 3), (12, 4)):  # three hourly windows, a chunk each
        clock.now = T0.replace(hour=hour)
        record_n(capture, n, f"h{hour}")
        capture.flush()


def test_the_profile_job_writes_each_window_once_its_chunks_are_done(spec, tmp_path):
    from components.capture.buffer import profile_captures

    store, clock = CountingStore(tmp_path / "s"), Clock()
    _three_hours(Capture(store, spec, worker_id="w1", clock=clock, profile=False), clock)
    store.fail_read = "hour=12"  # the run stops at the third window's chunk
    with pytest.raises(StoreError, match="injected failure"):
        profile_captures(store, spec)
    assert [_window_count(store, T0.replace(hour=h, minute=0)) for h in (10, 11, 12)] == [2, 3, 0]
    store.fail_read = None
    done = profile_captures(store, spec)
    assert [(d.start.hour, d.chunks, d.rows) for d in done] == [(10, 0, 0), (11, 0, 0), (12, 1, 4)]
    assert [_window_count(store, T0.replace(hour=h, minute=0)) for h in (10, 11, 12)] == [2, 3, 4]


def test_one_profile_job_at_a_time_works_on_a_problem(spec, tmp_path):
    from components.capture.buffer import ProfileJobBusyError, _Lease, profile_captures

    store, clock = CountingStore(tmp_path / "s"), Clock()
    _three_hours(Capture(store, spec, worker_id="w1", clock=clock, profile=False), clock)
    other = _Lease(store, "profiles/churn/_lease", 60, clock)  # a run in progress
    with pytest.raises(ProfileJobBusyError, match=f"\\({other.owner}\\) holds"):
        profile_captures(store, spec, clock=clock)
    assert profile_windows(store, "churn") == []  # it did nothing
    clock.now += timedelta(seconds=61)  # that run died: its lease expired
    assert sum(d.rows for d in profile_captures(store, spec, clock=clock)) == 9
    profile_captures(store, spec, clock=clock)  # released at the end: the next run may go

    class Stealing(CountingStore):
        """Another run takes the lease over while this one writes its first window."""

        def put_json(self, key, obj, *, create_only=False):
            super().put_json(key, obj, create_only=create_only)
            lease = "profiles/churn/_lease"
            self.swap_pointer(lease, b'{"owner": "x", "expires": 0}', self.read_pointer(lease).etag)

    store, clock = Stealing(tmp_path / "t"), Clock()
    _three_hours(Capture(store, spec, worker_id="w1", clock=clock, profile=False), clock)
    with pytest.raises(ProfileJobBusyError, match="lost its lease"):
        profile_captures(store, spec, clock=clock)
    assert [_window_count(store, T0.replace(hour=h, minute=0)) for h in (10, 11, 12)] == [2, 0, 0]


def test_the_profile_job_skips_windows_the_workers_profiled(spec, store):
    from components.capture.buffer import profile_captured_window, profile_captures

    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=True)
    record_n(capture, 3)
    capture.flush()
    (done,) = profile_captures(store, spec)
    assert done.key is None and "written by capture workers" in done.skipped
    with pytest.raises(ValueError, match="would count them twice"):
        profile_captured_window(store, spec, T0)
    assert _window_count(store, window_start(T0, "1h")) == 3


def test_the_profile_job_reads_each_chunk_once_for_windows_shorter_than_its_hour(spec, tmp_path):
    from components.capture.buffer import profile_captures

    store = CountingStore(tmp_path / "s")
    clock = Clock(T0.replace(minute=0))
    capture = Capture(store, spec, worker_id="w1", clock=clock, profile=False)
    for minute, n in ((0, 2), (20, 3), (50, 4)):  # one chunk holding three 15-minute windows
        clock.now = T0.replace(minute=minute)
        record_n(capture, n, f"m{minute}")
    capture.flush()
    (chunk,) = capture_keys(store)
    done = profile_captures(store, spec, window="15m")
    assert [(d.start.minute, d.rows) for d in done] == [(0, 2), (15, 3), (30, 0), (45, 4)]
    assert store.reads[chunk] == 1
    assert [_window_count(store, d.start) for d in done] == [2, 3, 0, 4]
    # since/until pick windows: only the one that begins at :15.
    later = profile_captures(
        store, spec, window="15m", since=T0.replace(minute=20), until=T0.replace(minute=29)
    )
    assert [(d.start.minute, d.chunks) for d in later] == [(15, 0)]


def _columns(spec, ids: list[str], **changes) -> dict:
    import numpy as np

    rows = [features(i) for i in range(len(ids))]
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    columns.update(
        prediction_id=ids,
        model_version="v1",
        probability=np.full(len(ids), 0.25),
        label=np.zeros(len(ids), dtype=np.int64),
    )
    return {**columns, **changes}


def test_categories_given_as_codes_are_stored_as_categories(spec, store):
    import numpy as np

    regions = spec.features["region"].categories
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    codes = Codes(np.array([0.0, np.nan, len(regions) - 1]), tuple(regions))
    capture.record_columns(_columns(spec, ["a0", "a1", "a2"], region=codes), 3)
    capture.record_columns(
        _columns(spec, ["b0", "b1"], region=Codes(np.array([1.0, 1.0]), tuple(regions))), 2
    )
    assert capture.flush() == 5
    # The same column as codes in one request and as values in another (mixed) also works.
    capture.record_columns(_columns(spec, ["c0"], region=Codes(np.array([2.0]), tuple(regions))), 1)
    capture.record_columns(_columns(spec, ["d0"], region=["west"]), 1)
    assert capture.flush() == 2
    frame = read_captures(store, "churn").set_index("prediction_id")
    assert pd.isna(frame.loc["a1", "region"])  # NaN code: null
    assert frame["region"].drop("a1").to_dict() == {
        "a0": regions[0],
        "a2": regions[-1],
        "b0": regions[1],
        "b1": regions[1],
        "c0": regions[2],
        "d0": "west",
    }
    assert (frame["model_version"] == "v1").all()
    assert frame["flags"].isna().all()  # a column no request gave is null


def test_ids_given_packed_are_stored_as_the_ids(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    capture.record_columns(_columns(spec, ["a0", "a1", "a2"], prediction_id=Packed("a0a1a2", 2)), 3)
    capture.record_columns(_columns(spec, ["b00", "b01"], prediction_id=Packed("b00b01", 3)), 2)
    assert capture.flush() == 5  # two widths in one flush: value by value
    capture.record_columns(_columns(spec, ["c0", "c1"], prediction_id=Packed("c0c1", 2)), 2)
    capture.record_columns(_columns(spec, ["d0"], prediction_id=Packed("d0", 2)), 1)
    assert capture.flush() == 3  # one width: straight from the bytes
    capture.record_columns(_columns(spec, ["e0", "e1"], prediction_id=Packed("e0e1", 2)), 2)
    capture.record_columns(_columns(spec, ["f0", "f1"]), 2)  # and a tuple beside them
    assert capture.flush() == 4
    frame = read_captures(store, "churn")
    assert sorted(frame["prediction_id"]) == [
        "a0", "a1", "a2", "b00", "b01", "c0", "c1", "d0", "e0", "e1", "f0", "f1"
    ]  # fmt: skip
    assert frame.set_index("prediction_id").loc["c1", "customer_id"] == "c1"


@pytest.mark.parametrize(
    ("text", "width"), [("abc", 2), ("abcd", 0), ("abé", 3)], ids=["ragged", "zero", "not-ascii"]
)
def test_packed_text_must_be_ascii_of_one_width(text, width):
    with pytest.raises(ValueError, match="is not ASCII values of"):
        Packed(text, width)


def test_packed_ids_must_match_the_number_of_rows(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    with pytest.raises(ValueError, match=r"column 'prediction_id' has 3 values for 2 rows"):
        capture.record_columns(_columns(spec, ["a", "b"], prediction_id=Packed("abc", 1)), 2)


def _matrix_request(spec, ids, names, categories):
    """A request as plain columns, and the same request with its features in a matrix."""
    import numpy as np

    plain = _columns(spec, ids)
    rows = len(ids)
    matrix = np.empty((rows, len(names)))
    for j, name in enumerate(names):
        if name in categories:
            codes = {c: i for i, c in enumerate(categories[name])}
            matrix[:, j] = [codes[v] for v in plain[name]]
        else:
            matrix[:, j] = plain[name]
    matrix[0, 0] = np.nan  # a null
    plain[names[0]] = [None, *plain[names[0]][1:]]
    rest = {k: v for k, v in plain.items() if k not in names}
    return plain, rest, FeatureMatrix(matrix, names, categories)


def test_features_given_as_a_matrix_are_stored_as_the_same_columns(spec, tmp_path):
    names = tuple(spec.input_features)
    categories = {n: tuple(spec.features[n].categories) for n in spec.categorical_features}
    frames, profiles = {}, {}
    for how in ("plain", "matrix", "mixed", "rows"):
        store = LocalStore(tmp_path / how)
        capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=True)
        for k in range(3):
            ids = [f"r{k}-{i}" for i in range(4)]
            plain, rest, matrix = _matrix_request(spec, ids, names, categories)
            if how == "plain" or (how == "mixed" and k == 1):
                capture.record_columns(plain, 4)
            elif how == "rows" and k == 1:  # one by one, in the same flush as matrices
                keys = (spec.id_column, spec.event_time_column, *names)
                capture.record(
                    [{key: plain[key][i] for key in keys} for i in range(4)],
                    [
                        {
                            "prediction_id": ids[i],
                            "model_version": "v1",
                            "probability": float(plain["probability"][i]),
                            "label": int(plain["label"][i]),
                        }
                        for i in range(4)
                    ],
                )
            else:
                capture.record_columns(rest, 4, matrix=matrix)
        assert capture.flush() == 12
        frames[how] = read_captures(store, "churn").sort_values("prediction_id", ignore_index=True)
        (profile,) = window_profiles(store, "churn", window_start(T0, "1h"))
        profiles[how] = profile_summary(profile)[["count", "nulls", "mean", "min", "max"]]
    for how in ("matrix", "mixed", "rows"):
        pd.testing.assert_frame_equal(frames[how], frames["plain"])
        pd.testing.assert_frame_equal(profiles[how], profiles["plain"])
    assert frames["plain"][names[0]].isna().sum() == 3
    assert profiles["plain"].loc["region", "count"] == 12


def test_a_feature_matrix_that_does_not_fit_is_refused(spec, store):
    import numpy as np

    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    names = ("tenure_months", "monthly_charges")
    columns = _columns(spec, ["a", "b"])
    rest = {k: v for k, v in columns.items() if k not in names}
    with pytest.raises(ValueError, match=r"shape \(3, 2\) for 2 rows"):
        capture.record_columns(rest, 2, matrix=FeatureMatrix(np.zeros((3, 2)), names))
    with pytest.raises(ValueError, match=r"\['colour'\] are not capture columns"):
        capture.record_columns(rest, 2, matrix=FeatureMatrix(np.zeros((2, 1)), ("colour",)))
    with pytest.raises(ValueError, match=r"\['monthly_charges', 'tenure_months'\] given both"):
        capture.record_columns(columns, 2, matrix=FeatureMatrix(np.zeros((2, 2)), names))
    assert capture.unwritten_rows == 0


def test_codes_outside_the_categories_are_stored_as_null_and_logged(spec, store, caplog):
    import numpy as np

    regions = tuple(spec.features["region"].categories)
    assert Codes(np.array([0.0, np.nan]), ("a", "b")).values() == ["a", None]
    assert Codes(np.array([1.0]), (0, 1)).values() == [1]
    for code in (2.0, 0.5, -1.0, np.inf, 1e30):  # each kind alone, too
        assert Codes(np.array([1.0, code]), ("a", "b")).values() == ["b", None], code
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    bad = Codes(np.array([0.0, 99.0, 0.5, -1.0]), regions)
    capture.record_columns(_columns(spec, ["a", "b", "c", "d"], region=bad), 4)
    with caplog.at_level(logging.ERROR):
        assert capture.flush() == 4  # the rows are kept
    assert "capture column region: 3 codes are not codes of its 5 categories" in caplog.text
    frame = read_captures(store, "churn").set_index("prediction_id")
    assert frame.loc["a", "region"] == regions[0]
    assert frame.loc[["b", "c", "d"], "region"].isna().all()


def test_rows_are_profiled_in_batches_of_bounded_size(spec, store):
    config = CaptureConfig(profile_batch_rows=25)
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock())
    for i in range(5):
        record_n(capture, 10, f"r{i}-")
        assert capture.flush(profiles=False) == 10  # rows are written at once
        assert capture._unprofiled_rows < 25  # rows waiting for whylogs stay bounded
    assert capture._unprofiled_rows == 20  # 50 rows: 30 profiled at once, 20 waiting
    assert capture.flush() == 0
    assert capture._unprofiled_rows == 0
    [profile] = window_profiles(store, "churn", datetime(2024, 5, 1, 10, tzinfo=UTC))
    assert profile_summary(profile).loc["tenure_months", "count"] == 50


def test_event_times_keep_their_instant_whatever_their_offset(spec, store):
    plus2 = timezone(timedelta(hours=2))
    times = [
        datetime(2024, 4, 30, 8, 0, 0, 123456, tzinfo=plus2),
        None,
        pd.Timestamp("2024-04-30 06:00", tz="UTC"),
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),  # before the epoch
    ]
    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    ids = ["a", "b", "c", "d"]
    capture.record_columns(_columns(spec, ids, event_time=times), 4)
    assert capture.flush() == 4
    stored = read_captures(store, "churn").set_index("prediction_id")["event_time"]
    assert stored["a"] == pd.Timestamp("2024-04-30 06:00:00.123456", tz="UTC")
    assert pd.isna(stored["b"])
    assert stored["c"] == pd.Timestamp("2024-04-30 06:00", tz="UTC")
    assert stored["d"] == pd.Timestamp("1969-12-31 23:59", tz="UTC")


def test_chunks_keep_statistics_on_time_and_dictionaries_on_repeating_columns(spec, store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    record_n(capture, 20)
    capture.flush()
    [key] = capture_keys(store)
    meta = pq.ParquetFile(pa.BufferReader(store.get_bytes(key))).metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert columns["captured_at"].statistics.has_min_max
    assert columns["event_time"].statistics.has_min_max
    assert columns["prediction_id"].statistics is None
    assert "RLE_DICTIONARY" in columns["region"].encodings
    assert "RLE_DICTIONARY" not in columns["prediction_id"].encodings
    assert columns["region"].compression == "SNAPPY"
    assert columns["monthly_charges"].compression == "SNAPPY"
    assert columns["prediction_id"].compression == "ZSTD"
    assert columns["customer_id"].compression == "ZSTD"


def test_columns_that_do_not_fit_are_refused_before_they_reach_the_buffer(spec, store):
    import numpy as np

    capture = Capture(store, spec, worker_id="w1", clock=Clock(), profile=False)
    columns = _columns(spec, ["a", "b"])
    with pytest.raises(ValueError, match=r"columns \['colour'\] are not capture columns"):
        capture.record_columns({**columns, "colour": ["red", "blue"]}, 2)
    with pytest.raises(ValueError, match=r"column 'customer_id' has 3 values for 2 rows"):
        capture.record_columns({**columns, "customer_id": ("c1", "c2", "c3")}, 2)
    with pytest.raises(ValueError, match=r"column 'probability' has 1 values for 2 rows"):
        capture.record_columns({**columns, "probability": np.array([0.5])}, 2)
    assert capture.unwritten_rows == 0
    # What fits is still taken, and flushes: no bad request was left in the buffer.
    capture.record_columns(columns, 2)
    assert capture.flush() == 2
