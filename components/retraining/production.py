"""Training data from production (lifecycle stage 8): the predictions capture stored, joined
with the labels that came back through feedback, validated like any input and merged with
the reference snapshot's rows.

`join_labels` and `hold_out` and `merge_rows` are pure; `labelled_production` reads the
store. A prediction id is valid across model versions (the id secret is the problem's, not
a model's), so labels for predictions an earlier champion made join like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from components.capture.chunks import CAPTURED_AT, PREDICTION_ID
from components.capture.feedback import read_feedback
from components.capture.readers import read_captures
from components.core.problem import ProblemSpec
from components.core.store import Store

MODEL_VERSION = "model_version"
_OBSERVED = "_observed_label"


@dataclass(frozen=True)
class Joined:
    """Captured predictions with their labels: ``rows`` has the snapshot's columns (id,
    event time, features, target) plus prediction_id, captured_at and model_version.

    ``captured`` counts the distinct predictions read, ``duplicate_captures`` the repeated
    records of one id (the first kept), ``unlabelled`` the predictions without a label by
    ``as_of``, ``late_labels`` the labels observed after ``as_of`` (not used),
    ``orphan_labels`` the labels (by ``as_of``) of predictions outside the range read."""

    rows: pd.DataFrame
    captured: int
    duplicate_captures: int
    unlabelled: int
    late_labels: int
    orphan_labels: int

    @property
    def counts(self) -> dict[str, int]:
        return {
            "captured": self.captured,
            "labelled": len(self.rows),
            "duplicate_captures": self.duplicate_captures,
            "unlabelled": self.unlabelled,
            "late_labels": self.late_labels,
            "orphan_labels": self.orphan_labels,
        }


def join_labels(
    captured: pd.DataFrame, feedback: pd.DataFrame, spec: ProblemSpec, *, as_of: datetime
) -> Joined:
    """Each captured prediction with the label observed for its id by ``as_of``.

    A request's own id and event time are used where the client sent them; otherwise the
    prediction id and the capture time stand in, so every labelled row has both."""
    captured = captured.astype({PREDICTION_ID: object})  # an empty read has no types
    feedback = feedback.astype({PREDICTION_ID: object})
    first = ~captured[PREDICTION_ID].duplicated(keep="first")
    unique = captured.loc[first & captured[PREDICTION_ID].notna()]
    observed = feedback[feedback["observed_at"] <= pd.Timestamp(as_of)]
    late = len(feedback) - len(observed)
    # The store keeps one label per id; a second record of one id (from elsewhere) is a
    # duplicate of the first observed.
    observed = observed.drop_duplicates(PREDICTION_ID, keep="first")
    # "label" is also the model's answer in a classification capture.
    labels = observed[[PREDICTION_ID, "label"]].rename(columns={"label": _OBSERVED})
    joined = unique.merge(labels, on=PREDICTION_ID, how="inner", validate="one_to_one")
    orphans = int((~observed[PREDICTION_ID].isin(unique[PREDICTION_ID])).sum())
    return Joined(
        rows=_training_columns(joined, spec),
        captured=len(unique),
        duplicate_captures=int((~first).sum()),
        unlabelled=len(unique) - len(joined),
        late_labels=late,
        orphan_labels=orphans,
    )


def _training_columns(joined: pd.DataFrame, spec: ProblemSpec) -> pd.DataFrame:
    def column(name: str, fallback: str) -> pd.Series:
        values = joined[name] if name in joined else pd.Series(None, index=joined.index)
        return values.astype(object).where(values.notna(), joined[fallback].astype(object))

    columns = {
        spec.id_column: column(spec.id_column, PREDICTION_ID).astype(str),
        spec.event_time_column: pd.to_datetime(
            column(spec.event_time_column, CAPTURED_AT), utc=True
        ),
    }
    for name in spec.input_features:
        values = joined[name] if name in joined else pd.Series(None, index=joined.index)
        # Captured categories come back as dictionary columns; validation types them again.
        columns[name] = (
            values.astype(object) if isinstance(values.dtype, pd.CategoricalDtype) else values
        )
    columns[spec.target] = joined[_OBSERVED]
    columns[PREDICTION_ID] = joined[PREDICTION_ID]
    columns[CAPTURED_AT] = joined[CAPTURED_AT]
    columns[MODEL_VERSION] = joined.get(MODEL_VERSION)
    return pd.DataFrame(columns, index=joined.index).reset_index(drop=True)


def labelled_production(
    store: Store, spec: ProblemSpec, start: datetime | None, end: datetime, *, as_of: datetime
) -> Joined:
    """The predictions captured in [start, end) joined with the labels observed by ``as_of``."""
    return join_labels(
        read_captures(store, spec.name, start, end),
        read_feedback(store, spec.name),
        spec,
        as_of=as_of,
    )


@dataclass(frozen=True)
class Holdout:
    """The most recent labelled capture windows, never trained on: ``rows`` (the joined
    columns), the windows' starts (oldest first), the rest in ``remaining``."""

    rows: pd.DataFrame
    windows: list[datetime]
    remaining: pd.DataFrame


def hold_out(rows: pd.DataFrame, width: timedelta, min_rows: int) -> Holdout:
    """The newest capture windows with labels, added newest first until they hold at least
    ``min_rows`` rows. When all the labelled rows together hold fewer, none is held out
    (there is no fair recent window to compare on; the caller says so)."""
    if len(rows) < min_rows:
        return Holdout(rows.iloc[:0], [], rows)
    window = rows[CAPTURED_AT].dt.floor(width)
    counts = window.value_counts().sort_index(ascending=False)
    taken = counts.index[: int(np.searchsorted(counts.cumsum().to_numpy(), min_rows) + 1)]
    held = window.isin(taken)
    starts = sorted(moment.to_pydatetime() for moment in taken)
    return Holdout(rows[held].reset_index(drop=True), starts, rows[~held].reset_index(drop=True))


@dataclass(frozen=True)
class Merged:
    """The rows of the new snapshot and where they came from."""

    frame: pd.DataFrame
    counts: dict[str, int]


def merge_rows(
    reference: pd.DataFrame,
    production: pd.DataFrame,
    spec: ProblemSpec,
    *,
    window_days: float | None,
    as_of: datetime,
) -> Merged:
    """The reference snapshot's rows and the validated production rows (snapshot columns
    only), of the most recent ``window_days`` before ``as_of`` when set, in event-time
    order. A production row whose id the reference already has is left out (the reference
    row is the one that was validated and trained on before)."""
    columns = list(reference.columns)
    overlapping = production[spec.id_column].isin(reference[spec.id_column])
    production = production.loc[~overlapping, columns]
    frame = pd.concat([reference, production], ignore_index=True)
    source = np.r_[np.zeros(len(reference), bool), np.ones(len(production), bool)]
    inside = np.ones(len(frame), bool)
    if window_days is not None:
        cut = pd.Timestamp(as_of) - pd.Timedelta(days=window_days)
        inside = (frame[spec.event_time_column] >= cut).to_numpy()
    frame = frame[inside]
    order = np.argsort(frame[spec.event_time_column].to_numpy(), kind="stable")
    counts = {
        "reference": int((inside & ~source).sum()),
        "production": int((inside & source).sum()),
        "overlapping": int(overlapping.sum()),
        "outside_window": int((~inside).sum()),
    }
    return Merged(frame.iloc[order].reset_index(drop=True), counts)
