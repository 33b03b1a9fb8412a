"""The journal: what a worker appends is what the replayer captures, exactly once, and
nothing answered is lost (a writer that dies, a replayer that dies, an entry that cannot be
replayed, a journal that outgrows its room)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from components.capture import journal
from components.capture.buffer import (
    Capture,
    CaptureConfig,
    read_captures,
    window_profiles,
)
from components.capture.journal import Journal, Replayer, read_segment, spool_folder
from components.core.store import LocalStore
from components.serving.online import OnlineModel, ServingOptions

T0 = datetime(2026, 3, 2, 9, 59, 58, tzinfo=UTC)


def _clock():
    ticks = itertools.count()
    return lambda: T0 + timedelta(seconds=next(ticks))  # crosses the 10:00 hour partition


def _ids(prefix):
    counter = itertools.count()
    return lambda n: [f"{prefix}{next(counter):08d}" for _ in range(n)]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_entries_round_trip_exactly(tmp_path):
    log = Journal(tmp_path, "w1", {"version": "v1"})
    f32 = np.array([0.1, 0.30000001, 0.7], dtype=np.float32)
    f64 = np.array([1.5, -2.25])
    log.append(b'{"records": [1, 2, 3]}', ["a", "b", "c"], f32, T0)
    log.append(b"{}", ["d", "e"], f64, T0 + timedelta(microseconds=7))
    log.close()
    (segment,) = log.segments()
    assert segment.suffix == ".ready"
    meta, entries = read_segment(segment)
    first, second = list(entries)
    assert meta == {"version": "v1"}
    assert first.body == b'{"records": [1, 2, 3]}' and first.ids == ["a", "b", "c"]
    assert first.scores.dtype == np.float32 and np.array_equal(first.scores, f32)
    assert second.scores.dtype == np.float64 and np.array_equal(second.scores, f64)
    assert second.received_at == T0 + timedelta(microseconds=7)
    with pytest.raises(RuntimeError, match="closed"):
        log.append(b"{}", ["x"], f64[:1])


def test_segments_close_on_size_and_on_time(tmp_path):
    log = Journal(tmp_path, "w1", {}, segment_bytes=100, segment_s=0.2)
    for _ in range(3):
        log.append(b"x" * 150, ["id"], np.zeros(1))
    assert len(log.segments()) == 3  # each entry filled a segment
    log.start()
    log.append(b"y", ["id"], np.zeros(1))
    deadline = time.monotonic() + 5
    while len(log.segments()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(log.segments()) == 4  # closed by the thread, no further append needed
    log.close()


def test_an_entry_cut_short_by_a_dying_writer_is_skipped_and_logged(tmp_path, caplog):
    log = Journal(tmp_path, "w1", {})
    log.append(b"{}", ["a"], np.zeros(1), T0)
    log.append(b"{}", ["b"], np.zeros(1), T0)
    log.close()
    (segment,) = log.segments()
    segment.write_bytes(segment.read_bytes()[:-5])
    with caplog.at_level(logging.WARNING):
        entries = list(read_segment(segment)[1])
    assert [e.ids for e in entries] == [["a"]]
    assert "cut short" in caplog.text


@pytest.fixture
def model_dir(served_model):
    return served_model.folder


def _bodies(records):
    sizes = [1, 3, 100, 8, 1, 50]
    return [json.dumps({"records": records[:n]}).encode() for n in sizes]


def _inline(model_dir, store, bodies, **options):
    online = OnlineModel.open(model_dir, options=ServingOptions(**options))
    online.predictor.new_ids = _ids("p")
    online.capture = Capture(store, online.spec, worker_id="w", clock=_clock())
    answers = [online.predict(b) for b in bodies]
    online.close()
    return answers


def _journaled(model_dir, folder, bodies, **options):
    online = OnlineModel.open(model_dir, options=ServingOptions(**options))
    online.predictor.new_ids = _ids("p")
    online.journal = Journal(
        folder,
        "w",
        {"version": online.predictor.version, "flag_unknown_categories": False, **options},
        clock=_clock(),
    )
    answers = [online.predict(b) for b in bodies]
    online.close()
    return answers


def _replayer(model_dir, store, folder, owner=None):
    online = OnlineModel.open(model_dir, options=ServingOptions(max_records=10**9))
    capture = Capture(store, online.spec, worker_id="r", config=CaptureConfig(close_timeout_s=0))
    online.capture = capture

    def replay(entry, meta):
        if meta["version"] != online.predictor.version:
            raise ValueError("another model version")
        online.replay(entry.body, entry.ids, entry.scores, entry.received_at)

    return Replayer(folder, replay, capture.flush_as, owner=owner or os.getpid(), retry_s=0.05)


def test_replay_captures_exactly_what_capturing_in_the_worker_does(served_model, tmp_path):
    bodies = _bodies(served_model.records)
    inline_store, replay_store = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    folder = tmp_path / "journal"
    assert _inline(served_model.folder, inline_store, bodies) == _journaled(
        served_model.folder, folder, bodies
    )
    assert _replayer(served_model.folder, replay_store, folder).run_once() == 1
    assert list(folder.iterdir()) == []  # stored, then deleted
    expected = read_captures(inline_store, "churn")
    got = read_captures(replay_store, "churn")
    assert len(got) == 163
    pd.testing.assert_frame_equal(got, expected)
    hours = {k.split("/hour=")[1][:2] for k in replay_store.list("captures/churn/")}
    assert hours == {"09", "10"}
    assert window_profiles(replay_store, "churn", T0.replace(minute=0, second=0))


def test_a_segment_replayed_twice_is_stored_once(served_model, tmp_path):
    store, folder = LocalStore(tmp_path / "s"), tmp_path / "journal"
    _journaled(served_model.folder, folder, _bodies(served_model.records))
    (segment,) = folder.iterdir()
    kept = tmp_path / "copy"
    shutil.copy(segment, kept)
    _replayer(served_model.folder, store, folder).run_once()
    keys = sorted(store.list(""))
    # The replayer died after storing the rows and before deleting the segment.
    shutil.copy(kept, segment.with_suffix(".replaying"))
    _replayer(served_model.folder, store, folder).run_once()
    assert sorted(store.list("")) == keys
    assert len(read_captures(store, "churn")) == 163


def test_segments_of_a_dead_writer_are_adopted_and_of_a_live_one_left(served_model, tmp_path):
    store, folder = LocalStore(tmp_path / "s"), tmp_path / "journal"
    _journaled(served_model.folder, folder, _bodies(served_model.records)[:2])
    (segment,) = folder.iterdir()
    dead, live = _dead_pid(), os.getppid()
    parts = segment.name.split("_", 1)
    orphan = segment.with_name(f"{dead}_{parts[1]}").with_suffix(".open")
    segment.rename(orphan)  # its writer died before closing it
    other = folder / orphan.name.replace(f"{dead}_", f"{live}_").replace(".open", ".ready")
    shutil.copy(orphan, other)
    replayer = _replayer(served_model.folder, store, folder)
    assert replayer.claimable() == [orphan]
    assert replayer.run_once() == 1
    assert sorted(p.name for p in folder.iterdir()) == [other.name]
    assert len(read_captures(store, "churn")) == 4


def test_an_entry_that_cannot_be_replayed_is_kept_not_dropped(served_model, tmp_path, caplog):
    store, folder = LocalStore(tmp_path / "s"), tmp_path / "journal"
    log = Journal(folder, "w", {"version": "v-old"})
    log.append(json.dumps({"records": served_model.records[:2]}).encode(), ["a", "b"], np.zeros(2))
    log.close()
    with caplog.at_level(logging.ERROR):
        assert _replayer(served_model.folder, store, folder).run_once() == 1
    (failed,) = folder.iterdir()
    assert failed.suffix == ".failed" and "another model version" in caplog.text
    meta, entries = read_segment(failed)
    assert meta == {"version": "v-old"} and [e.ids for e in entries] == [["a", "b"]]
    assert store.list("captures/") == []


def test_a_failing_store_is_retried_until_the_segment_is_stored(served_model, tmp_path):
    store, folder = LocalStore(tmp_path / "s"), tmp_path / "journal"
    _journaled(served_model.folder, folder, _bodies(served_model.records)[:2])
    put, calls = store.put_bytes, []

    def flaky(key, data, **kw):
        calls.append(key)
        if len(calls) <= 2:
            raise OSError("store down")
        return put(key, data, **kw)

    store.put_bytes = flaky
    assert _replayer(served_model.folder, store, folder).run_once() == 1
    assert len(read_captures(store, "churn")) == 4 and list(folder.iterdir()) == []


def test_a_journal_over_its_room_makes_requests_wait(tmp_path, caplog):
    log = Journal(tmp_path, "w", {}, segment_bytes=100, max_spool_bytes=150)
    log.append(b"x" * 200, ["a"], np.zeros(1))  # one closed segment, over the room
    freed = threading.Timer(0.5, lambda: [p.unlink() for p in log.segments()])
    freed.start()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        log.append(b"y", ["b"], np.zeros(1))
    assert time.monotonic() - start >= 0.4
    assert "wait for room" in caplog.text
    log.close()


def test_a_spool_folder_per_problem_and_version(tmp_path):
    assert spool_folder(tmp_path, "churn", "v3") == tmp_path / "churn" / "v3"
    with pytest.raises(ValueError, match="worker_id"):
        Journal(tmp_path, "a/b", {})
    assert journal.process_alive(os.getpid()) and not journal.process_alive(_dead_pid())


def test_a_segment_without_a_header_holds_nothing_or_is_set_aside(tmp_path, served_model):
    folder, dead = tmp_path / "journal", _dead_pid()
    folder.mkdir()
    empty = folder / f"{dead}_0badc0de_00000001_w.open"
    empty.write_bytes(b"")
    garbage = folder / f"{dead}_0badc0de_00000002_w.ready"
    garbage.write_bytes(b"not a journal at all")
    assert _replayer(served_model.folder, LocalStore(tmp_path / "s"), folder).run_once() == 2
    assert [p.name for p in folder.iterdir()] == [garbage.with_suffix(".failed").name]
