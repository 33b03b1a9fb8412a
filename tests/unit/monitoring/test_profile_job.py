"""The profile job: each captured chunk profiled once into its windows, however often it
runs, whatever dies midway; one run at a time per problem."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from capture_cases import (
    T0,
    Clock,
    CountingStore,
    chunk_keys,
    record_n,
)

from components.capture.buffer import Capture, CaptureConfig
from components.capture.readers import read_captures
from components.capture.windows import window_start
from components.core.store import StoreError
from components.data.profiling import merge_profiles, profile_frame, profile_summary
from components.monitoring.profile_job import (
    ProfileJobBusyError,
    _Lease,
    profile_captured_window,
    profile_captures,
    profile_windows,
    window_profiles,
)


def test_a_window_can_be_profiled_from_its_captured_chunks(spec, store):

    clock = Clock()
    capture = Capture(store, spec, worker_id="w1", clock=clock)
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


def test_a_window_profiled_chunk_by_chunk_matches_a_profile_of_its_rows(spec, store):

    # 15-minute windows, chunks of 3 rows: the window's 8 rows span three chunks, the third
    # shared with the next window's rows, which must not be counted.
    clock = Clock()
    capture = Capture(store, spec, worker_id="w1", clock=clock, config=CaptureConfig(chunk_rows=3))
    record_n(capture, 8, "a")
    clock.now = T0 + timedelta(minutes=15)
    record_n(capture, 4, "b")
    capture.close()
    assert len(chunk_keys(store)) == 4
    start = window_start(T0, "15m")
    profile_captured_window(store, spec, T0, "15m")
    (profile,) = window_profiles(store, "churn", start)
    job = profile_summary(profile)
    rows = read_captures(store, "churn", start=start, end=start + timedelta(minutes=15))
    names = [*spec.input_features, "probability", "label"]
    direct = profile_summary(profile_frame(rows[names]))
    assert job.loc["monthly_charges", "count"] == 8
    columns = ["count", "nulls", "mean", "min", "max"]
    pd.testing.assert_frame_equal(job.loc[names, columns], direct.loc[names, columns])


def _window_count(store, start, column="monthly_charges") -> int:
    profiles = window_profiles(store, "churn", start)
    return int(profile_summary(merge_profiles(profiles)).loc[column, "count"]) if profiles else 0


def test_the_profile_job_profiles_each_chunk_once_however_often_it_runs(spec, tmp_path):

    store, clock = CountingStore(tmp_path / "s"), Clock()
    start = window_start(T0, "1h")
    capture = Capture(store, spec, worker_id="w1", clock=clock)
    record_n(capture, 5, "a")
    capture.flush()
    (done,) = profile_captures(store, spec)
    assert (done.start, done.chunks, done.rows) == (start, 1, 5)
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

    store, clock = CountingStore(tmp_path / "s"), Clock()
    capture = Capture(store, spec, worker_id="w1", clock=clock)
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

    store, clock = CountingStore(tmp_path / "s"), Clock()
    _three_hours(Capture(store, spec, worker_id="w1", clock=clock), clock)
    store.fail_read = "hour=12"  # the run stops at the third window's chunk
    with pytest.raises(StoreError, match="injected failure"):
        profile_captures(store, spec)
    assert [_window_count(store, T0.replace(hour=h, minute=0)) for h in (10, 11, 12)] == [2, 3, 0]
    store.fail_read = None
    done = profile_captures(store, spec)
    assert [(d.start.hour, d.chunks, d.rows) for d in done] == [(10, 0, 0), (11, 0, 0), (12, 1, 4)]
    assert [_window_count(store, T0.replace(hour=h, minute=0)) for h in (10, 11, 12)] == [2, 3, 4]


def test_one_profile_job_at_a_time_works_on_a_problem(spec, tmp_path):

    store, clock = CountingStore(tmp_path / "s"), Clock()
    _three_hours(Capture(store, spec, worker_id="w1", clock=clock), clock)
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
    _three_hours(Capture(store, spec, worker_id="w1", clock=clock), clock)
    with pytest.raises(ProfileJobBusyError, match="lost its lease"):
        profile_captures(store, spec, clock=clock)
    assert [_window_count(store, T0.replace(hour=h, minute=0)) for h in (10, 11, 12)] == [2, 0, 0]


def test_the_profile_job_reads_each_chunk_once_for_windows_shorter_than_its_hour(spec, tmp_path):

    store = CountingStore(tmp_path / "s")
    clock = Clock(T0.replace(minute=0))
    capture = Capture(store, spec, worker_id="w1", clock=clock)
    for minute, n in ((0, 2), (20, 3), (50, 4)):  # one chunk holding three 15-minute windows
        clock.now = T0.replace(minute=minute)
        record_n(capture, n, f"m{minute}")
    capture.flush()
    (chunk,) = chunk_keys(store)
    done = profile_captures(store, spec, window="15m")
    assert [(d.start.minute, d.rows) for d in done] == [(0, 2), (15, 3), (30, 0), (45, 4)]
    assert store.reads[chunk] == 1
    assert [_window_count(store, d.start) for d in done] == [2, 3, 0, 4]
    # since/until pick windows: only the one that begins at :15.
    later = profile_captures(
        store, spec, window="15m", since=T0.replace(minute=20), until=T0.replace(minute=29)
    )
    assert [(d.start.minute, d.chunks) for d in later] == [(15, 0)]
