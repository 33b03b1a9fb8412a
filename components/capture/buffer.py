"""What the service saw and said, captured off the request path (lifecycle stages 6 and 8).

One :class:`Capture` per worker process. ``record()`` only appends one tuple per record to an
in-memory buffer under a lock; a daemon thread flushes the buffer every ``flush_interval_s``
into the store:

- ``captures/<problem>/date=YYYY-MM-DD/hour=HH/<worker>-<seq:06d>-<uuid8>.parquet``: the rows
  (Parquet, zstd), at most ``chunk_rows`` per file, partitioned by ``captured_at``;
- ``profiles/<problem>/window=<YYYYMMDDTHHMMSSZ>/<worker>-<seq:06d>-<uuid8>.bin``: a whylogs
  profile (through :mod:`components.data.profiling`) of the inputs and outputs of the rows one
  worker captured in one time window since its previous profile of that window; a
  monitoring job merges a window's profiles. Flushed rows are added to a running profile
  per window once ``profile_batch_rows`` of them are waiting (whylogs' cost per call is a
  few milliseconds per column whatever the number of rows), and the running profiles are
  written every ``profile_interval_s``, on an explicit ``flush()`` and on ``close()``
  (starting a whylogs profile costs ~20 ms whatever its size, too much for every flush of a
  busy worker). A worker killed without ``close()`` loses the profile of its rows since
  the last one written, not the rows. With ``profile=False`` (the service's default) a
  worker writes no profiles: :func:`profile_captures`, run as a scheduled job, profiles the
  stored chunks instead, off the serving cores;
- ``feedback/<problem>/<prediction_id>.json``: an observed label, written once.

Every write is create-only, so nothing is ever overwritten.

Nothing is lost, and memory stays bounded:

- Rows leave memory only once their chunk is written. A failed write (store down, network)
  keeps the chunk, already encoded under its key, and is retried on the next interval with
  the same key; if the retry finds the key taken by identical bytes, the earlier attempt had
  succeeded after all (an ambiguous failure), so rows are written exactly once.
- Backpressure, not dropping: when ``max_buffered_rows`` rows are not yet written,
  ``record()`` wakes the flusher and waits until a write frees room (without a running
  flusher thread, it flushes itself). The buffer can exceed the limit by at most one call's
  records. The wait lasts as long as the store needs, so a store that stays down stalls the
  callers instead of losing what they answered; in an async server, call ``record()`` from a
  worker thread if a stall must not block the event loop.
- ``close()`` stops the thread and flushes, retrying until ``close_timeout_s``; only rows that
  still cannot be written then are lost, and an error log says how many.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import (
    KeyNotFoundError,
    ObjectExistsError,
    PointerConflictError,
    Store,
    StoreError,
)
from components.data import profiling

logger = logging.getLogger(__name__)

PREDICTION_ID, CAPTURED_AT = "prediction_id", "captured_at"
BASE_COLUMNS = (PREDICTION_ID, CAPTURED_AT, "model_version")
CLASSIFICATION_OUTPUTS = ("probability", "label")
REGRESSION_OUTPUTS = ("value",)
FLAGS_COLUMN = "flags"
FEEDBACK_COLUMNS = ("prediction_id", "label", "observed_at")

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_WINDOW = re.compile(r"^(\d+)([mhd])$")
_WINDOW_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")


class FeedbackConflictError(Exception):
    """A label arrived for a prediction id that already has a different label."""

    def __init__(self, prediction_id: str, stored: float | int, given: float | int):
        self.prediction_id = prediction_id
        self.stored = stored
        self.given = given
        super().__init__(
            f"prediction {prediction_id!r} already has label {stored!r}; refusing label "
            f"{given!r} (labels are written once: correct the source, not the store)"
        )


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_window(window: str) -> timedelta:
    """``"15m"``, ``"1h"``, ``"1d"`` as a timedelta; ValueError for anything else."""
    match = _WINDOW.match(window)
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"invalid capture window {window!r}: use a positive number followed by m, h or d "
            "(e.g. '15m', '1h', '1d')"
        )
    return timedelta(**{_WINDOW_UNITS[match.group(2)]: int(match.group(1))})


def window_start(moment: datetime, window: str | timedelta) -> datetime:
    """The start of the window holding ``moment``: windows are aligned on the Unix epoch
    (so ``1h`` starts on the hour and ``1d`` at midnight UTC)."""
    width = parse_window(window) if isinstance(window, str) else window
    seconds = int(width.total_seconds())
    epoch = int(_as_utc(moment).timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


@dataclass(frozen=True)
class CaptureConfig:
    flush_interval_s: float = 5.0
    # Rows not yet written (buffered or encoded) before record() waits for a flush: room for
    # three chunks, so a busy worker's flusher writes one chunk while the next fills. For
    # the churn problem a buffered row takes ~175 bytes from 100-record requests (~235
    # before prediction ids came packed) and ~470 from 1-record ones (tracemalloc): 26-70
    # MB at most per worker.
    max_buffered_rows: int = 150_000
    window: str = "1h"
    # Rows per Parquet chunk, and how many buffered rows wake the flusher early. Writing a
    # chunk costs a few milliseconds whatever its size (Parquet's writer, the store's write),
    # so large chunks keep a busy worker's capture CPU down: per 100 captured rows a flush
    # took ~120 us of CPU with 10,000-row chunks and ~85 us with 50,000. At low traffic the
    # flush interval writes smaller chunks sooner.
    chunk_rows: int = 50_000
    # How often the background flusher writes the running profiles (explicit flush() and
    # close() always do).
    profile_interval_s: float = 60.0
    # Rows kept (as Arrow, already converted for their chunk) before they are added to the
    # running profile: whylogs costs a few milliseconds per column and call whatever the
    # number of rows, so it gets many flushes' rows at once. Bounds that memory too.
    profile_batch_rows: int = 50_000
    # How long close() keeps retrying a failing store before giving up on the last rows.
    close_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        parse_window(self.window)
        problems = [
            f"{name} must be positive (got {getattr(self, name)!r})"
            for name in (
                "flush_interval_s",
                "max_buffered_rows",
                "chunk_rows",
                "profile_interval_s",
                "profile_batch_rows",
            )
            if not getattr(self, name) > 0
        ]
        if self.close_timeout_s < 0:
            problems.append(f"close_timeout_s must not be negative (got {self.close_timeout_s})")
        if problems:
            raise ValueError("invalid CaptureConfig: " + "; ".join(problems))


@dataclass
class _Pending:
    """An encoded object waiting to be written, under the key it will keep across retries."""

    key: str
    data: bytes
    rows: int  # capture rows it holds (0 for a profile)
    folder: str = field(repr=False)
    suffix: str = field(repr=False)
    # Named by flush_as(): the key is this data's for good, so finding it taken means an
    # earlier attempt stored it.
    named: bool = field(default=False, repr=False)


class Capture:
    """Buffers what one worker saw and answered, and flushes it to the store off the request
    path. Thread-safe: record() and flush() may be called from any thread."""

    def __init__(
        self,
        store: Store,
        spec: ProblemSpec,
        *,
        worker_id: str,
        config: CaptureConfig = CaptureConfig(),
        clock: Callable[[], datetime] = utc_now,
        profile: bool = True,
    ) -> None:
        if not _SAFE_NAME.match(worker_id):
            raise ValueError(
                f"invalid worker_id {worker_id!r}: use letters, digits, '_', '.', ':' or '-' "
                "(it becomes part of store keys)"
            )
        self.store = store
        self.spec = spec
        self.worker_id = worker_id
        self.config = config
        self.clock = clock
        self.profile = profile
        self.outputs = CLASSIFICATION_OUTPUTS if spec.is_classification else REGRESSION_OUTPUTS
        self.columns = _capture_columns(spec, self.outputs)
        self._feature_columns = (spec.id_column, spec.event_time_column, *spec.input_features)
        self._types = _arrow_types(spec, self.outputs)
        self._layout = _parquet_layout(spec, self.columns)
        self._width = parse_window(config.window)
        self._known_names: set[tuple[str, ...]] = set()  # tuples _check_names passed

        self._cond = threading.Condition()  # guards _rows, _batches, _unwritten, _closing
        self._rows: list[tuple] = []
        self._batches: list[_Columns] = []  # whole requests captured as columns
        self._buffered = 0  # rows in _rows and _batches, not yet taken by a flush
        self._unwritten = 0  # rows buffered or encoded but not yet stored
        self._closing = False
        self._flush_lock = threading.Lock()  # one flush at a time; guards _pending and _seq
        self._pending: list[_Pending] = []
        self._seq = 0
        self._name: str | None = None  # set by flush_as() for the keys of one flush
        self._name_seq = 0
        # Guarded by _flush_lock: rows of each window profiled but not yet written, and rows
        # stored but not yet profiled (profile_batch_rows at most).
        self._profiles: dict[datetime, profiling.RunningProfile] = {}
        self._unprofiled: dict[datetime, list[pa.Table]] = {}
        self._unprofiled_rows = 0
        self._profiled_at = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the daemon thread that flushes every ``flush_interval_s`` (idempotent).

        With profiles on, whylogs is imported here, at start-up: importing it takes over a
        second of the GIL, which inside the first flush would stall the requests in flight.
        """
        if self.profile:
            profiling.warm_up()
        with self._cond:
            if self._closing:
                raise RuntimeError("this Capture is closed; create a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"capture-flusher-{self.worker_id}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Refuse new records, stop the thread and write everything recorded so far,
        retrying a failing store until ``close_timeout_s``. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._cond.notify_all()  # callers waiting on backpressure give up
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.close_timeout_s)
        deadline = time.monotonic() + self.config.close_timeout_s
        while not self._flush()[1] and time.monotonic() < deadline:
            time.sleep(min(self.config.flush_interval_s, 0.5))
        if self.unwritten_rows:
            logger.error(
                "capture %s/%s: %d rows could not be written to %s before shutdown and are lost",
                self.spec.name,
                self.worker_id,
                self.unwritten_rows,
                self.store.url,
            )

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def unwritten_rows(self) -> int:
        """Rows recorded but not yet stored (buffered, or encoded and waiting for a retry)."""
        with self._cond:
            return self._unwritten

    # ------------------------------------------------------------------ request path

    def record(
        self,
        features: Sequence[Mapping[str, Any]],
        answers: Sequence[Mapping[str, Any]],
        *,
        received_at: datetime | None = None,
    ) -> None:
        """Buffer one row per (features, answer) pair; no I/O. Waits only when
        ``max_buffered_rows`` rows are still unwritten (backpressure); RuntimeError once
        closed."""
        if len(features) != len(answers):
            raise ValueError(f"{len(features)} feature records but {len(answers)} answers")
        if not features:
            return
        at = _as_utc(received_at if received_at is not None else self.clock())
        rows = [self._row(f, a, at) for f, a in zip(features, answers, strict=True)]
        self._buffer(rows=rows)

    def record_columns(
        self,
        columns: Mapping[str, Any],
        rows: int,
        *,
        matrix: FeatureMatrix | None = None,
        received_at: datetime | None = None,
    ) -> None:
        """Buffer a whole request given as columns (NumPy arrays, lists or tuples, one value per
        row; NaN in a numeric column means null; a categorical column may be :class:`Codes`,
        text of one width :class:`Packed`; a string, such as `model_version`, stands for
        every row), and optionally a :class:`FeatureMatrix` holding further columns in one
        array. Everything is kept as given (do not modify it afterwards) and converted to
        Arrow at flush time, many requests at once: almost no work per request, which
        matters for requests of many records. Missing columns are null; same backpressure
        as record()."""
        if rows <= 0:
            return
        at = _as_utc(received_at if received_at is not None else self.clock())
        if not columns.get(PREDICTION_ID):
            raise ValueError("columns need prediction_id")
        self._check_columns(columns, rows)
        if matrix is not None:
            self._check_matrix(matrix, columns, rows)
        # Microseconds since the epoch: a tenth of the cost of np.datetime64(datetime).
        stamp = (at - _EPOCH) // _MICROSECOND
        self._buffer(batch=_Columns(dict(columns), rows, stamp, matrix))

    def _check_columns(self, columns: Mapping[str, Any], rows: int) -> None:
        """Refused here rather than at flush time, where one bad request would fail every
        flush of the rows buffered with it: a column capture does not know (its values
        would be dropped), and a column whose length is not the number of rows."""
        self._check_names(tuple(columns), "columns ")
        for name, values in columns.items():
            if values is None or isinstance(values, str):
                continue  # stands for every row
            given = len(values.codes if isinstance(values, Codes) else values)
            if given != rows:
                raise ValueError(f"column {name!r} has {given} values for {rows} rows")

    def _check_names(self, names: tuple[str, ...], what: str) -> None:
        """Names of capture columns, each once (the error starts with ``what``); checked
        once per tuple of names, whether a request's columns or a matrix's."""
        if names in self._known_names:
            return
        unknown = [n for n in names if n not in self._types]
        if unknown:
            raise ValueError(f"{what}{unknown} are not capture columns")
        if len(set(names)) != len(names):
            raise ValueError(f"{what}names repeat")
        self._known_names.add(names)

    def _check_matrix(self, matrix: FeatureMatrix, columns: Mapping[str, Any], rows: int) -> None:
        if matrix.values.shape != (rows, len(matrix.names)):
            raise ValueError(
                f"a feature matrix of shape {matrix.values.shape} for {rows} rows and "
                f"{len(matrix.names)} columns"
            )
        self._check_names(matrix.names, f"feature matrix columns {list(matrix.names)}: ")
        both = columns.keys() & matrix.names
        if both:
            raise ValueError(f"columns {sorted(both)} given both as columns and in the matrix")

    def _buffer(self, *, rows: list[tuple] | None = None, batch: _Columns | None = None) -> None:
        size = len(rows) if rows is not None else batch.rows
        while True:
            with self._cond:
                if self._closing:
                    raise RuntimeError("this Capture is closed: it no longer records")
                if self._unwritten < self.config.max_buffered_rows:
                    if rows is not None:
                        self._rows.extend(rows)
                    else:
                        self._batches.append(batch)
                    self._unwritten += size
                    self._buffered += size
                    if self._buffered >= self.config.chunk_rows and self._flusher_alive():
                        # A chunk is ready: write it now, in the background, rather than
                        # letting the buffer reach its bound and make requests wait.
                        self._wake.set()
                    return
                if self._flusher_alive():
                    self._wake.set()
                    self._cond.wait(timeout=self.config.flush_interval_s)
                    continue
            # No flusher thread: the caller flushes (outside the lock), backing off on failure.
            if not self._flush()[1]:
                self._stop.wait(self.config.flush_interval_s)

    def _row(self, features: Mapping[str, Any], answer: Mapping[str, Any], at: datetime) -> tuple:
        values = features if isinstance(features, Mapping) else vars(features)
        prediction_id = answer.get("prediction_id")
        if not prediction_id:
            raise ValueError(f"an answer has no prediction_id: {dict(answer)!r}")
        flags = answer.get(FLAGS_COLUMN)
        return (
            prediction_id,
            at,
            answer.get("model_version"),
            *(values.get(name) for name in self._feature_columns),
            *(answer.get(name) for name in self.outputs),
            json.dumps(flags, sort_keys=True, default=str) if flags else None,
        )

    # ------------------------------------------------------------------ feedback

    def record_feedback(
        self, prediction_id: str, label: float | int, *, observed_at: datetime | None = None
    ) -> bool:
        """Store an observed label under ``feedback/<problem>/<prediction_id>.json``, once.
        True if newly stored, False if the same label was already there;
        FeedbackConflictError if a different label was."""
        if not isinstance(prediction_id, str) or not _SAFE_NAME.match(prediction_id):
            raise ValueError(
                f"invalid prediction id {prediction_id!r}: expected up to 200 letters, digits, "
                "'_', '.', ':' or '-'"
            )
        value = _label(label, classification=self.spec.is_classification)
        observed = _as_utc(observed_at if observed_at is not None else self.clock())
        key = keys.feedback(self.spec.name, prediction_id)
        doc = {"prediction_id": prediction_id, "label": value, "observed_at": observed.isoformat()}
        try:
            self.store.put_json(key, doc, create_only=True)
        except ObjectExistsError:
            stored = self.store.get_json(key)["label"]
            if stored != value:
                raise FeedbackConflictError(prediction_id, stored, value) from None
            return False
        return True

    # ------------------------------------------------------------------ flushing

    def flush(self, *, profiles: bool = True) -> int:
        """Write every buffered row, and the running profiles (unless ``profiles`` is
        false, as between the flusher's profile writes), now and return how many rows were
        stored. A store error is logged and keeps the rows for the next flush; flush itself
        does not raise."""
        return self._flush(profiles=profiles)[0]

    def flush_as(self, name: str) -> bool:
        """Write everything recorded, rows and profiles, under keys made from ``name``
        (``<folder>/<name>-<n:04d>.parquet`` and ``.bin``); True once all of it is stored.

        For replaying a journal segment (:mod:`components.capture.journal`): the same rows under the
        same name give the same keys, and a key found taken was written by an earlier
        attempt, so a segment replayed twice (a crash between storing its rows and deleting
        it) is stored once. Record only that segment's rows between two calls."""
        if not _SAFE_NAME.match(name):
            raise ValueError(f"invalid flush name {name!r}: it becomes part of store keys")
        return self._flush(profiles=True, name=name)[1]

    def _flush(self, *, profiles: bool = True, name: str | None = None) -> tuple[int, bool]:
        """(rows written, whether everything taken was written). ``profiles``: also write
        the running profiles. ``name``: see flush_as()."""
        with self._flush_lock:
            self._name, self._name_seq = name, 0
            with self._cond:
                rows, self._rows = self._rows, []
                batches, self._batches = self._batches, []
                self._buffered = 0
            if rows or batches:
                try:
                    self._pending.extend(self._encode(rows, batches))
                except Exception:
                    taken = len(rows) + sum(b.rows for b in batches)
                    logger.exception(
                        "capture %s: could not encode %d rows; keeping them", self.spec.name, taken
                    )
                    with self._cond:
                        self._rows[:0] = rows
                        self._batches[:0] = batches
                        self._buffered += taken
                    return 0, False
            if profiles:
                self._pending.extend(self._profiles_to_write())
            written = self._write_pending()
            return written, not self._pending

    def _write_pending(self) -> int:
        written = 0
        while self._pending:
            item = self._pending[0]
            try:
                self._put(item)
            except Exception as exc:
                logger.warning(
                    "capture %s: could not write %s to %s (%s: %s); %d objects kept for a retry "
                    "in %.3g s",
                    self.spec.name,
                    item.key,
                    self.store.url,
                    type(exc).__name__,
                    exc,
                    len(self._pending),
                    self.config.flush_interval_s,
                )
                break
            self._pending.pop(0)
            written += item.rows
            if item.rows:
                with self._cond:
                    self._unwritten -= item.rows
                    self._cond.notify_all()
        return written

    def _put(self, item: _Pending) -> None:
        while True:
            try:
                self.store.put_bytes(item.key, item.data, create_only=True)
                return
            except ObjectExistsError:
                if item.named or self._holds(item):
                    return  # an earlier attempt did write it, though it reported a failure
                item.key = self._key(item.folder, item.suffix)  # someone else's: new name

    def _holds(self, item: _Pending) -> bool:
        try:
            return self.store.get_bytes(item.key) == item.data
        except KeyNotFoundError:
            return False

    def _key(self, folder: str, suffix: str) -> str:
        if self._name is not None:
            self._name_seq += 1
            return f"{folder}/{self._name}-{self._name_seq:04d}{suffix}"
        self._seq += 1
        return f"{folder}/{self.worker_id}-{self._seq:06d}-{uuid.uuid4().hex[:8]}{suffix}"

    def _encode(self, rows: list[tuple], batches: list[_Columns]) -> list[_Pending]:
        """Parquet chunks per hour partition, then the rows added to each window's running
        profile. Every row is turned into Arrow once; partitions are cut from the one
        table (no copy when all rows share one)."""
        parts = ([self._table(rows)] if rows else []) + (
            [self._batches_table(batches)] if batches else []
        )
        # Columns kept "as given" may differ in type between parts: let Arrow reconcile them.
        table = (
            pa.concat_tables([_dense(p) for p in parts], promote_options="permissive")
            if len(parts) > 1
            else parts[0]
        )
        stamps = table.column(CAPTURED_AT).to_numpy().astype("datetime64[us]").astype(np.int64)
        out = []
        hour_us = 3_600_000_000
        for hour_key, part in _partitions(table, stamps // hour_us):
            hour = datetime.fromtimestamp(int(hour_key) * 3600, tz=UTC)
            folder = keys.capture_folder(self.spec.name, hour)
            for i in range(0, part.num_rows, self.config.chunk_rows):
                chunk = part.slice(i, self.config.chunk_rows)
                data = _parquet_bytes(chunk, self._layout)
                key = self._key(folder, ".parquet")
                out.append(
                    _Pending(key, data, chunk.num_rows, folder, ".parquet", self._name is not None)
                )
        if self.profile:  # last: rows re-buffered after an error must not be profiled twice
            width_us = int(self._width.total_seconds() * 1_000_000)
            names = [*self.spec.input_features, *self.outputs]
            for window_key, part in _partitions(table, stamps // width_us):
                start = datetime.fromtimestamp(int(window_key) * width_us / 1e6, tz=UTC)
                self._unprofiled.setdefault(start, []).append(_dense(part.select(names)))
                self._unprofiled_rows += part.num_rows
            if self._unprofiled_rows >= self.config.profile_batch_rows:
                self._profile_unprofiled()
        return out

    def _profiles_to_write(self) -> list[_Pending]:
        self._profile_unprofiled()
        out = []
        for start, running in self._profiles.items():
            try:
                data = running.serialize()
            except Exception:
                logger.exception(
                    "capture %s: could not serialise the profile of %d rows; it is skipped",
                    self.spec.name,
                    running.rows,
                )
                continue
            folder = keys.profile_window(self.spec.name, start)
            key = self._key(folder, ".bin")
            out.append(_Pending(key, data, 0, folder, ".bin", self._name is not None))
        self._profiles = {}
        self._profiled_at = time.monotonic()
        return out

    def _batches_table(self, batches: list[_Columns]) -> pa.Table:
        """Many record_columns() calls as one table: one conversion per column. When every
        call gave a feature matrix of the same columns, the matrices are stacked once and
        their columns never go through the per-call pieces."""
        arrays = []
        rows = sum(b.rows for b in batches)
        layout = batches[0].matrix
        if layout is not None and all(
            b.matrix is not None and b.matrix.same_layout(layout) for b in batches
        ):
            stacked = np.concatenate([b.matrix.values for b in batches])
            in_matrix = {name: j for j, name in enumerate(layout.names)}
        else:  # mixed calls: each matrix as columns of its own call
            stacked, in_matrix = None, {}
            for b in batches:
                if b.matrix is not None:
                    b.values.update(b.matrix.columns())
                    b.matrix = None
        for name in self.columns:
            declared = self._types[name]
            if name in in_matrix:
                values = stacked[:, in_matrix[name]]
                categories = layout.categories.get(name)
                if categories is not None:
                    arrays.append(Codes(values, categories).decoded(values, declared, name))
                else:
                    arrays.append(_column_array(np.ascontiguousarray(values), declared))
                continue
            pieces = [b.values.get(name) for b in batches]
            first = pieces[0]
            if name == CAPTURED_AT:
                stamps = np.array([b.at for b in batches], dtype=np.int64).astype("datetime64[us]")
                array = _column_array(np.repeat(stamps, [b.rows for b in batches]), declared)
            elif first is None and all(p is None for p in pieces):
                array = pa.nulls(rows, type=declared)
            elif isinstance(first, str) and all(isinstance(p, str) and p == first for p in pieces):
                # One value for every row (the model version): a dictionary of one, which
                # Parquet writes as it is instead of hashing every row's copy.
                array = pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(rows, dtype=np.int32)), _column_array([first], declared)
                )
            elif isinstance(first, Codes) and all(
                isinstance(p, Codes) and p.categories == first.categories for p in pieces
            ):
                array = first.decoded(np.concatenate([p.codes for p in pieces]), declared, name)
            elif type(first) is Packed and all(
                type(p) is Packed and p.width == first.width for p in pieces
            ):
                array = _packed_array(pieces, declared)
            elif all(type(p) in _SEQUENCES for p in pieces):  # values as sent: chained in C
                array = _column_array(list(chain.from_iterable(pieces)), declared)
            else:
                values = _joined([_spread(p, b.rows) for p, b in zip(pieces, batches, strict=True)])
                array = _column_array(values, declared)
            arrays.append(array)
        return pa.Table.from_arrays(arrays, names=list(self.columns))

    def _table(self, rows: list[tuple]) -> pa.Table:
        columns = list(zip(*rows, strict=True))
        arrays = [
            _array(list(values), self._types[name])
            for name, values in zip(self.columns, columns, strict=True)
        ]
        return pa.Table.from_arrays(arrays, names=list(self.columns))

    def _profile_unprofiled(self) -> None:
        """Add the rows kept for profiling to their windows' running profiles, one whylogs
        call per window."""
        unprofiled, self._unprofiled, self._unprofiled_rows = self._unprofiled, {}, 0
        for start, tables in unprofiled.items():
            # A profile that cannot be computed must not hold the rows back: log and go on.
            try:
                table = pa.concat_tables(tables, promote_options="permissive")
                running = self._profiles.setdefault(start, profiling.RunningProfile())
                running.track(table.to_pandas())
            except Exception:
                logger.exception(
                    "capture %s: could not profile %d rows; their profile is skipped",
                    self.spec.name,
                    sum(t.num_rows for t in tables),
                )

    def _flusher_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        # Never dies silently: every error is logged and the loop goes on.
        while not self._stop.is_set():
            self._wake.wait(self.config.flush_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            due = time.monotonic() - self._profiled_at >= self.config.profile_interval_s
            try:
                ok = self._flush(profiles=due)[1]
            except Exception:
                logger.exception("capture %s: flush failed; retrying", self.spec.name)
                ok = False
            if not ok:  # back off: do not hammer a failing store on every wake-up
                self._stop.wait(self.config.flush_interval_s)


# ---------------------------------------------------------------------- readers


def read_captures(
    store: Store, problem: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Every captured row of ``problem`` with ``start <= captured_at < end`` (either bound
    optional), sorted by ``captured_at``. Only the hour partitions that overlap are read."""
    lo = _as_utc(start) if start is not None else None
    hi = _as_utc(end) if end is not None else None
    tables = [
        pq.read_table(pa.BufferReader(store.get_bytes(key)))
        for key in _capture_keys(store, problem, lo, hi)
    ]
    if not tables:
        return pd.DataFrame({name: [] for name in BASE_COLUMNS})
    frame = _within(_concat(tables), lo, hi)
    return frame.sort_values("captured_at", kind="stable").reset_index(drop=True)


def _capture_keys(
    store: Store, problem: str, lo: datetime | None, hi: datetime | None
) -> list[str]:
    """The chunks of the hour partitions that overlap [lo, hi)."""
    found = []
    for key in store.list(keys.captures_prefix(problem)):
        hour = keys.capture_hour(key)
        if hour is None:
            continue
        if (lo is None or hour + timedelta(hours=1) > lo) and (hi is None or hour < hi):
            found.append(key)
    return found


def _within(frame: pd.DataFrame, lo: datetime | None, hi: datetime | None) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    if lo is not None:
        mask &= frame["captured_at"] >= lo
    if hi is not None:
        mask &= frame["captured_at"] < hi
    return frame[mask]


def read_feedback(store: Store, problem: str) -> pd.DataFrame:
    """Every stored label of ``problem``: prediction_id, label, observed_at (UTC), sorted by
    observed_at."""
    docs = [
        store.get_json(key)
        for key in store.list(keys.feedback_prefix(problem))
        if key.endswith(".json")
    ]
    frame = pd.DataFrame(docs, columns=list(FEEDBACK_COLUMNS))
    frame["observed_at"] = pd.to_datetime(frame["observed_at"], utc=True, format="ISO8601")
    return frame.sort_values(["observed_at", "prediction_id"], kind="stable").reset_index(drop=True)


def profile_windows(store: Store, problem: str) -> list[datetime]:
    """The start of every window that has at least one capture profile, oldest first."""
    found = {keys.profile_window_start(key) for key in store.list(keys.profiles_prefix(problem))}
    return sorted(found - {None})


def window_profiles(store: Store, problem: str, window_start: datetime) -> list[bytes]:
    """The serialised profiles written for the window starting at ``window_start``; merge
    them with :func:`components.data.profiling.merge_profiles`."""
    folder = keys.profile_window(problem, window_start) + "/"
    return [store.get_bytes(key) for key in store.list(folder) if key.endswith(".bin")]


# ---------------------------------------------------------------------- helpers


@dataclass(frozen=True, eq=False, slots=True)
class Codes:
    """A categorical column given to ``record_columns`` as codes into ``categories``, as in a
    model's feature matrix: floats, NaN for null. Decoding waits for the flush, where it is
    one Arrow ``take`` for many requests instead of Python objects per request. Codes are
    checked there too, not per request: a code that is no whole number in range (a bug in
    whatever encoded them; the value it stood for cannot be recovered) is stored as null
    and logged."""

    codes: np.ndarray
    categories: tuple

    def values(self) -> list:
        """The categories as Python values, None for null (and invalid codes)."""
        return self.decoded(self.codes, pa.infer_type(list(self.categories))).to_pylist()

    def decoded(self, codes: np.ndarray, declared: pa.DataType, column: str = "") -> pa.Array:
        """``codes`` (of this column's categories) as an Arrow array of the declared type, or
        a dictionary array of it (see :func:`_dense`)."""
        codes = np.asarray(codes, dtype=np.float64)
        dictionary = _column_array(list(self.categories), declared)
        try:
            # Valid codes, the usual case, become a dictionary array in two C calls, with no
            # copy of the values: the safe cast refuses fractions, and from_arrays codes out
            # of range. Parquet writes it as the dictionary it is (no hashing); chunks are
            # written without Arrow's schema, so readers get the declared type back.
            indices = pa.array(codes, from_pandas=True).cast(pa.int32())
            return pa.DictionaryArray.from_arrays(indices, dictionary)
        except (pa.ArrowInvalid, IndexError):
            pass
        with np.errstate(invalid="ignore"):  # inf % 1 is NaN: invalid, as it should be
            invalid = ~np.isnan(codes) & (
                (codes < 0) | (codes >= len(self.categories)) | (codes % 1 != 0)
            )
        if invalid.any():
            logger.error(
                "capture column %s: %d codes are not codes of its %d categories (e.g. %s); "
                "stored as null",
                column or "?",
                int(invalid.sum()),
                len(self.categories),
                sorted(set(codes[invalid].tolist()))[:5],
            )
        indices = np.where(np.isnan(codes) | invalid, -1, codes).astype(np.int64)
        return dictionary.take(pa.array(indices, mask=indices < 0))


@dataclass(frozen=True, eq=False, slots=True)
class Packed:
    """A text column whose values all have one length, given end to end as one ASCII string
    (prediction ids: ``"".join(ids)``). A request keeps one object in the buffer instead of
    one per value, and the flush makes the Arrow string array from the bytes themselves,
    with no Python object per value (converting 100 ids one by one cost ~9 µs)."""

    text: str
    width: int

    def __post_init__(self) -> None:
        if self.width <= 0 or len(self.text) % self.width or not self.text.isascii():
            raise ValueError(
                f"packed text of {len(self.text)} characters is not ASCII values of "
                f"{self.width} characters each"
            )

    def __len__(self) -> int:
        return len(self.text) // self.width

    def values(self) -> list[str]:
        text, width = self.text, self.width
        return [text[i : i + width] for i in range(0, len(text), width)]


def _packed_array(pieces: list[Packed], declared: pa.DataType) -> pa.Array:
    """Packed pieces of one width as one string array: their bytes, and offsets that are
    multiples of the width."""
    data = "".join([p.text for p in pieces]).encode("ascii")
    if declared != pa.string() or len(data) >= 2**31:  # beyond int32 offsets: value by value
        return _column_array(list(chain.from_iterable(p.values() for p in pieces)), declared)
    offsets = np.arange(0, len(data) + 1, pieces[0].width, dtype=np.int32)
    return pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))


@dataclass(frozen=True, eq=False, slots=True)
class FeatureMatrix:
    """Several columns of a request as one array, as in a model's feature matrix: float64,
    one column per name, NaN for null; the columns named in ``categories`` hold codes into
    their categories (as :class:`Codes` does). Give the same ``names`` and ``categories``
    objects with every request: matrices of one layout are stacked at flush time, one
    conversion per column for many requests."""

    values: np.ndarray
    names: tuple[str, ...]
    categories: Mapping[str, tuple] = field(default_factory=dict)

    def same_layout(self, other: FeatureMatrix) -> bool:
        return (self.names is other.names or self.names == other.names) and (
            self.categories is other.categories or self.categories == other.categories
        )

    def columns(self) -> dict[str, Any]:
        """The matrix as record_columns() columns: arrays, and Codes for categories."""
        out: dict[str, Any] = {}
        for j, name in enumerate(self.names):
            column = self.values[:, j]
            categories = self.categories.get(name)
            out[name] = column if categories is None else Codes(column, categories)
        return out


@dataclass(slots=True)
class _Columns:
    """One record_columns() call, kept as given until a flush converts many at once. (Slots:
    a buffered request is as few objects as possible for the garbage collector to walk.)"""

    values: dict[str, Any]
    rows: int
    at: int  # microseconds since the epoch
    matrix: FeatureMatrix | None = None


_SEQUENCES = (list, tuple)


def _spread(values: Any, rows: int) -> Any:
    """A request's column: None (missing) and a single string stand for every row; codes
    become their categories, packed text its values."""
    if values is None:
        return [None] * rows
    if isinstance(values, str):
        return [values] * rows
    if isinstance(values, (Codes, Packed)):
        return values.values()
    return values


def _joined(pieces: list[Any]) -> Any:
    """Requests' columns end to end: NumPy arrays of one dtype, or all numeric (NumPy
    promotes them, NaN staying null), stay an array; anything else becomes one list of
    Python values."""
    first = pieces[0]
    if all(isinstance(p, np.ndarray) for p in pieces) and (
        all(p.dtype == first.dtype for p in pieces) or all(p.dtype.kind in "fiu" for p in pieces)
    ):
        return np.concatenate(pieces) if len(pieces) > 1 else first
    out: list = []
    for piece in pieces:
        out.extend(piece.tolist() if isinstance(piece, np.ndarray) else piece)
    return out


def _partitions(table: pa.Table, keys: np.ndarray):
    """(key, rows of the table with that key) for each distinct key, in order; the table
    itself, not a copy, when every row has the same key."""
    distinct = np.unique(keys)
    if len(distinct) == 1:
        yield distinct[0], table
        return
    for key in distinct:
        yield key, table.filter(pa.array(keys == key))


def _capture_columns(spec: ProblemSpec, outputs: tuple[str, ...]) -> tuple[str, ...]:
    columns = (
        *BASE_COLUMNS,
        spec.id_column,
        spec.event_time_column,
        *spec.input_features,
        *outputs,
        FLAGS_COLUMN,
    )
    clashes = sorted({c for c in columns if columns.count(c) > 1})
    if clashes:
        raise ValueError(
            f"problem {spec.name!r}: column names {clashes} clash with the capture's own columns "
            f"({', '.join((*BASE_COLUMNS, *outputs, FLAGS_COLUMN))}); rename them in the "
            "problem file"
        )
    return columns


def _arrow_types(spec: ProblemSpec, outputs: tuple[str, ...]) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {
        "prediction_id": pa.string(),
        "captured_at": _TIMESTAMP,
        "model_version": pa.string(),
        spec.id_column: pa.string(),
        spec.event_time_column: _TIMESTAMP,
        "probability": pa.float64(),
        "label": pa.int64(),
        "value": pa.float64(),
        FLAGS_COLUMN: pa.string(),
    }
    for name in spec.input_features:
        feature = spec.features[name]
        if feature.is_categorical:
            ints = all(type(c) is int for c in feature.categories or [])
            types[name] = pa.int64() if ints else pa.string()
        else:
            types[name] = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}[
                feature.type
            ]
    return {name: types[name] for name in _capture_columns(spec, outputs)}


# The Python types a declared Arrow type takes without any conversion (bool is not an int,
# and a float is never truncated into an int column).
_EXACT: dict[pa.DataType, tuple[type, ...]] = {
    pa.int64(): (int,),
    pa.float64(): (float, int),
    pa.bool_(): (bool,),
    pa.string(): (str,),
}


def _array(values: list, declared: pa.DataType) -> pa.Array:
    """The declared type when every value already has it; otherwise the values as given
    (Arrow's inferred type), and as text as a last resort, so a flush never fails on data."""
    if declared == _TIMESTAMP:
        fits = all(v is None or isinstance(v, datetime) for v in values)
    else:
        fits = all(v is None or type(v) in _EXACT[declared] for v in values)
    if fits:
        try:
            return pa.array(values, type=declared)
        except (pa.ArrowException, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _column_array(values: Any, declared: pa.DataType) -> pa.Array:
    """A request's column in the declared type: NumPy numbers (NaN as null) are converted
    in one call; anything else goes through _array's checks."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiubM":
        if values.dtype.kind == "f":
            # NaN as null through a NumPy mask: half the CPU of Arrow's from_pandas check.
            array = pa.array(values, mask=np.isnan(values))
        else:
            array = pa.array(values, from_pandas=True)
        if array.type != declared:
            try:
                return array.cast(declared)
            except (pa.ArrowException, OverflowError):
                return array  # kept as given, as _array does, rather than failing the flush
        return array
    values = list(values)
    if declared == _TIMESTAMP:
        if values.count(None) == len(values):  # an optional time nobody sent: no per-value work
            return pa.nulls(len(values), type=declared)
        # Aware datetimes, converted as their distance from the epoch: Arrow converts a
        # timedelta five times faster than an aware datetime (no utcoffset() per value).
        # Anything else (naive, text, numbers) fails the subtraction and takes _array.
        try:
            since = [None if v is None else v - _EPOCH for v in values]
            return pa.array(since, type=pa.duration("us")).cast(pa.int64()).cast(_TIMESTAMP)
        except (TypeError, pa.ArrowException, OverflowError):
            pass
    else:
        # Validated requests almost always fit: let Arrow check in C, per value only on error.
        try:
            return pa.array(values, type=declared)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            pass
    return _array(values, declared)


def _dense(table: pa.Table) -> pa.Table:
    """The table with its dictionary columns (categories given as codes) as plain arrays of
    their values, for whatever would see the dictionary type: concatenation with rows
    captured one by one, whylogs."""
    for i, column_field in enumerate(table.schema):
        if pa.types.is_dictionary(column_field.type):
            column = table.column(i).cast(column_field.type.value_type)
            table = table.set_column(i, column_field.name, column)
    return table


def _parquet_bytes(table: pa.Table, layout: dict[str, Any]) -> bytes:
    encodings = layout.get("column_encoding")
    if encodings:  # only for text: a column kept as given may hold something else
        text = {f.name for f in table.schema if pa.types.is_string(f.type)}
        layout = {**layout, "column_encoding": {c: e for c, e in encodings.items() if c in text}}
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **layout)
    return sink.getvalue().to_pybytes()


def _parquet_layout(spec: ProblemSpec, columns: tuple[str, ...]) -> dict[str, Any]:
    """How chunks are written, chosen for the writer's CPU (it runs beside the requests):
    Snappy, Parquet's usual codec, except zstd level 1 on the ids. On generated churn
    traffic zstd-1 everywhere made 41 B/row for ~50 µs per 100 rows, Snappy everywhere
    76 B/row for ~31 µs: numbers cost zstd about twice Snappy's CPU for a third less size.
    Random hex prediction ids are the most expensive column: zstd-1 halves them (24
    against 52 B/row) for ~16 µs per 100 rows in a loop, against ~4 µs written plain and
    uncompressed; but inside busy serving workers (benchmarks/capture_cpu.py) plain ids
    saved ~5 µs of Parquet per 100-row request and cost as much more in writing the larger
    chunk, so they keep zstd. (Storage is cheap beside serving CPU, and a compaction job
    could recompress old chunks.) Dictionary encoding only where values repeat
    (categories, model version, label, flags), not on ids and measurements, where Arrow
    would try it and give up; min/max statistics only on the two time columns, which
    readers filter on. Ids are written DELTA_LENGTH_BYTE_ARRAY (all lengths first, then the
    bytes back to back): zstd then compresses one run of random hex instead of values
    between lengths, half the CPU of the prediction-id column and slightly smaller (any
    Parquet reader of format 2 reads it: Arrow, DuckDB, Spark, Trino/Athena)."""
    repeating = {*spec.categorical_features, "model_version", "label", FLAGS_COLUMN}
    ids = {PREDICTION_ID, spec.id_column}
    return {
        "compression": {c: "zstd" if c in ids else "snappy" for c in columns},
        "compression_level": {c: 1 for c in columns if c in ids},
        "use_dictionary": [c for c in columns if c in repeating],
        "column_encoding": {c: "DELTA_LENGTH_BYTE_ARRAY" for c in columns if c in ids},
        "write_statistics": [c for c in columns if c in (CAPTURED_AT, spec.event_time_column)],
        # Without Arrow's own schema, readers see each column's Parquet type: categories
        # are text whether a chunk got them as a dictionary array (codes) or as text.
        "store_schema": False,
    }


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowException, TypeError):
        # Chunks whose fallback types cannot be unified in Arrow (text in a time column).
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def _label(label: float | int, *, classification: bool) -> float | int:
    if isinstance(label, bool):
        label = int(label)
    if not isinstance(label, numbers.Real) or not math.isfinite(label):
        raise ValueError(f"invalid label {label!r}: expected a finite number")
    if classification:
        if label not in (0, 1):
            raise ValueError(f"invalid label {label!r}: a binary classification label is 0 or 1")
        return int(label)
    return float(label)


def _as_utc(moment: datetime) -> datetime:
    """Aware datetimes converted to UTC; naive ones are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class ProfiledWindow:
    """What :func:`profile_captures` did for one window."""

    start: datetime
    chunks: int  # chunks newly profiled (0: nothing new, or skipped)
    rows: int  # of their rows, those in this window
    key: str | None  # the profile written (None: no new rows, or skipped)
    skipped: str | None = None  # why the window was left alone


# The keys profile_captures() writes in a window's folder start with this: a worker's key
# starts with its worker id, which cannot contain "=".
_LEDGER = "chunks="


class ProfileJobBusyError(StoreError):
    """Another profile_captures run holds the problem's lease."""


class _Lease:
    """A lease on a store pointer (compare-and-swap), so that one profile_captures run at a
    time works on a problem: renewed before each window is written, released at the end,
    taken over once expired (a run that died without releasing it)."""

    def __init__(self, store: Store, key: str, seconds: float, clock: Callable[[], datetime]):
        self.store, self.key, self.seconds, self.clock = store, key, seconds, clock
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        current = store.read_pointer(key)
        if current is not None:
            held = json.loads(current.value)
            if held["expires"] > clock().timestamp():
                raise self._busy(held["owner"], held["expires"])
        try:
            self.etag = self._swap(current.etag if current is not None else None, seconds)
        except PointerConflictError:  # another run took it between our read and swap
            held = json.loads(store.read_pointer(key).value)
            raise self._busy(held["owner"], held["expires"]) from None

    def renew(self) -> None:
        try:
            self.etag = self._swap(self.etag, self.seconds)
        except PointerConflictError:
            raise ProfileJobBusyError(
                f"this profile-captures run lost its lease {self.store.uri(self.key)} to "
                f"another run (it went {self.seconds:g} s without renewing it) and stops"
            ) from None

    def release(self) -> None:
        with contextlib.suppress(PointerConflictError):
            self._swap(self.etag, 0)

    def _swap(self, etag: str | None, seconds: float) -> str:
        expires = self.clock().timestamp() + seconds if seconds else 0
        value = json.dumps({"owner": self.owner, "expires": expires}).encode()
        return self.store.swap_pointer(self.key, value, etag)

    def _busy(self, owner: str, expires: float) -> ProfileJobBusyError:
        return ProfileJobBusyError(
            f"another profile-captures run ({owner}) holds {self.store.uri(self.key)} until "
            f"{datetime.fromtimestamp(expires, UTC).isoformat()}; runs of one problem must "
            "not overlap, so this one does nothing"
        )


def profile_captures(
    store: Store,
    spec: ProblemSpec,
    *,
    window: str = "1h",
    since: datetime | None = None,
    until: datetime | None = None,
    lease_s: float = 900.0,
    clock: Callable[[], datetime] = utc_now,
) -> list[ProfiledWindow]:
    """Profile the captured chunks not profiled yet, one profile per window, stored where
    the workers' own profiles would be: the whylogs step of capture, moved off the serving
    workers (``MLOPS_CAPTURE_PROFILES=false``, the default) into a job run on a schedule,
    as SageMaker Model Monitor processes captured data. Windows that begin before ``until``
    and end after ``since`` (both optional) are considered.

    Incremental and idempotent: each run profiles only chunks no earlier run has, so a
    window still open, or a chunk written late (a store that was down), is profiled by a
    later run, into one more profile of that window (a window's profiles merge). Beside each
    profile ``chunks=<digest>.bin`` the job first writes ``chunks=<digest>.json``, the chunk
    keys it covers; a chunk counts as profiled once both exist, so a run that dies between
    the two is redone, never counted twice. One run at a time works on a problem: a run
    takes a lease (``profiles/<problem>/_lease``, a compare-and-swap pointer) for
    ``lease_s`` seconds, renews it before writing each window and releases it at the end; a
    run that finds it held raises ProfileJobBusyError and does nothing (two runs seeing
    different new chunks at once would count the shared ones twice). A run that dies
    holds it until it expires.

    A window that holds profiles written by workers (``MLOPS_CAPTURE_PROFILES=true``, or a
    journal's replayer) is skipped and reported: profiling its chunks too would count its
    rows twice. Chunks are read one at a time, each once, in time order, and each window is
    written once no later chunk can hold its rows: memory stays bounded by one chunk and
    the running profiles of one hour's windows, whatever the history.
    """
    width = parse_window(window)
    lease = _Lease(store, keys.profile_lease(spec.name), lease_s, clock)
    try:
        return _profile_new_chunks(store, spec, width, since, until, lease)
    finally:
        lease.release()


def _profile_new_chunks(
    store: Store,
    spec: ProblemSpec,
    width: timedelta,
    since: datetime | None,
    until: datetime | None,
    lease: _Lease,
) -> list[ProfiledWindow]:
    lo = window_start(since, width) if since is not None else None
    hi = _as_utc(until) if until is not None else None
    outputs = CLASSIFICATION_OUTPUTS if spec.is_classification else REGRESSION_OUTPUTS
    names = [*spec.input_features, *outputs]

    # Which windows each chunk's hour partition overlaps.
    by_window: dict[datetime, list[str]] = {}
    for key in _capture_keys(store, spec.name, lo, hi + width if hi is not None else None):
        hour = keys.capture_hour(key)
        start = window_start(hour, width)
        while start < hour + timedelta(hours=1):
            if (lo is None or start >= lo) and (hi is None or start < hi):
                by_window.setdefault(start, []).append(key)
            start += width

    results: dict[datetime, ProfiledWindow] = {}
    todo: dict[datetime, list[str]] = {}  # window: its chunks not profiled yet
    windows_of: dict[str, list[datetime]] = {}  # the same, chunk: its windows
    for start, chunk_keys in sorted(by_window.items()):
        folder = keys.profile_window(spec.name, start)
        profiled, foreign = _profiled_chunks(store, folder)
        if foreign:
            results[start] = ProfiledWindow(
                start,
                0,
                0,
                None,
                f"it holds {len(foreign)} profiles written by capture "
                f"workers (e.g. {foreign[0]}); profiling its chunks too would count them twice",
            )
            continue
        new = [k for k in chunk_keys if k not in profiled]
        if new:
            todo[start] = new
            for key in new:
                windows_of.setdefault(key, []).append(start)
        else:
            results[start] = ProfiledWindow(start, 0, 0, None)

    # Chunks in time order (their keys sort by date and hour), each read once, its rows
    # added to the running profiles of their windows. A window is written as soon as no
    # later chunk can hold its rows, so only the windows of one hour are open at a time
    # (memory stays bounded on a first run over a long history) and a run that stops midway
    # keeps what it finished.
    running: dict[datetime, profiling.RunningProfile] = {}
    for key in sorted(windows_of):
        hour = keys.capture_hour(key)
        for start in [s for s in running if s + width <= hour]:
            lease.renew()
            results[start] = _finish_window(store, spec, start, todo[start], running.pop(start))
        parquet = pq.ParquetFile(pa.BufferReader(store.get_bytes(key)))
        present = [c for c in (CAPTURED_AT, *names) if c in parquet.schema_arrow.names]
        chunk = parquet.read(columns=present).to_pandas()  # ids and flags are not profiled
        for start in windows_of[key]:
            profile = running.setdefault(start, profiling.RunningProfile())
            rows = _within(chunk, start, start + width)
            if len(rows):
                profile.track(rows.reindex(columns=names))
    for start, profile in running.items():
        lease.renew()
        results[start] = _finish_window(store, spec, start, todo[start], profile)
    return [results[start] for start in sorted(results)]


def _finish_window(
    store: Store,
    spec: ProblemSpec,
    start: datetime,
    chunks: list[str],
    running: profiling.RunningProfile,
) -> ProfiledWindow:
    """Write the ledger of the chunks profiled into a window, then their profile."""
    chunks = sorted(chunks)
    digest = hashlib.sha256("\n".join(chunks).encode()).hexdigest()[:20]
    name = f"{keys.profile_window(spec.name, start)}/{_LEDGER}{digest}"
    ledger = {"window": start.isoformat(), "rows": running.rows, "chunks": chunks}
    # Taken: an earlier run of the same chunks died before its profile; finish it.
    with contextlib.suppress(ObjectExistsError):
        store.put_json(f"{name}.json", ledger, create_only=True)
    key = None
    if running.rows:
        key = f"{name}.bin"
        # Taken: written by a run of the same chunks at the same time.
        with contextlib.suppress(ObjectExistsError):
            store.put_bytes(key, running.serialize(), create_only=True)
    return ProfiledWindow(start, len(chunks), running.rows, key)


def profile_captured_window(
    store: Store, spec: ProblemSpec, start: datetime, window: str = "1h"
) -> str | None:
    """:func:`profile_captures` for the one window that holds ``start``: the key of the
    profile written, None when it had no new rows. ValueError if the window holds workers'
    profiles."""
    begin = window_start(start, window)
    until = begin + parse_window(window)
    for done in profile_captures(store, spec, window=window, since=begin, until=until):
        if done.start == begin:
            if done.skipped:
                raise ValueError(f"window {begin.isoformat()} not profiled: {done.skipped}")
            return done.key
    return None


def _profiled_chunks(store: Store, folder: str) -> tuple[set[str], list[str]]:
    """(chunks profiled into this window's folder by profile_captures, keys of profiles
    written by capture workers there)."""
    names = [key.rsplit("/", 1)[1] for key in store.list(folder + "/")]
    profiled: set[str] = set()
    for name in names:
        if name.startswith(_LEDGER) and name.endswith(".json"):
            ledger = store.get_json(f"{folder}/{name}")
            if not ledger["rows"] or name.removesuffix(".json") + ".bin" in names:
                profiled.update(ledger["chunks"])
    foreign = [n for n in names if n.endswith(".bin") and not n.startswith(_LEDGER)]
    return profiled, foreign
