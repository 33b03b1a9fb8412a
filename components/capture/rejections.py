"""What the service refused, and why, per minute (lifecycle stage 6: the rejection rate).

A data-quality incident shows mostly as a rising rejection rate, rejected rows / received
rows (received = answered + rejected), so the counts are exact and written like captures:

- Each worker's :class:`~components.capture.buffer.Capture` owns a
  :class:`RejectionCounter`. ``record()`` adds one refused request to in-memory counters
  under a lock (no I/O); the capture's flusher thread writes them with the chunks, every
  flush interval and on ``close()`` (SIGTERM), as one small create-only JSON object per hour
  under ``rejections/<problem>/date=YYYY-MM-DD/hour=HH/<worker>-<seq:06d>-<uuid8>.json``
  (:func:`components.core.keys.rejection_counts`). A failed write keeps its object, encoded
  under its key, for a retry with the same key (identical bytes found there mean an earlier
  attempt did succeed), and new counts wait in memory meanwhile: nothing is lost or counted
  twice. A SIGKILL loses the counts since the last completed flush, as for captures.
- Counts are kept per minute, not per hour: every monitoring window is a whole number of
  minutes aligned on the epoch (:mod:`components.capture.windows`), so a window's sum over
  its minutes is exact whatever its width.

What a refusal counts (decided by the caller, :mod:`components.serving.online`):

- rows: the N records of a body that holds a list of records (all refused, valid or not),
  else 1. An unparseable body (400) and a body too large to read (413) count one row, with
  the reason ``("(body)", "json_invalid")`` or ``("(body)", "too_large")``.
- reasons: one per entry of the answer's detail, as (field, check): the field and the
  pydantic error type. They do not add up to the rows (a row can fail several checks; the
  valid records of a refused request fail none), so the total is counted apart, as the
  reason ``(ALL, ALL)``.

An object holds ``{"format": 1, "problem", "worker", "hour", "counts": [{"minute", "field",
"check", "rows"}, ...]}``, minutes as ISO-8601 UTC, with one ``(ALL, ALL)`` count per minute.
Field names may come from clients (an unknown key they sent): each is cut to 100
characters, and a counter holds at most ``max_reasons`` (minute, field, check) between two
flushes; reasons beyond are counted under the field ``(other)``, so memory stays bounded.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from components.capture.pending import Pending, put_once, writer_name
from components.capture.readers import hour_partition_keys
from components.capture.windows import as_utc, parse_window, window_start
from components.core import keys
from components.core.store import Store

logger = logging.getLogger(__name__)

ALL = "(all)"  # the reason (ALL, ALL) of a minute counts every row refused in it
BODY = "(body)"  # the field of a body refused whole: check "json_invalid" or "too_large"
OTHER = "(other)"  # the field of reasons beyond max_reasons
FORMAT = 1
COLUMNS = ("minute", "field", "check", "rows")
MAX_REASONS = 1000
_MAX_NAME = 100
_KEY = tuple[int, str, str]  # (minute as epoch seconds, field, check)


class RejectionCounter:
    """One worker's counts of refused rows by minute and reason, and their writer.
    ``record()`` is thread-safe and does no I/O; ``flush()`` runs one at a time (the
    capture's flush lock)."""

    def __init__(self, problem: str, worker_id: str, *, max_reasons: int = MAX_REASONS):
        self.problem = problem
        self.worker_id = worker_id
        self.max_reasons = max_reasons
        self._lock = threading.Lock()  # guards _counts, _counted, _pending_rows, _closed
        self._counts: Counter[_KEY] = Counter()
        self._counted = 0  # rows in _counts
        self._pending_rows = 0  # rows in _pending
        self._closed = False
        self._pending: list[Pending] = []
        self._seq = 0

    def record(self, rows: int, reasons: Iterable[tuple[str, str]], at: datetime) -> None:
        """Count one refusal of ``rows`` rows at ``at``, once per (field, check) in
        ``reasons``. RuntimeError once closed."""
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError(f"a refusal refuses at least one row (got {rows!r})")
        minute = int(as_utc(at).timestamp()) // 60 * 60
        why = Counter((field[:_MAX_NAME], check[:_MAX_NAME]) for field, check in reasons)
        if (ALL, ALL) in why:
            raise ValueError(f"({ALL!r}, {ALL!r}) is the total, not a reason")
        with self._lock:
            if self._closed:
                raise RuntimeError("this Capture is closed: it no longer records")
            counts = self._counts
            counts[(minute, ALL, ALL)] += rows
            for (field, check), n in why.items():
                key = (minute, field, check)
                if key not in counts and len(counts) >= self.max_reasons:
                    key = (minute, OTHER, check)
                counts[key] += n
            self._counted += rows

    def close(self) -> None:
        """Refuse further records; what was counted is still written by ``flush()``."""
        with self._lock:
            self._closed = True

    @property
    def unwritten_rows(self) -> int:
        """Refused rows counted but not yet stored (in memory, or waiting for a retry)."""
        with self._lock:
            return self._counted + self._pending_rows

    def flush(self, store: Store) -> bool:
        """Write what was counted; True when nothing is left unwritten. Objects a failing
        store refused are retried first, and new counts taken only once they are written;
        a store error is logged, never raised."""
        if not self._write_pending(store):
            return False
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._pending_rows, self._counted = self._counted, 0
        self._pending = self._encode(counts)  # (plain data: this cannot fail)
        return self._write_pending(store)

    def _encode(self, counts: Counter[_KEY]) -> list[Pending]:
        """One object per hour of the counts."""
        by_hour: dict[int, list[tuple[_KEY, int]]] = {}
        for key, n in sorted(counts.items()):
            by_hour.setdefault(key[0] // 3600 * 3600, []).append((key, n))
        out = []
        for start, items in by_hour.items():
            hour = datetime.fromtimestamp(start, UTC)
            doc = {
                "format": FORMAT,
                "problem": self.problem,
                "worker": self.worker_id,
                "hour": hour.isoformat(),
                "counts": [
                    {
                        "minute": datetime.fromtimestamp(m, UTC).isoformat(),
                        "field": field,
                        "check": check,
                        "rows": n,
                    }
                    for (m, field, check), n in items
                ],
            }
            data = json.dumps(doc, separators=(",", ":")).encode()
            rows = sum(n for (_, field, check), n in items if field == check == ALL)
            out.append(Pending(self._key(hour), hour, data, rows))
        return out

    def _write_pending(self, store: Store) -> bool:
        while self._pending:
            item = self._pending[0]
            try:
                self._put(store, item)
            except Exception as exc:
                logger.warning(
                    "rejections %s: could not write %s to %s (%s: %s); kept for a retry",
                    self.problem,
                    item.key,
                    store.url,
                    type(exc).__name__,
                    exc,
                )
                return False
            self._pending.pop(0)
            with self._lock:
                self._pending_rows -= item.rows
        return True

    def _put(self, store: Store, item: Pending) -> None:
        put_once(store, item, self._key)

    def _key(self, hour: datetime) -> str:
        self._seq += 1
        return keys.rejection_counts(self.problem, hour, writer_name(self.worker_id, self._seq))


# ------------------------------------------------------------------ reading


def read_rejections(
    store: Store, problem: str, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The refused rows of ``problem`` in the minutes starting in [since, until) (either
    bound optional), summed over workers and flushes: columns minute (UTC), field, check,
    rows, sorted. Each minute's line with field and check ``ALL`` is its total of refused
    rows; the other lines are its reasons (which do not add up to the total)."""
    lo = as_utc(since) if since is not None else None
    hi = as_utc(until) if until is not None else None
    counts: list[dict] = []
    for key in rejection_keys(store, problem, lo, hi):
        doc = store.get_json(key)
        if doc.get("format") != FORMAT:
            raise ValueError(
                f"{store.uri(key)}: rejection counts of format {doc.get('format')!r}; this "
                f"code reads format {FORMAT} (upgrade it to read newer counts)"
            )
        counts.extend(doc["counts"])
    frame = pd.DataFrame(counts, columns=list(COLUMNS))
    frame["minute"] = pd.to_datetime(frame["minute"], utc=True, format="ISO8601")
    frame["rows"] = frame["rows"].astype("int64")
    if lo is not None:
        frame = frame[frame["minute"] >= lo]
    if hi is not None:
        frame = frame[frame["minute"] < hi]
    return frame.groupby(["minute", "field", "check"], as_index=False, sort=True)["rows"].sum()


def rejection_keys(
    store: Store, problem: str, lo: datetime | None = None, hi: datetime | None = None
) -> list[str]:
    """The rejection counts of the hour partitions that overlap [lo, hi)."""
    return hour_partition_keys(store, keys.rejections_prefix(problem), keys.rejection_hour, lo, hi)


@dataclass(frozen=True)
class WindowRejections:
    """What was refused in one monitoring window."""

    start: datetime
    rows: int  # rows refused in the window
    reasons: dict[tuple[str, str], int]  # (field, check): rows refused for it, most first

    def rate(self, answered: int) -> float:
        """Rejected rows / received rows (answered + rejected); 0.0 if none was received."""
        received = answered + self.rows
        return self.rows / received if received else 0.0


def rejections_by_window(frame: pd.DataFrame, window: str | timedelta) -> list[WindowRejections]:
    """:func:`read_rejections`' minutes summed per window of width ``window`` (aligned on
    the epoch, as the window profiles are), in time order; windows with no refusal are
    left out."""
    width = parse_window(window) if isinstance(window, str) else window
    if frame.empty:
        return []
    starts = {m: window_start(m, width) for m in frame["minute"].unique()}
    frame = frame.assign(start=frame["minute"].map(starts))
    out = []
    for start, part in frame.groupby("start", sort=True):
        total = part["field"].eq(ALL) & part["check"].eq(ALL)
        by_reason = part[~total].groupby(["field", "check"])["rows"].sum()
        ranked = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
        out.append(
            WindowRejections(
                start=start.to_pydatetime(),
                rows=int(part.loc[total, "rows"].sum()),
                reasons={reason: int(n) for reason, n in ranked},
            )
        )
    return out
