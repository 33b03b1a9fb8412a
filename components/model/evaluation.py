"""Evaluation (lifecycle stages 3 and 4): metrics, the decision threshold, the naive
baseline and per-slice metrics, for binary classification and regression.

Conventions shared by every function here:
- `y_true` holds 0/1 labels (classification) or numbers (regression); `y_score` holds the
  predicted probability of class 1 (classification) or the prediction (regression).
- A row is predicted positive when its probability is >= the threshold.
- A metric that is undefined on the data (ROC AUC with one class, precision with nothing
  predicted positive, R2 on fewer than two rows...) is NaN, never an exception.
- Every number returned is a plain Python float or int, so results serialise to JSON.
- Inputs are never modified.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from components.core.problem import LOWER_IS_BETTER, ProblemSpec, SliceSpec, ThresholdPolicy

DEFAULT_THRESHOLD = 0.5
# Probabilities are clipped this far from 0 and 1 before the log loss, so that one
# confident mistake costs a large finite amount instead of infinity.
_LOG_LOSS_EPS = 1e-15
OUTSIDE_BINS = "outside bins"
OTHER = "other"
MISSING = "missing"

CLASSIFICATION_KEYS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "precision",
    "recall",
    "f1",
    "accuracy",
    "positive_rate",
    "prevalence",
)
REGRESSION_KEYS = ("rmse", "mae", "r2")


# --- inputs -------------------------------------------------------------------------------


def _paired(y_true, y_score, what: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} rows but {what} has {len(s)}: they must align")
    for name, values in (("y_true", y), (what, s)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ValueError(f"{name} has {bad} missing or infinite values: drop or fill them")
    return y, s


def _binary(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    y, p = _paired(y_true, y_prob, "y_prob")
    if not np.isin(y, (0.0, 1.0)).all():
        found = ", ".join(map(repr, np.unique(y[~np.isin(y, (0.0, 1.0))])[:5].tolist()))
        raise ValueError(f"y_true must hold only 0 and 1 labels (also found: {found})")
    if len(p) and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(
            f"y_prob must be probabilities in [0, 1] (found {p.min():g} to {p.max():g})"
        )
    return y, p


# --- threshold ----------------------------------------------------------------------------


def _counts_by_threshold(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """Candidate thresholds in decreasing order with true and false positives at each.

    The candidates are the distinct scores, plus one just above the highest score
    ("predict nothing positive") when that still lies within [0, 1].
    """
    order = np.argsort(-p, kind="stable")
    scores, labels = p[order], y[order]
    tp = np.cumsum(labels)
    fp = np.arange(1, len(labels) + 1) - tp
    # Last position of each run of equal scores: a threshold admits all of its ties at once.
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    thresholds, tp, fp = scores[last], tp[last], fp[last]
    if scores[0] < 1.0:
        above = min(float(np.nextafter(scores[0], np.inf)), 1.0)
        thresholds, tp, fp = np.r_[above, thresholds], np.r_[0.0, tp], np.r_[0.0, fp]
    return thresholds, tp, fp


def choose_threshold(y_true, y_prob, policy: ThresholdPolicy) -> float:
    """The decision threshold, chosen on validation data, that the policy prefers.

    strategy "cost" minimises FP * false_positive_cost + FN * false_negative_cost;
    strategy "f1" maximises F1. Candidates are the distinct scores (a row is positive when
    its score is >= the threshold), found with one sort and cumulative sums. When several
    candidates are equally good the smallest one wins (it flags more rows, favouring
    recall), so the result depends only on the data, not on its order. With one class only
    (or no rows) nothing can be learnt and the result is 0.5.
    """
    y, p = _binary(y_true, y_prob)
    positives = float(y.sum())
    if positives == 0 or positives == len(y):
        return DEFAULT_THRESHOLD
    thresholds, tp, fp = _counts_by_threshold(y, p)
    fn = positives - tp
    if policy.strategy == "cost":
        value = -(fp * policy.false_positive_cost + fn * policy.false_negative_cost)
    else:
        value = 2 * tp / (2 * tp + fp + fn)
    best = np.flatnonzero(np.isclose(value, value.max(), rtol=1e-12, atol=0.0))
    return float(np.clip(thresholds[best[-1]], 0.0, 1.0))


# --- metrics ------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else math.nan


def classification_metrics(y_true, y_prob, threshold: float) -> dict[str, float]:
    """Ranking, probability and thresholded metrics of predicted probabilities.

    roc_auc and pr_auc (average precision) are NaN unless both classes are present;
    precision is NaN when nothing is predicted positive, recall when there are no positives.
    """
    y, p = _binary(y_true, y_prob)
    n = len(y)
    if n == 0:
        return {**dict.fromkeys(CLASSIFICATION_KEYS, math.nan), "n": 0}
    both_classes = 0 < y.sum() < n
    predicted = p >= threshold
    actual = y == 1
    tp = float(np.count_nonzero(predicted & actual))
    fp = float(np.count_nonzero(predicted & ~actual))
    fn = float(np.count_nonzero(~predicted & actual))
    clipped = np.clip(p, _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else math.nan,
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": float(np.mean(predicted == actual)),
        "positive_rate": float(np.mean(predicted)),
        "prevalence": float(np.mean(actual)),
        "n": n,
    }


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """rmse, mae and r2 (NaN on fewer than two rows or a constant target) of predictions."""
    y, pred = _paired(y_true, y_pred, "y_pred")
    n = len(y)
    if n == 0:
        return {**dict.fromkeys(REGRESSION_KEYS, math.nan), "n": 0}
    defined_r2 = n >= 2 and np.ptp(y) > 0
    return {
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)) if defined_r2 else math.nan,
        "n": n,
    }


def metrics_for(spec: ProblemSpec, y_true, y_score, threshold: float | None) -> dict[str, float]:
    """The metrics of the problem's task; a classification threshold of None means 0.5."""
    if spec.is_classification:
        return classification_metrics(
            y_true, y_score, DEFAULT_THRESHOLD if threshold is None else threshold
        )
    return regression_metrics(y_true, y_score)


def baseline_scores(spec: ProblemSpec, y_train, n: int) -> np.ndarray:
    """The naive model's scores for n rows: the training prior P(y=1) for classification,
    the training mean for regression. A model that cannot beat it has learnt nothing."""
    y = np.asarray(y_train, dtype=float).ravel()
    if len(y) == 0:
        raise ValueError("the baseline needs at least one training label (y_train is empty)")
    return np.full(n, float(np.mean(y)), dtype=float)


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` on `metric`: positive means `new` is better."""
    new, old = float(new), float(old)
    return old - new if metric in LOWER_IS_BETTER else new - old


def compare(spec: ProblemSpec, a: dict, b: dict) -> float:
    """Improvement of metrics `a` over metrics `b` on the primary metric (positive: a is
    better), whichever direction the metric runs in. NaN when either side is NaN."""
    primary = spec.metric.primary
    return improvement(primary, a.get(primary, math.nan), b.get(primary, math.nan))


# --- slices -------------------------------------------------------------------------------


def _edge(x: float) -> str:
    return format(float(x), ".10g")


def _slice_groups(spec: ProblemSpec, s: SliceSpec, values: pd.Series) -> tuple[np.ndarray, list]:
    """A group label per row and the labels in report order (declared groups always listed;
    "outside bins", "other" and "missing" only when some row falls there)."""
    missing = values.isna().to_numpy()
    if s.bins is not None:
        # Right-open bins, except the last, which includes its upper edge: bins declared up
        # to a feature's maximum (tenure 0..120) then cover every valid value.
        labels = [f"[{_edge(a)}, {_edge(b)})" for a, b in pairwise(s.bins)]
        labels[-1] = labels[-1][:-1] + "]"
        numeric = pd.to_numeric(values, errors="coerce").astype(float)
        codes = pd.cut(numeric, bins=s.bins, right=False, labels=False).to_numpy().copy()
        codes[numeric.to_numpy() == s.bins[-1]] = len(labels) - 1
        inside = ~np.isnan(codes)
        group = np.full(len(values), OUTSIDE_BINS, dtype=object)
        group[inside] = np.asarray(labels, dtype=object)[codes[inside].astype(int)]
        extra = OUTSIDE_BINS
    else:
        declared = spec.features[s.column].categories
        objects = values.to_numpy(dtype=object)
        if declared is None:  # e.g. a bool feature: its observed values, sorted
            declared = sorted({v for v, m in zip(objects, missing, strict=True) if not m})
        labels = [str(c) for c in declared]
        group = np.full(len(values), OTHER, dtype=object)
        for category, label in zip(declared, labels, strict=True):
            group[(objects == category) & ~missing] = label
        extra = OTHER
    group[missing] = MISSING
    order = labels + [g for g in (extra, MISSING) if (group == g).any()]
    return group, order


def slice_metrics(
    spec: ProblemSpec, frame: pd.DataFrame, y_true, y_score, threshold: float | None
) -> pd.DataFrame:
    """One row per (slice, group) of spec.slices: slice, group, n, positives (classification)
    and the metrics of metrics_for on the group's rows. Rows of `frame` align positionally
    with y_true and y_score. Groups come in a stable order: the declared categories or the
    bins ([a, b) intervals), then "outside bins" / "other" and "missing" when non-empty.
    Declared groups with no rows are listed with n = 0 and NaN metrics."""
    y, s = _paired(y_true, y_score)
    if len(frame) != len(y):
        raise ValueError(f"frame has {len(frame)} rows but y_true has {len(y)}: they must align")
    rows = []
    for spec_slice in spec.slices:
        if spec_slice.column not in frame.columns:
            raise KeyError(f"slice '{spec_slice.label}': column '{spec_slice.column}' not in frame")
        group, order = _slice_groups(spec, spec_slice, frame[spec_slice.column])
        for label in order:
            mask = group == label
            metrics = metrics_for(spec, y[mask], s[mask], threshold)
            row = {"slice": spec_slice.label, "group": label, "n": int(mask.sum())}
            if spec.is_classification:
                row["positives"] = int(y[mask].sum())
            row.update({k: v for k, v in metrics.items() if k != "n"})
            rows.append(row)
    keys = CLASSIFICATION_KEYS if spec.is_classification else REGRESSION_KEYS
    head = ["slice", "group", "n"] + (["positives"] if spec.is_classification else [])
    return pd.DataFrame(rows, columns=[*head, *keys])
