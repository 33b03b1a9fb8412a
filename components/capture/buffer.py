"""What the service saw and said, captured off the request path (lifecycle stages 6 and 8).

One :class:`Capture` per worker process. ``record_columns()`` (and ``record()``, for rows)
only appends the request, as given, to an in-memory buffer under a lock; a daemon thread
flushes the buffer every ``flush_interval_s`` into the store as Parquet chunks
(:mod:`components.capture.chunks`), at most ``chunk_rows`` rows each, under
``captures/<problem>/date=YYYY-MM-DD/hour=HH/<worker>-<seq:06d>-<uuid8>.parquet``,
partitioned by ``captured_at``. Every write is create-only, so nothing is ever
overwritten. Whylogs profiles are made from the stored chunks by the scheduled profile job
(:mod:`components.monitoring.profile_job`), never here.

Every answered prediction is stored, and memory stays bounded:

- Rows leave memory only once their chunk is written. A failed write (store down, network)
  keeps the chunk, already encoded under its key, and is retried on the next interval with
  the same key; if the retry finds the key taken by identical bytes, the earlier attempt had
  succeeded after all (an ambiguous failure), so rows are written exactly once.
- Backpressure, not dropping: when ``max_buffered_rows`` rows are not yet written,
  recording wakes the flusher and waits until a write frees room (without a running
  flusher thread, it flushes itself). The buffer can exceed the limit by at most one call's
  records. The wait lasts as long as the store needs, so a store that stays down stalls the
  callers instead of losing what they answered; in an async server, record from a worker
  thread if a stall must not block the event loop.
- ``close()`` (SIGTERM) stops the thread and flushes, retrying until ``close_timeout_s``;
  only rows that still cannot be written then are lost, and an error log says how many.
- A worker killed outright (SIGKILL, OOM) runs no ``close()``: it loses the rows recorded
  since its last completed flush, at most one flush interval's worth (more only while the
  store is failing, when the buffer holds what it could not write, up to
  ``max_buffered_rows``).

``record_rejection()`` counts the rows the service refused, by minute and reason
(:mod:`components.capture.rejections`); the same flushes write the counts, with the same
guarantees.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from components.capture import chunks
from components.capture.chunks import CAPTURED_AT, FLAGS_COLUMN, PREDICTION_ID, Batch, FeatureMatrix
from components.capture.feedback import record_feedback
from components.capture.pending import Pending, put_once, writer_name
from components.capture.rejections import RejectionCounter
from components.capture.windows import as_utc, utc_now
from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureConfig:
    flush_interval_s: float = 5.0
    # Rows not yet written (buffered or encoded) before recording waits for a flush: room
    # for three chunks, so a busy worker's flusher writes one chunk while the next fills.
    max_buffered_rows: int = 150_000
    # Rows per Parquet chunk, and how many buffered rows wake the flusher early. Writing a
    # chunk has a fixed cost whatever its size (Parquet's writer, the store's write), so
    # large chunks keep a busy worker's capture CPU down; at low traffic the flush
    # interval writes smaller chunks sooner.
    chunk_rows: int = 50_000
    # How long close() keeps retrying a failing store before giving up on the last rows.
    close_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be positive (got {getattr(self, name)!r})"
            for name in ("flush_interval_s", "max_buffered_rows", "chunk_rows")
            if not getattr(self, name) > 0
        ]
        if self.close_timeout_s < 0:
            problems.append(f"close_timeout_s must not be negative (got {self.close_timeout_s})")
        if problems:
            raise ValueError("invalid CaptureConfig: " + "; ".join(problems))


class Capture:
    """Buffers what one worker saw and answered, and flushes it to the store off the request
    path. Thread-safe: record_columns(), record() and flush() may be called from any
    thread."""

    def __init__(
        self,
        store: Store,
        spec: ProblemSpec,
        *,
        worker_id: str,
        config: CaptureConfig = CaptureConfig(),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not keys.is_safe_name(worker_id):
            raise ValueError(
                f"invalid worker_id {worker_id!r}: use letters, digits, '_', '.', ':' or '-' "
                "(it becomes part of store keys)"
            )
        self.store = store
        self.spec = spec
        self.worker_id = worker_id
        self.config = config
        self.clock = clock
        self.outputs = chunks.outputs_of(spec)
        self._types = chunks.arrow_types(spec)
        self.columns = tuple(self._types)
        self._feature_columns = (spec.id_column, spec.event_time_column, *spec.input_features)
        self._known_names: set[tuple[str, ...]] = set()  # tuples _check_names passed
        self.rejections = RejectionCounter(spec.name, worker_id)

        self._cond = threading.Condition()  # guards _batches, _buffered, _unwritten, _closing
        self._batches: list[Batch] = []
        self._buffered = 0  # rows in _batches, not yet taken by a flush
        self._unwritten = 0  # rows buffered or encoded but not yet stored
        self._closing = False
        self._flush_lock = threading.Lock()  # one flush at a time; guards _pending and _seq
        self._pending: list[Pending] = []
        self._seq = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the daemon thread that flushes every ``flush_interval_s`` (idempotent)."""
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
        self.rejections.close()
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
        if self.rejections.unwritten_rows:
            logger.error(
                "capture %s/%s: the counts of %d refused rows could not be written to %s "
                "before shutdown and are lost",
                self.spec.name,
                self.worker_id,
                self.rejections.unwritten_rows,
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
        """Buffer one row per (features, answer) pair, as record_columns() does (their
        columns built here); no I/O."""
        if len(features) != len(answers):
            raise ValueError(f"{len(features)} feature records but {len(answers)} answers")
        if not features:
            return
        for answer in answers:
            if not answer.get(PREDICTION_ID):
                raise ValueError(f"an answer has no prediction_id: {dict(answer)!r}")
        rows = [f if isinstance(f, Mapping) else vars(f) for f in features]
        columns: dict[str, list] = {
            name: [a.get(name) for a in answers]
            for name in (PREDICTION_ID, "model_version", *self.outputs)
        }
        for name in self._feature_columns:
            columns[name] = [row.get(name) for row in rows]
        columns[FLAGS_COLUMN] = [
            json.dumps(a[FLAGS_COLUMN], sort_keys=True, default=str)
            if a.get(FLAGS_COLUMN)
            else None
            for a in answers
        ]
        self.record_columns(columns, len(rows), received_at=received_at)

    def record_columns(
        self,
        columns: Mapping[str, Any],
        rows: int,
        *,
        matrix: FeatureMatrix | None = None,
        received_at: datetime | None = None,
    ) -> None:
        """Buffer a whole request given as columns (NumPy arrays, lists or tuples, one value
        per row; NaN in a numeric column means null; a categorical column may be
        :class:`~components.capture.chunks.Codes`; a string, such as `model_version`,
        stands for every row), and optionally a :class:`FeatureMatrix` holding further
        columns in one array. Everything is kept as given (do not modify it afterwards)
        and converted to Arrow at flush time, many requests at once. Missing columns are
        null. Waits only when ``max_buffered_rows`` rows are still unwritten
        (backpressure); RuntimeError once closed."""
        if rows <= 0:
            return
        at = as_utc(received_at if received_at is not None else self.clock())
        if columns.get(PREDICTION_ID) is None or isinstance(columns[PREDICTION_ID], str):
            raise ValueError("columns need prediction_id, one per row")
        self._check_columns(columns, rows)
        if matrix is not None:
            self._check_matrix(matrix, columns, rows)
        self._buffer(Batch(dict(columns), rows, chunks.epoch_us(at), matrix))

    def _check_columns(self, columns: Mapping[str, Any], rows: int) -> None:
        """Refused here rather than at flush time, where one bad request would fail every
        flush of the rows buffered with it: a column capture does not know (its values
        would be dropped), and a column whose length is not the number of rows."""
        self._check_names(tuple(columns), "columns ")
        for name, values in columns.items():
            if values is None or isinstance(values, str):
                continue  # stands for every row
            given = len(values.codes if isinstance(values, chunks.Codes) else values)
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

    def _buffer(self, batch: Batch) -> None:
        while True:
            with self._cond:
                if self._closing:
                    raise RuntimeError("this Capture is closed: it no longer records")
                if self._unwritten < self.config.max_buffered_rows:
                    self._batches.append(batch)
                    self._unwritten += batch.rows
                    self._buffered += batch.rows
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

    # ------------------------------------------------------------------ rejections

    def record_rejection(
        self,
        rows: int,
        reasons: Iterable[tuple[str, str]],
        *,
        received_at: datetime | None = None,
    ) -> None:
        """Count one refused request of ``rows`` rows and its (field, check) reasons
        (:meth:`RejectionCounter.record`); no I/O, flushed with the chunks. RuntimeError
        once closed."""
        at = received_at if received_at is not None else self.clock()
        self.rejections.record(rows, reasons, at)

    # ------------------------------------------------------------------ feedback

    def record_feedback(
        self, prediction_id: str, label: float | int, *, observed_at: datetime | None = None
    ) -> bool:
        """:func:`components.capture.feedback.record_feedback` for this problem, observed
        now by this capture's clock unless ``observed_at`` is given."""
        observed = observed_at if observed_at is not None else self.clock()
        return record_feedback(self.store, self.spec, prediction_id, label, observed_at=observed)

    # ------------------------------------------------------------------ flushing

    def flush(self) -> int:
        """Write every buffered row now and return how many rows were stored. A store
        error is logged and keeps the rows for the next flush; flush itself does not
        raise."""
        return self._flush()[0]

    def _flush(self) -> tuple[int, bool]:
        """(rows written, whether everything taken, rejection counts included, was written)."""
        with self._flush_lock:
            counted = self.rejections.flush(self.store)
            with self._cond:
                batches, self._batches = self._batches, []
                self._buffered = 0
            if batches:
                try:
                    self._pending.extend(self._encode(batches))
                except Exception:
                    taken = sum(b.rows for b in batches)
                    logger.exception(
                        "capture %s: could not encode %d rows; keeping them", self.spec.name, taken
                    )
                    with self._cond:
                        self._batches[:0] = batches
                        self._buffered += taken
                    return 0, False
            written = self._write_pending()
            return written, counted and not self._pending

    def _encode(self, batches: list[Batch]) -> list[Pending]:
        """Parquet chunks per hour partition, cut from one table of every buffered row."""
        table = chunks.batches_table(batches, self._types)
        out = []
        for hour_key, part in chunks.partitions(table, chunks.hours_of(table)):
            hour = datetime.fromtimestamp(int(hour_key) * 3600, tz=UTC)
            for i in range(0, part.num_rows, self.config.chunk_rows):
                chunk = part.slice(i, self.config.chunk_rows)
                data = chunks.parquet_bytes(chunk)
                out.append(Pending(self._key(hour), hour, data, chunk.num_rows))
        return out

    def _write_pending(self) -> int:
        written = 0
        while self._pending:
            item = self._pending[0]
            try:
                self._put(item)
            except Exception as exc:
                logger.warning(
                    "capture %s: could not write %s to %s (%s: %s); %d chunks kept for a retry "
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
            with self._cond:
                self._unwritten -= item.rows
                self._cond.notify_all()
        return written

    def _put(self, item: Pending) -> None:
        put_once(self.store, item, self._key)

    def _key(self, hour: datetime) -> str:
        self._seq += 1
        return keys.capture_chunk(self.spec.name, hour, writer_name(self.worker_id, self._seq))

    def _flusher_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        # Never dies silently: every error is logged and the loop goes on.
        while not self._stop.is_set():
            self._wake.wait(self.config.flush_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                ok = self._flush()[1]
            except Exception:
                logger.exception("capture %s: flush failed; retrying", self.spec.name)
                ok = False
            if not ok:  # back off: do not hammer a failing store on every wake-up
                self._stop.wait(self.config.flush_interval_s)


__all__ = ["CAPTURED_AT", "Capture", "CaptureConfig", "FeatureMatrix"]
