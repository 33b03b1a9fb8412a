"""The capture buffer: every answered row lands in the store exactly once, whatever the
threads, the timing or the store's failures; memory stays bounded; a killed worker loses at
most the rows since its last flush."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from capture_cases import (
    FAST,
    T0,
    Clock,
    FlakyStore,
    SlowStore,
    answer,
    chunk_keys,
    columns_of,
    features,
    in_threads,
    record_n,
    wait_until,
)

from components.capture.buffer import Capture, CaptureConfig
from components.capture.readers import read_captures
from components.core.store import LocalStore


def test_record_then_flush_writes_exactly_the_rows(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
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
    [key] = chunk_keys(store)
    assert key.startswith("captures/churn/date=2024-05-01/hour=10/w1-")
    assert key.endswith(".parquet")


def test_regression_captures_the_value(spec, store):
    raw = spec.model_dump()
    raw.update(task="regression", metric={"primary": "rmse"}, slices=[])
    raw["features"]["churned"] = {"type": "float"}
    regression = type(spec).model_validate(raw)
    capture = Capture(store, regression, worker_id="w1", clock=Clock())
    capture.record([features(1)], [{"prediction_id": "r", "model_version": "v2", "value": 3.5}])
    capture.flush()
    frame = read_captures(store, "churn")
    assert frame["value"].tolist() == [3.5]
    assert "probability" not in frame.columns


def test_values_that_do_not_fit_the_declared_type_are_kept_as_given(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    capture.record([features(1, tenure_months=1.5)], [answer("a")])
    assert capture.flush() == 1
    capture.record([features(1, customer_id=12345)], [answer("int-id")])
    assert capture.flush() == 1  # a chunk of its own, whose customer_id is an integer
    frame = read_captures(store, "churn").set_index("prediction_id")
    assert frame.loc["a", "tenure_months"] == 1.5  # not truncated
    assert frame.loc["int-id", "customer_id"] == 12345
    assert frame.loc["a", "customer_id"] == "c1"


def test_a_config_that_cannot_work_is_refused():
    with pytest.raises(ValueError, match="chunk_rows must be positive"):
        CaptureConfig(chunk_rows=0)
    with pytest.raises(ValueError, match="flush_interval_s must be positive"):
        CaptureConfig(flush_interval_s=0)
    with pytest.raises(ValueError, match="close_timeout_s must not be negative"):
        CaptureConfig(close_timeout_s=-1)


def test_chunks_hold_at_most_chunk_rows(spec, store):
    config = CaptureConfig(chunk_rows=4)
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock())
    record_n(capture, 10)
    assert capture.flush() == 10
    keys = chunk_keys(store)
    assert len(keys) == 3
    sizes = [len(pd.read_parquet(store.root / k)) for k in keys]
    assert sorted(sizes) == [2, 4, 4]
    assert len({k.rsplit("/", 1)[1].split("-")[1] for k in keys}) == 3  # distinct sequences


def test_rows_are_partitioned_by_the_hour_they_were_captured(spec, store):
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
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
    folders = sorted({k.rsplit("/", 1)[0] for k in chunk_keys(store)})
    assert folders == [
        "captures/churn/date=2024-05-01/hour=10",
        "captures/churn/date=2024-05-01/hour=11",
        "captures/churn/date=2024-05-02/hour=00",
    ]


def test_close_flushes_everything_and_is_idempotent(spec, store):
    capture = Capture(store, spec, worker_id="w1", config=FAST, clock=Clock())
    capture.start()
    capture.close()  # nothing recorded: nothing written
    assert chunk_keys(store) == []

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
    capture = Capture(store, spec, worker_id="w1", config=FAST, clock=Clock())
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
    capture = Capture(store, spec, worker_id="w1", config=config)
    capture.start()

    def client(t: int) -> None:
        for i in range(100):
            capture.record([features(i)], [answer(f"t{t}-{i}")])
            if i % 25 == 0:
                capture.flush()  # explicit flushes race with the thread's

    in_threads(client, 8)
    capture.close()
    ids = read_captures(store, "churn")["prediction_id"]
    assert len(ids) == 800
    assert ids.nunique() == 800


def test_backpressure_blocks_record_instead_of_dropping(spec, tmp_path):
    gate = threading.Event()
    store = SlowStore(tmp_path / "store", gate=gate)
    config = CaptureConfig(flush_interval_s=0.01, max_buffered_rows=5, close_timeout_s=5)
    capture = Capture(store, spec, worker_id="w1", config=config)
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
    capture = Capture(store, spec, worker_id="w1", config=config)
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
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock())
    record_n(capture, 3, "a")
    record_n(capture, 1, "b")  # the buffer was full and no thread runs: flushed here
    assert capture.unwritten_rows == 1
    assert len(read_captures(store, "churn")) == 3


def test_a_store_that_fails_twice_loses_no_rows(spec, tmp_path, caplog):
    store = FlakyStore(tmp_path / "store", fail_calls={1, 2})
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
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
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock())
    record_n(capture, 5)
    assert capture.flush() == 2  # the first chunk, then the store failed
    assert capture.unwritten_rows == 3
    assert capture.flush() == 3
    ids = read_captures(store, "churn")["prediction_id"]
    assert len(ids) == ids.nunique() == 5


def test_an_ambiguous_failure_is_not_written_twice(spec, tmp_path):
    # The write succeeded but its answer was lost: the retry finds the same bytes, done.
    store = FlakyStore(tmp_path / "store", fail_calls={1}, after=True)
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    record_n(capture, 3)
    assert capture.flush() == 0
    assert capture.flush() == 3
    assert len(chunk_keys(store)) == 1
    assert len(read_captures(store, "churn")) == 3


def test_the_thread_survives_unexpected_errors(spec, tmp_path):
    store = FlakyStore(tmp_path / "store", fail_calls={1, 2}, error=RuntimeError)
    capture = Capture(store, spec, worker_id="w1", config=FAST, clock=Clock())
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
    capture = Capture(store, spec, worker_id="w1", config=config, clock=Clock())
    record_n(capture, 2)
    capture.close()
    assert len(read_captures(store, "churn")) == 2


def test_mismatched_or_incomplete_calls_are_refused(spec, store):
    capture = Capture(store, spec, worker_id="w1")
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
    capture = Capture(store, spec, worker_id="w1", config=config)
    capture.start()
    try:
        record_n(capture, 60)
        wait_until(lambda: capture.unwritten_rows < 50, timeout=10)
    finally:
        capture.close()


def test_columns_and_rows_land_in_one_table(spec, store):

    capture = Capture(store, spec, worker_id="w1", clock=Clock())
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


def test_columns_that_do_not_fit_are_refused_before_they_reach_the_buffer(spec, store):

    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    columns = columns_of(["a", "b"])
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


# A worker that records a batch of rows every 10 ms, its flusher writing every 0.3 s, and
# that prints the monotonic time of each batch once it is recorded.
_WORKER = """
import sys, time
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from capture_cases import CHURN, answer, features
from components.capture.buffer import Capture, CaptureConfig
from components.core.problem import load_problem
from components.core.store import LocalStore

capture = Capture(
    LocalStore(sys.argv[1]), load_problem(CHURN), worker_id="w1",
    config=CaptureConfig(flush_interval_s=0.3),
)
capture.start()
batch = 0
while True:
    capture.record([features(i) for i in range(5)], [answer(f"b{batch}-{i}") for i in range(5)])
    print(batch, time.monotonic(), flush=True)
    batch += 1
    time.sleep(0.01)
"""


def test_a_killed_worker_loses_at_most_the_rows_of_one_flush_interval(tmp_path):
    root = Path(__file__).resolve().parents[3]
    store = LocalStore(tmp_path / "store")
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(store.root), str(root), str(root / "tests")],
        stdout=subprocess.PIPE,
        text=True,
    )
    recorded: dict[int, float] = {}
    try:
        for line in worker.stdout:
            batch, at = line.split()
            recorded[int(batch)] = float(at)
            if len(recorded) >= 150:  # about 1.5 s: several flushes done, one under way
                break
    finally:
        os.kill(worker.pid, signal.SIGKILL)  # no close(), no flush: as the OOM killer does
        worker.wait(10)
    killed_at = time.monotonic()
    stored = read_captures(store, "churn")["prediction_id"]
    assert stored.is_unique
    batches = {int(pid[1:].split("-")[0]) for pid in stored}
    assert len(stored) == 5 * len(batches)  # whole requests, never part of one
    assert batches, "no flush completed before the kill"
    lost = set(recorded) - batches
    # What was lost is the newest rows only, and only those recorded within the last flush
    # interval (0.3 s) and the flush then under way (a generous second for this machine).
    assert lost == set(range(max(batches) + 1, max(recorded) + 1))
    assert all(killed_at - recorded[b] < 0.3 + 1.0 for b in lost)
    assert len(lost) < len(recorded) / 2
