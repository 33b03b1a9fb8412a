"""A serving worker's journal of answered requests, replayed into the capture by another
process at idle priority (lifecycle stages 6 and 8).

Capturing a prediction means Arrow conversion, Parquet and whylogs: about 5 µs of CPU per
row, a quarter of what serving a 100-record request costs. Done in the worker (as
:class:`components.capture.buffer.Capture` alone does), every µs of it comes off serving when the
CPUs are busy, and its GIL holds lengthen the latency tail. With a journal, the worker
only appends each request as it arrived (the raw body, the prediction ids, the scores and
the time: one ``write`` per request) to a local file, and a replayer process, scheduled
below everything else (``SCHED_IDLE``), turns the journal into the same Parquet chunks and
whylogs profiles with the same validation and answers, without predicting again. This is
how SageMaker's data capture separates recording from statistics. The work is moved to idle
CPU, not removed: under a sustained overload the journal grows on disk (up to
``max_spool_bytes``, then ``append()`` waits, as the capture's backpressure does).

Layout, one folder per problem and model version (a replayer replays its own model's
requests only)::

    <spool>/<problem>/<version>/<pid>_<token>_<seq:08d>_<worker>.open   written by process pid
                                                                .ready  closed, to replay
                                                                .replaying  being replayed

A segment is a header (magic, then a JSON line: what the worker served with) and entries;
an entry is ``<MLJe><received_at µs><body len><ids len><scores len><dtype>`` then the body,
the ids (newline-separated) and the scores. Nothing answered is lost, and nothing is
stored twice:

- an entry is in the file (the kernel's page cache) before the answer leaves the worker, so
  a worker killed without warning loses nothing it answered; a replayer adopts the segments
  of a writer process that no longer exists, ``.open`` ones included (an entry cut short
  there belongs to a request that was never answered, and is logged and skipped);
- a segment is stored under keys made from its own name (``Capture.flush_as``), then
  deleted: replayed again after a crash in between, it finds its keys taken and stores
  nothing twice;
- an entry that cannot be replayed (a model or options changed under an old journal) is
  kept in ``<segment>.failed`` and logged, never dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_SEGMENT_MAGIC = b"MLJ1"
_ENTRY = struct.Struct("<4sqIIIc")
_ENTRY_MAGIC = b"MLJe"
_DTYPES = {b"f": np.dtype("<f4"), b"d": np.dtype("<f8")}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_NAME = re.compile(r"^(\d+)_([0-9a-f]{8})_(\d{8})_([A-Za-z0-9_.:-]+)\.(open|ready|replaying)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def spool_folder(spool: str | Path, problem: str, version: str) -> Path:
    """Where the journal of one model version of a problem lives."""
    return Path(spool) / problem / version


@dataclass(frozen=True)
class Entry:
    """One answered request, as the worker journaled it."""

    body: bytes
    ids: list[str]
    scores: np.ndarray
    received_at: datetime


class Journal:
    """Appends answered requests to this process's current segment; thread-safe.

    A segment is closed (and becomes ``.ready`` for the replayer) every ``segment_s`` by a
    daemon thread (see :meth:`start`), once ``segment_bytes`` long, and on :meth:`close`.
    """

    def __init__(
        self,
        folder: str | Path,
        worker_id: str,
        meta: dict,
        *,
        segment_s: float = 5.0,
        segment_bytes: int = 8 << 20,
        max_spool_bytes: int = 2 << 30,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watch: Callable[[], object] | None = None,
    ) -> None:
        """``watch``: called about once a second by the thread (see :meth:`start`), e.g. to
        restart a replayer that died."""
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,120}", worker_id):
            raise ValueError(f"invalid worker_id {worker_id!r}: letters, digits, '_.:-' only")
        if segment_s <= 0 or segment_bytes <= 0 or max_spool_bytes <= 0:
            raise ValueError("segment_s, segment_bytes and max_spool_bytes must be positive")
        self.folder = Path(folder)
        self.worker_id = worker_id
        self.segment_s = segment_s
        self.segment_bytes = segment_bytes
        self.max_spool_bytes = max_spool_bytes
        self.clock = clock
        self.watch = watch
        self._header = _segment_header(meta)
        self._token = os.urandom(4).hex()  # tells this writer from an earlier one with its pid
        self._pid = os.getpid()
        self._seq = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread that closes the current segment every ``segment_s``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"journal-{self.worker_id}", daemon=True
            )
            self._thread.start()

    def append(
        self, body: bytes, ids: list[str], scores: np.ndarray, received_at: datetime | None = None
    ) -> None:
        """Journal one answered request: the body as received, its prediction ids and its
        scores (one per id). One ``write`` call; no parsing, no conversion."""
        entry = encode_entry(body, ids, scores, received_at or self.clock())
        with self._lock:
            if self._closed:
                raise RuntimeError("this Journal is closed: it no longer records")
            if self._fd is None:
                self._open()
            _write_all(self._fd, entry)
            self._size += len(entry)
            if self._size >= self.segment_bytes:
                self._seal()

    def close(self) -> None:
        """Stop the thread and close the current segment. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._fd is not None:
                self._seal()
            self._closed = True

    def segments(self) -> list[Path]:
        """This process's segments not yet replayed (closed or being replayed)."""
        return [p for p in _listing(self.folder) if _owner(p) == self._pid]

    def wait_replayed(self, timeout: float) -> bool:
        """Wait until the replayer has stored every closed segment of this process."""
        deadline = time.monotonic() + timeout
        while self.segments():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _open(self) -> None:
        self._wait_for_room()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{self._pid}_{self._token}_{self._seq:08d}_{self.worker_id}"
        self._path = self.folder / f"{name}.open"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        _write_all(self._fd, self._header)
        self._size = len(self._header)
        self._opened_at = time.monotonic()

    def _seal(self) -> None:
        os.close(self._fd)
        self._path.rename(self._path.with_suffix(".ready"))
        self._fd = self._path = None

    def _wait_for_room(self) -> None:
        """Backpressure: while the journal waiting for replay is over ``max_spool_bytes``
        (the replayer has had no CPU for long), new segments wait instead of filling the
        disk."""
        warned = False
        while (backlog := _backlog_bytes(self.folder)) >= self.max_spool_bytes:
            if not warned:
                logger.warning(
                    "journal %s: %d bytes wait for replay (limit %d); requests wait for room",
                    self.folder,
                    backlog,
                    self.max_spool_bytes,
                )
                warned = True
            time.sleep(0.1)

    def _run(self) -> None:
        while not self._stop.wait(min(self.segment_s, 1.0)):
            with self._lock:
                due = time.monotonic() - self._opened_at >= self.segment_s
                if self._fd is not None and due:
                    try:
                        self._seal()
                    except OSError:
                        logger.exception("journal %s: could not close a segment", self.folder)
            if self.watch is not None:
                try:
                    self.watch()
                except Exception:
                    logger.exception("journal %s: watch failed", self.folder)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _listing(folder: Path) -> list[Path]:
    try:
        paths = list(folder.iterdir())
    except FileNotFoundError:
        return []
    return sorted(p for p in paths if p.suffix in (".ready", ".replaying"))


def _backlog_bytes(folder: Path) -> int:
    total = 0
    for path in _listing(folder):
        with contextlib.suppress(FileNotFoundError):  # replayed meanwhile
            total += path.stat().st_size
    return total


def _owner(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; a zombie (killed, not yet reaped, as
    under a container's PID 1 that reaps nothing) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state follows the command name, which may contain spaces
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


def read_segment(path: Path) -> tuple[dict, Iterator[Entry | bytes]]:
    """A segment's header and its entries; an entry that cannot be decoded is yielded as
    its raw bytes (up to the end of the file when its lengths cannot be trusted)."""
    data = path.read_bytes()
    if not data.startswith(_SEGMENT_MAGIC) or b"\n" not in data:
        raise ValueError(f"{path}: not a journal segment")
    end = data.index(b"\n")
    meta = json.loads(data[len(_SEGMENT_MAGIC) : end])
    return meta, _entries(path, data, end + 1)


def _entries(path: Path, data: bytes, offset: int) -> Iterator[Entry | bytes]:
    size = _ENTRY.size
    while offset < len(data):
        if len(data) - offset < size:
            logger.warning(
                "journal %s: %d bytes at the end are an entry cut short (its writer died "
                "writing it, before answering); skipped",
                path,
                len(data) - offset,
            )
            return
        magic, micros, n_body, n_ids, n_scores, code = _ENTRY.unpack_from(data, offset)
        stop = offset + size + n_body + n_ids + n_scores
        if magic != _ENTRY_MAGIC or code not in _DTYPES:
            yield data[offset:]
            return
        if stop > len(data):
            logger.warning(
                "journal %s: the last entry is cut short (%d of %d bytes; its writer died "
                "writing it, before answering); skipped",
                path,
                len(data) - offset,
                stop - offset,
            )
            return
        at = offset + size
        body = data[at : at + n_body]
        ids = data[at + n_body : at + n_body + n_ids].decode().split("\n") if n_ids else []
        scores = np.frombuffer(
            data,
            dtype=_DTYPES[code],
            count=n_scores // _DTYPES[code].itemsize,
            offset=at + n_body + n_ids,
        )
        received = _EPOCH + timedelta(microseconds=micros)
        yield Entry(body, ids, scores, received)
        offset = stop


class Replayer:
    """Replays segments into a capture. ``replay(entry, meta)`` records one entry of a
    segment whose header is ``meta`` (raising for an entry it cannot take); ``store(name)``
    writes what was recorded under keys made from ``name`` and says whether all of it is
    stored (``Capture.flush_as``)."""

    def __init__(
        self,
        folder: str | Path,
        replay: Callable[[Entry, dict], object],
        store: Callable[[str], bool],
        *,
        owner: int,
        retry_s: float = 5.0,
    ) -> None:
        self.folder = Path(folder)
        self.replay = replay
        self.store = store
        self.owner = owner
        self.retry_s = retry_s

    def claimable(self) -> list[Path]:
        """Segments to replay: closed ones of the owner, and any of a writer process that
        no longer exists (its ``.open`` segment included)."""
        out = []
        try:
            names = sorted(p.name for p in self.folder.iterdir())
        except FileNotFoundError:
            return []
        for name in names:
            match = _NAME.match(name)
            if not match:
                continue
            pid, state = int(match.group(1)), match.group(5)
            if (pid == self.owner and state != "open") or not process_alive(pid):
                out.append(self.folder / name)
        return out

    def run_once(self) -> int:
        """Replay every claimable segment; return how many were stored."""
        done = 0
        for path in self.claimable():
            if self.replay_segment(path):
                done += 1
        return done

    def replay_segment(self, path: Path) -> bool:
        """Replay one segment, store it (retrying a failing store) and delete it. False if
        another replayer took it first."""
        claimed = path.with_suffix(".replaying")
        if path != claimed:
            try:
                path.rename(claimed)
            except FileNotFoundError:
                return False  # another replayer claimed it
        name = _NAME.match(claimed.name)
        flush_name = f"{name.group(4)}-{name.group(2)}-{name.group(3)}"
        try:
            meta, entries = read_segment(claimed)
        except ValueError:
            # Its writer died between creating it and writing its header: it holds nothing
            # answered. Anything else unreadable is set aside, not deleted.
            if claimed.stat().st_size <= len(_SEGMENT_MAGIC):
                claimed.unlink()
            else:
                logger.error("journal %s: not a readable segment; kept as .failed", claimed)
                claimed.rename(claimed.with_suffix(".failed"))
            return True
        failed, errors = bytearray(), []
        records = 0
        for entry in entries:
            try:
                if isinstance(entry, bytes):
                    raise ValueError(f"undecodable bytes ({len(entry)}) after a valid entry")
                self.replay(entry, meta)
                records += len(entry.ids)
            except Exception as exc:  # kept, never dropped
                errors.append(exc)
                failed += (
                    entry
                    if isinstance(entry, bytes)
                    else encode_entry(entry.body, entry.ids, entry.scores, entry.received_at)
                )
        if failed:
            logger.error(
                "journal %s: %d entries could not be replayed (first: %s); kept in %s",
                claimed,
                len(errors),
                errors[0],
                claimed.with_suffix(".failed"),
            )
            _keep_failed(claimed, meta, bytes(failed))
        while not self.store(flush_name):
            logger.warning("journal %s: storing failed; retrying in %.3g s", claimed, self.retry_s)
            time.sleep(self.retry_s)
        claimed.unlink()
        logger.debug("journal %s: %d records stored", claimed, records)
        return True


def encode_entry(body: bytes, ids: list[str], scores: np.ndarray, received_at: datetime) -> bytes:
    """One journal entry: fixed header, then body, ids and scores (float32 or float64,
    kept as they are: a label depends on the score's exact value)."""
    scores = np.ascontiguousarray(scores)
    code = _CODES.get(scores.dtype.newbyteorder("<"))
    if code is None:
        scores, code = scores.astype("<f8"), b"d"
    id_blob = "\n".join(ids).encode()
    score_blob = scores.tobytes()
    micros = (received_at - _EPOCH) // timedelta(microseconds=1)
    head = _ENTRY.pack(_ENTRY_MAGIC, micros, len(body), len(id_blob), len(score_blob), code)
    return b"".join((head, body, id_blob, score_blob))


def _segment_header(meta: dict) -> bytes:
    return _SEGMENT_MAGIC + json.dumps(meta, sort_keys=True).encode() + b"\n"


def _keep_failed(segment: Path, meta: dict, data: bytes) -> None:
    """Entries that could not be replayed, as a segment of their own. Written once: a
    segment replayed again fails the same entries."""
    try:
        with segment.with_suffix(".failed").open("xb") as out:
            out.write(_segment_header(meta) + data)
    except FileExistsError:
        pass
