"""Reading what capture stored: the rows of a time range. (Window profiles are read from
:mod:`components.monitoring.profile_job`, which writes them.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.capture.chunks import BASE_COLUMNS, CAPTURED_AT
from components.capture.windows import as_utc
from components.core import keys
from components.core.store import Store


def read_captures(
    store: Store,
    problem: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every captured row of ``problem`` with ``start <= captured_at < end`` (either bound
    optional), sorted by ``captured_at``: all its columns, or ``columns`` (captured_at is
    always read). Only the hour partitions that overlap are read."""
    lo = as_utc(start) if start is not None else None
    hi = as_utc(end) if end is not None else None
    wanted = None if columns is None else list(dict.fromkeys([CAPTURED_AT, *columns]))
    tables = [
        read_chunk(store.get_bytes(key), wanted) for key in capture_keys(store, problem, lo, hi)
    ]
    if not tables:
        return pd.DataFrame({name: [] for name in (wanted or BASE_COLUMNS)})
    frame = within(_concat(tables), lo, hi)
    return frame.sort_values(CAPTURED_AT, kind="stable").reset_index(drop=True)


def read_chunk(data: bytes, columns: list[str] | None) -> pa.Table:
    """A chunk's table, of ``columns`` where given (those an older chunk lacks are left out:
    they read as null once the tables are concatenated)."""
    parquet = pq.ParquetFile(pa.BufferReader(data))
    if columns is not None:
        columns = [c for c in columns if c in parquet.schema_arrow.names]
    return parquet.read(columns=columns)


def capture_keys(
    store: Store, problem: str, lo: datetime | None = None, hi: datetime | None = None
) -> list[str]:
    """The chunks of the hour partitions that overlap [lo, hi)."""
    return hour_partition_keys(store, keys.captures_prefix(problem), keys.capture_hour, lo, hi)


def hour_partition_keys(
    store: Store,
    prefix: str,
    hour_of: Callable[[str], datetime | None],
    lo: datetime | None,
    hi: datetime | None,
) -> list[str]:
    """The keys under ``prefix`` whose hour partition (``hour_of``) overlaps [lo, hi)."""
    found = []
    for key in store.list(prefix):
        hour = hour_of(key)
        if hour is None:
            continue
        if (lo is None or hour + timedelta(hours=1) > lo) and (hi is None or hour < hi):
            found.append(key)
    return found


def within(frame: pd.DataFrame, lo: datetime | None, hi: datetime | None) -> pd.DataFrame:
    """The rows captured in [lo, hi) (either bound optional)."""
    mask = pd.Series(True, index=frame.index)
    if lo is not None:
        mask &= frame[CAPTURED_AT] >= lo
    if hi is not None:
        mask &= frame[CAPTURED_AT] < hi
    return frame[mask]


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowException, TypeError):
        # Chunks whose fallback types cannot be unified in Arrow (text in a time column).
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)
