"""Snapshots: validated data stored under its content hash, with a manifest.

Layout in the store (immutable objects first, the pointer that makes them visible last):

    quarantine/<problem>/<input_id>/rows.parquet     rows that failed, with _row and _reasons
    quarantine/<problem>/<input_id>/report.json      the validation report
    snapshots/<problem>/<snapshot_id>/data.parquet   the validated rows
    snapshots/<problem>/<snapshot_id>/profile.bin    whylogs reference profile
    snapshots/<problem>/<snapshot_id>/manifest.json  written last: its presence means complete
    snapshots/<problem>/LATEST                       pointer to the newest snapshot (CAS)

The snapshot id hashes the schema version, column names, dtypes and every value, so the
same input always gives the same id, whatever file or process it came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import KeyNotFoundError, ObjectExistsError, PointerConflictError, Store

_POINTER_RETRIES = 10


class NoSnapshotError(LookupError):
    """The problem has no snapshot yet."""


class SnapshotManifest(BaseModel):
    snapshot_id: str
    problem: str
    schema_version: int
    source: str
    rows: int
    quarantined_rows: int
    columns: dict[str, str]
    event_time_min: str | None
    event_time_max: str | None
    data_key: str
    data_sha256: str
    profile_key: str
    quarantine_key: str | None
    validation_key: str | None
    created_at: str
    # A snapshot made by retraining: where its rows came from (the parent snapshot, the
    # capture windows and labels used, the row counts of each) and its held-out rows.
    lineage: dict[str, Any] | None = None
    holdout_key: str | None = None


def content_id(frame: pd.DataFrame, schema_version: int = 1) -> str:
    """A stable 16-hex-digit id of a frame's columns, dtypes and values (not its index)."""
    digest = hashlib.sha256(f"v{schema_version}".encode())
    for name, dtype in frame.dtypes.items():
        digest.update(f"|{name}:{dtype}".encode())
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    digest.update(rows.tobytes())
    return digest.hexdigest()[:16]


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


def write_quarantine(
    store: Store, spec: ProblemSpec, input_id: str, rows: pd.DataFrame, report: dict
) -> tuple[str, str | None]:
    """Store the validation report and the quarantined rows; return both keys.

    Keyed by the id of the whole input, so running the same input twice writes nothing new.
    The rows' key is None when no row was quarantined (the report is still stored).
    """
    report_key = keys.quarantine(spec.name, input_id, "report.json")
    _put_once(store, report_key, json.dumps(report, indent=2, default=str).encode())
    if rows.empty:
        return report_key, None
    rows_key = keys.quarantine(spec.name, input_id, "rows.parquet")
    _put_once(store, rows_key, to_parquet_bytes(_text_objects(rows)))
    return report_key, rows_key


def write_snapshot(
    store: Store,
    spec: ProblemSpec,
    valid: pd.DataFrame,
    *,
    source: str,
    profile: bytes,
    quarantined_rows: int,
    quarantine_key: str | None,
    validation_key: str | None,
    snapshot_id: str | None = None,
    now: datetime | None = None,
    lineage: dict[str, Any] | None = None,
    holdout: pd.DataFrame | None = None,
) -> SnapshotManifest:
    """Write data, profile and manifest (create-only), then point LATEST at the snapshot.
    ``lineage`` and the ``holdout`` rows (of a retraining) are recorded with it.

    Writing the same snapshot again is a no-op that returns the manifest already stored.
    """
    snapshot_id = snapshot_id or content_id(valid, spec.schema_version)

    def key(name: str) -> str:
        return keys.snapshot(spec.name, snapshot_id, name)

    try:
        existing = SnapshotManifest.model_validate(store.get_json(key("manifest.json")))
    except KeyNotFoundError:
        existing = None
    if existing is None:
        data = to_parquet_bytes(valid)
        _put_once(store, key("data.parquet"), data)
        _put_once(store, key("profile.bin"), profile)
        manifest = _manifest(spec, valid, snapshot_id, source, data, quarantined_rows, now)
        holdout_key = None
        if holdout is not None:
            holdout_key = key("holdout.parquet")
            _put_once(store, holdout_key, to_parquet_bytes(holdout))
        manifest = manifest.model_copy(
            update={
                "quarantine_key": quarantine_key,
                "validation_key": validation_key,
                "lineage": lineage,
                "holdout_key": holdout_key,
            }
        )
        _put_once(store, key("manifest.json"), manifest.model_dump_json(indent=2).encode())
        existing = manifest
    _point_latest(store, spec.name, snapshot_id)
    return existing


def latest_snapshot_id(store: Store, problem: str) -> str | None:
    pointer = store.read_pointer(keys.latest_snapshot(problem))
    return json.loads(pointer.value)["snapshot_id"] if pointer else None


def read_manifest(store: Store, problem: str, snapshot_id: str) -> SnapshotManifest:
    key = keys.snapshot(problem, snapshot_id, "manifest.json")
    return SnapshotManifest.model_validate(store.get_json(key))


def read_snapshot(store: Store, problem: str, snapshot_id: str) -> pd.DataFrame:
    """Load a snapshot's rows, verifying them against the manifest's checksum."""
    manifest = read_manifest(store, problem, snapshot_id)
    data = store.get_bytes(manifest.data_key)
    _check_data(store, manifest, hashlib.sha256(data).hexdigest())
    return pd.read_parquet(io.BytesIO(data))


def read_holdout(store: Store, problem: str, snapshot_id: str) -> pd.DataFrame | None:
    """The rows a retraining snapshot held out, or None when it has none."""
    manifest = read_manifest(store, problem, snapshot_id)
    if manifest.holdout_key is None:
        return None
    return pd.read_parquet(io.BytesIO(store.get_bytes(manifest.holdout_key)))


def download_snapshot(store: Store, problem: str, snapshot_id: str, path: Path) -> Path:
    """Stream a snapshot's data file to `path` (for reading in chunks) and return the path,
    verified against the manifest's checksum: a corrupt file is removed, not returned.
    NoSnapshotError when the problem has no such snapshot."""
    try:
        manifest = read_manifest(store, problem, snapshot_id)
    except KeyNotFoundError:
        raise NoSnapshotError(
            f"{store.uri(keys.snapshot(problem, snapshot_id))}: no snapshot {snapshot_id!r} "
            f"for problem {problem!r}; check the id, or run `mlops data prep` to make one"
        ) from None
    store.get_file(manifest.data_key, path)
    with path.open("rb") as fh:
        actual = hashlib.file_digest(fh, "sha256").hexdigest()
    try:
        _check_data(store, manifest, actual)
    except ValueError:
        path.unlink(missing_ok=True)
        raise
    return path


def _check_data(store: Store, manifest: SnapshotManifest, actual_sha256: str) -> None:
    """ValueError unless the snapshot's data has the sha256 its manifest records."""
    if actual_sha256 != manifest.data_sha256:
        raise ValueError(
            f"{store.uri(manifest.data_key)}: checksum mismatch (manifest says "
            f"{manifest.data_sha256[:12]}…, file is {actual_sha256[:12]}…); the snapshot is "
            "corrupt"
        )


def _manifest(spec, valid, snapshot_id, source, data, quarantined_rows, now) -> SnapshotManifest:
    times = valid[spec.event_time_column]
    return SnapshotManifest(
        snapshot_id=snapshot_id,
        problem=spec.name,
        schema_version=spec.schema_version,
        source=source,
        rows=len(valid),
        quarantined_rows=quarantined_rows,
        columns={str(k): str(v) for k, v in valid.dtypes.items()},
        event_time_min=times.min().isoformat() if len(valid) else None,
        event_time_max=times.max().isoformat() if len(valid) else None,
        data_key=keys.snapshot(spec.name, snapshot_id, "data.parquet"),
        data_sha256=hashlib.sha256(data).hexdigest(),
        profile_key=keys.snapshot(spec.name, snapshot_id, "profile.bin"),
        quarantine_key=None,
        validation_key=None,
        created_at=(now or datetime.now(UTC)).isoformat(),
    )


def _put_once(store: Store, key: str, data: bytes) -> None:
    """Create-only write that treats an identical object already there as success."""
    # Content-addressed: an object already there was written from the same content.
    with contextlib.suppress(ObjectExistsError):
        store.put_bytes(key, data, create_only=True)


def _point_latest(store: Store, problem: str, snapshot_id: str) -> None:
    key = keys.latest_snapshot(problem)
    body = json.dumps({"snapshot_id": snapshot_id, "at": datetime.now(UTC).isoformat()}).encode()
    for _ in range(_POINTER_RETRIES):
        current = store.read_pointer(key)
        try:
            store.swap_pointer(key, body, current.etag if current else None)
            return
        except PointerConflictError:
            continue
    raise PointerConflictError(f"{store.uri(key)}: still contended after {_POINTER_RETRIES} tries")


def _text_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows may hold anything; object columns are stored as text so Parquet
    accepts them, nulls kept as nulls."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = out[name].map(lambda v: None if v is None or v is pd.NA else str(v))
    return out
