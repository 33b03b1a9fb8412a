"""The profile job: whylogs profiles of captured predictions, one per window, made from the
Parquet chunks the service stored (as SageMaker Model Monitor processes captured data). It
is the only producer of window profiles; serving workers never profile.

Incremental and idempotent: each run profiles only chunks no earlier run has, so a window
still open, or a chunk written late (a store that was down), is profiled by a later run,
into one more profile of that window (a window's profiles merge). Beside each profile
``chunks=<digest>.bin`` the job first writes ``chunks=<digest>.json``, the chunk keys it
covers; a chunk counts as profiled once both exist, so a run that dies between the two is
redone, never counted twice. One run at a time works on a problem: a run takes a lease (a
compare-and-swap pointer, :func:`components.core.keys.profile_lease`) for ``lease_s``
seconds, renews it before writing each window and releases it at the end; a run that finds
it held raises ProfileJobBusyError and does nothing (two runs seeing different new chunks
at once would count the shared ones twice). A run that dies holds it until it expires.

Chunks are read one at a time, each once, in time order, and each window is written once
no later chunk can hold its rows: memory stays bounded by one chunk and the running
profiles of one hour's windows, whatever the history.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from components.capture.chunks import CAPTURED_AT, outputs_of
from components.capture.readers import capture_keys, read_chunk, within
from components.capture.windows import as_utc, parse_window, utc_now, window_start
from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import ObjectExistsError, PointerConflictError, Store, StoreError
from components.data import profiling


@dataclass(frozen=True)
class ProfiledWindow:
    """What :func:`profile_captures` did for one window."""

    start: datetime
    chunks: int  # chunks newly profiled (0: nothing new)
    rows: int  # of their rows, those in this window
    key: str | None  # the profile written (None: no new rows)


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
    """Profile the captured chunks not profiled yet, one profile per window of width
    ``window``, for the windows that begin before ``until`` and end after ``since`` (both
    optional). Holds the problem's lease while it runs (see the module's docstring)."""
    width = parse_window(window)
    lease = _Lease(store, keys.profile_lease(spec.name), lease_s, clock)
    try:
        return _profile_new_chunks(store, spec, width, since, until, lease)
    finally:
        lease.release()


def _chunks_by_window(
    store: Store, problem: str, width: timedelta, lo: datetime | None, hi: datetime | None
) -> dict[datetime, list[str]]:
    """The chunks whose hour partition overlaps each window in [lo, hi)."""
    by_window: dict[datetime, list[str]] = {}
    for key in capture_keys(store, problem, lo, hi + width if hi is not None else None):
        hour = keys.capture_hour(key)
        start = window_start(hour, width)
        while start < hour + timedelta(hours=1):
            if (lo is None or start >= lo) and (hi is None or start < hi):
                by_window.setdefault(start, []).append(key)
            start += width
    return by_window


def _profile_new_chunks(
    store: Store,
    spec: ProblemSpec,
    width: timedelta,
    since: datetime | None,
    until: datetime | None,
    lease: _Lease,
) -> list[ProfiledWindow]:
    lo = window_start(since, width) if since is not None else None
    hi = as_utc(until) if until is not None else None
    names = [*spec.input_features, *outputs_of(spec)]

    results: dict[datetime, ProfiledWindow] = {}
    todo: dict[datetime, list[str]] = {}  # window: its chunks not profiled yet
    windows_of: dict[str, list[datetime]] = {}  # the same, chunk: its windows
    for start, chunk_keys in sorted(_chunks_by_window(store, spec.name, width, lo, hi).items()):
        profiled = _profiled_chunks(store, spec.name, start)
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
        # ids and flags are not profiled; dictionaries are decoded by Arrow, far cheaper
        # than pandas categoricals that the profile would convert back to values.
        chunk = _decoded(read_chunk(store.get_bytes(key), [CAPTURED_AT, *names])).to_pandas()
        for start in windows_of[key]:
            profile = running.setdefault(start, profiling.RunningProfile())
            rows = within(chunk, start, start + width)
            if len(rows):
                profile.track(rows.reindex(columns=names))
    for start, profile in running.items():
        lease.renew()
        results[start] = _finish_window(store, spec, start, todo[start], profile)
    return [results[start] for start in sorted(results)]


def _decoded(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns as plain columns of their values."""
    return pa.table(
        {
            name: column.cast(column.type.value_type)
            if pa.types.is_dictionary(column.type)
            else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


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
    ledger_key = keys.profile_ledger(spec.name, start, digest)
    ledger = {"window": start.isoformat(), "rows": running.rows, "chunks": chunks}
    # Taken: an earlier run of the same chunks died before its profile; finish it.
    with contextlib.suppress(ObjectExistsError):
        store.put_json(ledger_key, ledger, create_only=True)
    key = None
    if running.rows:
        key = keys.ledger_profile(ledger_key)
        # Taken: written by a run of the same chunks at the same time.
        with contextlib.suppress(ObjectExistsError):
            store.put_bytes(key, running.serialize(), create_only=True)
    return ProfiledWindow(start, len(chunks), running.rows, key)


def profile_captured_window(
    store: Store, spec: ProblemSpec, start: datetime, window: str = "1h"
) -> str | None:
    """:func:`profile_captures` for the one window that holds ``start``: the key of the
    profile written, None when it had no new rows."""
    begin = window_start(start, window)
    until = begin + parse_window(window)
    for done in profile_captures(store, spec, window=window, since=begin, until=until):
        if done.start == begin:
            return done.key
    return None


def _profiled_chunks(store: Store, problem: str, start: datetime) -> set[str]:
    """The chunks profiled into a window by earlier runs: those of every ledger whose
    profile was written (or that had no rows to profile)."""
    found = set(store.list(keys.profile_window(problem, start) + "/"))
    profiled: set[str] = set()
    for key in found:
        if keys.is_profile_ledger(key):
            ledger = store.get_json(key)
            if not ledger["rows"] or keys.ledger_profile(key) in found:
                profiled.update(ledger["chunks"])
    return profiled


def profile_windows(store: Store, problem: str) -> list[datetime]:
    """The start of every window that has at least one profile, oldest first."""
    found = {
        keys.profile_window_start(key)
        for key in store.list(keys.profiles_prefix(problem))
        if key.endswith(".bin")
    }
    return sorted(found - {None})


def window_profiles(store: Store, problem: str, window_start: datetime) -> list[bytes]:
    """The serialised profiles of the window starting at ``window_start``; merge them with
    :func:`components.data.profiling.merge_profiles`."""
    folder = keys.profile_window(problem, window_start) + "/"
    return [store.get_bytes(key) for key in store.list(folder) if key.endswith(".bin")]
