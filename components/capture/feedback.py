"""Observed labels for prediction ids: ``feedback/<problem>/<prediction_id>.json``, written
once (create-only), so a label is never overwritten: a second, different label for one id
is refused."""

from __future__ import annotations

import math
import numbers
from datetime import datetime

import pandas as pd

from components.capture.windows import as_utc, utc_now
from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import ObjectExistsError, Store

FEEDBACK_COLUMNS = ("prediction_id", "label", "observed_at")


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


def record_feedback(
    store: Store,
    spec: ProblemSpec,
    prediction_id: str,
    label: float | int,
    *,
    observed_at: datetime | None = None,
) -> bool:
    """Store an observed label, once. True if newly stored, False if the same label was
    already there; FeedbackConflictError if a different label was."""
    if not keys.is_safe_name(prediction_id):
        raise ValueError(
            f"invalid prediction id {prediction_id!r}: expected up to 200 letters, digits, "
            "'_', '.', ':' or '-'"
        )
    value = _label(label, classification=spec.is_classification)
    observed = as_utc(observed_at if observed_at is not None else utc_now())
    key = keys.feedback(spec.name, prediction_id)
    doc = {"prediction_id": prediction_id, "label": value, "observed_at": observed.isoformat()}
    try:
        store.put_json(key, doc, create_only=True)
    except ObjectExistsError:
        stored = store.get_json(key)["label"]
        if stored != value:
            raise FeedbackConflictError(prediction_id, stored, value) from None
        return False
    return True


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
