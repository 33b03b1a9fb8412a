"""The snapshot a retraining trains on (lifecycle stage 8): the labelled production rows,
validated and quarantined like any input, the most recent of them held out, the rest merged
with the parent (reference) snapshot's rows; written as a new content-hashed snapshot whose
manifest records its lineage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from components.capture.chunks import CAPTURED_AT, PREDICTION_ID
from components.capture.windows import parse_window
from components.core.problem import ProblemSpec
from components.core.store import Store
from components.data import profiling
from components.data.snapshot import (
    SnapshotManifest,
    content_id,
    read_snapshot,
    write_quarantine,
    write_snapshot,
)
from components.data.validation import ROW_COLUMN, check_quarantine_threshold, validate_frame
from components.retraining.production import (
    MODEL_VERSION,
    Joined,
    hold_out,
    labelled_production,
    merge_rows,
)

_KEPT = (PREDICTION_ID, CAPTURED_AT, MODEL_VERSION)  # joined columns kept with held-out rows


@dataclass(frozen=True)
class RetrainingData:
    """The new snapshot's manifest (with its lineage) and its held-out rows: snapshot
    columns plus prediction_id, captured_at and model_version; empty when no window had
    enough labelled rows to hold out."""

    manifest: SnapshotManifest
    holdout: pd.DataFrame
    holdout_windows: list[datetime]


def build_snapshot(
    store: Store, spec: ProblemSpec, parent: str, *, as_of: datetime
) -> RetrainingData:
    """Join, validate, hold out, merge and write; QuarantineThresholdError (after storing
    the quarantined rows and their report) when too many production rows fail validation."""
    data_spec = spec.retraining.training_data
    since = None
    if data_spec.window_days is not None:
        since = as_of - pd.Timedelta(days=data_spec.window_days)
    joined = labelled_production(store, spec, since, as_of, as_of=as_of)
    source = f"labelled production rows of {spec.name} up to {as_of:%Y-%m-%d %H:%M}"
    checked = _validated(store, spec, joined, source)
    width = parse_window(spec.monitoring.window)
    held = hold_out(checked.valid, width, data_spec.holdout_min_rows)
    reference = read_snapshot(store, spec.name, parent)
    merged = merge_rows(
        reference,
        held.remaining[list(reference.columns)],
        spec,
        window_days=data_spec.window_days,
        as_of=as_of,
    )
    lineage = {
        "parent_snapshot": parent,
        "as_of": as_of.isoformat(),
        "captures": {
            "start": since.isoformat() if since is not None else None,
            "end": as_of.isoformat(),
            "windows": _windows(held.remaining, width),
            "models": sorted(str(v) for v in checked.valid[MODEL_VERSION].dropna().unique()),
        },
        "holdout": {"windows": [w.isoformat() for w in held.windows], "rows": len(held.rows)},
        "feedback": joined.counts,
        "rows": {**merged.counts, "quarantined": checked.quarantined, "held_out": len(held.rows)},
        "training_data": data_spec.model_dump(),
    }
    manifest = write_snapshot(
        store,
        spec,
        merged.frame,
        source=source,
        profile=profiling.profile_frame(merged.frame[list(spec.features)]),
        quarantined_rows=checked.quarantined,
        quarantine_key=checked.rows_key,
        validation_key=checked.report_key,
        snapshot_id=_snapshot_id(merged.frame, held.rows, spec),
        now=as_of,
        lineage=lineage,
        holdout=held.rows,
    )
    return RetrainingData(manifest, held.rows, held.windows)


@dataclass(frozen=True)
class _Checked:
    valid: pd.DataFrame  # snapshot columns and the joined ones of _KEPT
    quarantined: int
    report_key: str | None
    rows_key: str | None


def _validated(store: Store, spec: ProblemSpec, joined: Joined, source: str) -> _Checked:
    """The joined rows that pass the problem's schema, with their capture columns; the rest
    quarantined with reasons, stored under the id of the joined rows."""
    rows = joined.rows
    if rows.empty:
        return _Checked(rows, 0, None, None)
    result = validate_frame(rows.drop(columns=list(_KEPT)), spec, source=source)
    bad = np.zeros(len(rows), bool)
    bad[result.quarantined[ROW_COLUMN].to_numpy(dtype=np.int64)] = True
    valid = result.valid.assign(**{c: rows.loc[~bad, c].to_numpy() for c in _KEPT})
    # In the order of the rows they came from, like the quarantined frame's rows.
    quarantined = result.quarantined.assign(**{c: rows.loc[bad, c].to_numpy() for c in _KEPT})
    report_key, rows_key = write_quarantine(
        store, spec, content_id(rows, spec.schema_version), quarantined, result.report.to_dict()
    )
    check_quarantine_threshold(result.report, spec)
    return _Checked(valid, int(bad.sum()), report_key, rows_key)


def _windows(rows: pd.DataFrame, width) -> list[str]:
    """The capture windows (starts) that rows come from, oldest first."""
    if rows.empty:
        return []
    return [w.isoformat() for w in sorted(rows[CAPTURED_AT].dt.floor(width).unique())]


def _snapshot_id(frame: pd.DataFrame, holdout: pd.DataFrame, spec: ProblemSpec) -> str:
    """The content id of the rows trained on and the rows held out, together."""
    parts = f"{content_id(frame, spec.schema_version)}:{content_id(holdout, spec.schema_version)}"
    return hashlib.sha256(parts.encode()).hexdigest()[:16]
