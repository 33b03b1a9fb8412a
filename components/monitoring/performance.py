"""Performance of a binary classifier per monitoring window: measured once labels arrive
(metric_with_interval, calibration_z, auc_below), estimated from the scores alone before
they do (estimated_metric, NannyML's confidence-based performance estimation, CBPE).

``y`` holds 0/1 labels and ``p`` the predicted probability of class 1, row for row; a row
is predicted positive when ``p >= threshold``; every metric follows the definitions of
:mod:`components.model.evaluation`. Input that cannot give an answer (no rows, NaN scores,
one class for ROC AUC) raises ValueError; a metric undefined on valid data (precision with
nothing predicted positive) is NaN. These functions measure; alert thresholds are the
caller's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from components.core.problem import CLASSIFICATION_METRICS
from components.model.evaluation import DEFAULT_THRESHOLD, classification_metrics

METRICS = tuple(sorted(CLASSIFICATION_METRICS | {"accuracy"}))
_LOG_LOSS_EPS = 1e-15  # as evaluation's: one confident mistake costs much, not infinity
_BLOCK_CELLS = 2_000_000  # bootstrap weights per block: memory bounded whatever the window


class _Result:
    def to_dict(self) -> dict:
        """The fields as plain Python values, ready for JSON."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MetricInterval(_Result):
    """A metric measured on a window, with its interval at ``confidence``.

    ``se`` is DeLong's standard error (method "delong") or the standard deviation of the
    bootstrap replicates (method "bootstrap"); a bootstrap interval is the percentile one.
    """

    metric: str
    value: float
    low: float
    high: float
    se: float
    n: int
    positives: int
    confidence: float
    method: str


@dataclass(frozen=True)
class Calibration(_Result):
    """Observed against expected positives; z is about N(0, 1) while the model is calibrated."""

    z: float
    observed: int
    expected: float
    n: int


@dataclass(frozen=True)
class Degradation(_Result):
    """A one-sided test that a metric is below a reference: small p_value, likely below."""

    metric: str
    value: float
    reference: float
    se: float
    z: float
    p_value: float
    n: int
    windows: int


# --- inputs -------------------------------------------------------------------------------


def _scores(p) -> np.ndarray:
    s = np.asarray(p, dtype=float).ravel()
    if len(s) == 0:
        raise ValueError("p is empty: the window has no scores")
    bad = int(np.count_nonzero(~np.isfinite(s)))
    if bad:
        raise ValueError(f"p has {bad} missing or infinite scores: drop those rows first")
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(f"p must be probabilities in [0, 1] (found {s.min():g} to {s.max():g})")
    return s


def _labelled(y, p) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y, dtype=float).ravel()
    s = np.asarray(p, dtype=float).ravel()
    if len(labels) != len(s):
        raise ValueError(f"y has {len(labels)} rows but p has {len(s)}: they must align")
    s = _scores(s)
    wrong = ~np.isin(labels, (0.0, 1.0))
    if wrong.any():
        found = ", ".join(map(repr, np.unique(labels[wrong])[:5].tolist()))
        raise ValueError(f"y must hold only 0 and 1 labels (also found: {found})")
    return labels, s


def _metric_name(name: str) -> str:
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}' (choose from {', '.join(METRICS)})")
    return name


def _z_quantile(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (got {confidence})")
    return float(norm.ppf((1.0 + confidence) / 2.0))


def _z(gap: float, sd: float) -> float:
    # A zero standard deviation (every score tied or 0/1) leaves no doubt: any gap is certain.
    if sd > 0:
        return gap / sd
    return 0.0 if abs(gap) < 1e-9 else math.copysign(math.inf, gap)


# --- measured: ROC AUC (DeLong) -----------------------------------------------------------


def _delong(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """ROC AUC and its DeLong standard error, by the midranks of Sun & Xu (2014)."""
    pos, neg = p[y == 1], p[y == 0]
    m, k = len(pos), len(neg)
    if m < 2 or k < 2:
        raise ValueError(
            f"ROC AUC needs at least two positive and two negative labels; the window has "
            f"{m} positives and {k} negatives: wait for more labels or pool more windows"
        )
    combined = rankdata(np.r_[pos, neg])
    # Per positive, the share of negatives ranked below it; per negative, the share of
    # positives ranked above it (ties count half). AUC is the mean of either.
    v10 = (combined[:m] - rankdata(pos)) / k
    v01 = 1.0 - (combined[m:] - rankdata(neg)) / m
    variance = v10.var(ddof=1) / m + v01.var(ddof=1) / k
    return float(v10.mean()), float(math.sqrt(variance))


def roc_auc_with_interval(y, p, confidence: float = 0.95) -> MetricInterval:
    """ROC AUC of the window with DeLong's standard error and the normal interval at
    ``confidence``, clipped to [0, 1]. Needs two labels of each class."""
    z = _z_quantile(confidence)
    y, p = _labelled(y, p)
    auc, se = _delong(y, p)
    low, high = max(0.0, auc - z * se), min(1.0, auc + z * se)
    return MetricInterval("roc_auc", auc, low, high, se, len(y), int(y.sum()), confidence, "delong")


def auc_below(y, p, reference_auc: float, windows: int = 1) -> Degradation:
    """One-sided test that the window's ROC AUC is below ``reference_auc`` (the champion's
    test AUC): z = (auc - reference) / se_DeLong, p_value = Phi(z).

    The reference is taken as a known constant; its own sampling error is ignored, which
    makes the test slightly eager. To pool the last k windows, the caller concatenates
    their rows and passes ``windows=k`` (recorded in the result); the pooled rows are
    treated as one sample, so a drop in the newest window alone is diluted by the others.
    """
    if not 0.0 <= reference_auc <= 1.0:
        raise ValueError(f"reference_auc must lie in [0, 1] (got {reference_auc})")
    if windows < 1:
        raise ValueError(f"windows counts the pooled windows: at least 1 (got {windows})")
    y, p = _labelled(y, p)
    auc, se = _delong(y, p)
    z = _z(auc - reference_auc, se)
    return Degradation(
        "roc_auc", auc, float(reference_auc), se, z, float(norm.cdf(z)), len(y), int(windows)
    )


# --- measured: calibration and bootstrap intervals ----------------------------------------


def calibration_z(y, p) -> Calibration:
    """z = (observed - expected positives) / sqrt(sum p(1 - p)): about N(0, 1) for a
    calibrated model on independent rows; negative when the model over-predicts."""
    y, p = _labelled(y, p)
    observed, expected = int(y.sum()), float(p.sum())
    sd = math.sqrt(float(np.sum(p * (1.0 - p))))
    return Calibration(_z(observed - expected, sd), observed, expected, len(y))


def metric_with_interval(
    name: str,
    y,
    p,
    threshold: float = DEFAULT_THRESHOLD,
    confidence: float = 0.95,
    seed: int = 0,
    resamples: int = 200,
) -> MetricInterval:
    """One of METRICS on the window with its interval at ``confidence``: DeLong's for
    roc_auc, otherwise the percentile interval of ``resamples`` bootstrap resamples drawn
    with ``numpy.random.default_rng(seed)`` (same data and seed, same interval). The value
    is evaluation.classification_metrics'; resamples where the metric is undefined are
    left out, and the interval is NaN when the value is."""
    if _metric_name(name) == "roc_auc":
        return roc_auc_with_interval(y, p, confidence)
    _z_quantile(confidence)
    if resamples < 2:
        raise ValueError(f"resamples must be at least 2 (got {resamples})")
    y, p = _labelled(y, p)
    value = classification_metrics(y, p, threshold)[name]
    replicates = _bootstrap(name, y, p, threshold, resamples, np.random.default_rng(seed))
    replicates = replicates[np.isfinite(replicates)]
    low = high = se = math.nan
    if math.isfinite(value) and len(replicates) >= 2:
        tail = (1.0 - confidence) / 2.0
        low, high = (float(q) for q in np.quantile(replicates, [tail, 1.0 - tail]))
        se = float(replicates.std(ddof=1))
    positives = int(y.sum())
    return MetricInterval(name, value, low, high, se, len(y), positives, confidence, "bootstrap")


def _bootstrap(name, y, p, threshold, resamples, rng) -> np.ndarray:
    # A resample is a multinomial count per row: the metric of the resample is the
    # weighted metric of the window, computed for a whole block of resamples at once.
    n = len(y)
    block = max(1, _BLOCK_CELLS // n)
    out = []
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)
        out.append(_weighted_metric(name, p, counts * y, counts * (1.0 - y), threshold))
    return np.concatenate(out)


# --- estimated from the scores (CBPE) -----------------------------------------------------


_ESTIMATE_GRID = 10_000


def estimated_metric(name: str, p, threshold: float = DEFAULT_THRESHOLD) -> float:
    """The expected value of one of METRICS on the window, from its scores alone.

    Each row counts as a positive with weight p and a negative with weight 1 - p: the
    expected confusion matrix at the threshold is E[TP] = sum of p over p >= threshold,
    E[FP] = sum of 1 - p there, E[FN] and E[TN] likewise below it, and precision, recall,
    f1 and accuracy follow from it; roc_auc and pr_auc are the AUC and average precision
    with these weights (tied scores count half); brier is mean p(1 - p) and log_loss the
    mean entropy of p.

    It assumes the model stays calibrated on the window, P(y = 1 | p) = p. So it sees
    covariate shift (a different mix of inputs, hence of scores) but not concept drift
    (P(y | x) changing): with the same scores it gives the same answer whatever the labels
    turn out to be. Calibration is checked with calibration_z once labels arrive.
    """
    s, name = _scores(p), _metric_name(name)
    if name in ("roc_auc", "pr_auc"):
        # Ranked on a grid of 1e-4: counting each cell's rows and expected positives is
        # linear where sorting a large window is not; scores within a cell count as tied.
        cells = np.rint(s * _ESTIMATE_GRID).astype(np.int64)
        rows = np.bincount(cells, minlength=_ESTIMATE_GRID + 1)
        positive = np.bincount(cells, weights=s, minlength=_ESTIMATE_GRID + 1)
        kept = np.flatnonzero(rows)
        pos, neg = positive[kept], rows[kept] - positive[kept]
        return float(_weighted_ranking(name, kept / _ESTIMATE_GRID, pos[None, :], neg[None, :])[0])
    return float(_weighted_metric(name, s, s[None, :], 1.0 - s[None, :], threshold)[0])


# --- weighted metrics: the one engine of the bootstrap and the estimate -------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.shape(num), math.nan), where=den > 0)


def _weighted_metric(name, s, pos, neg, threshold) -> np.ndarray:
    """The metric of scores ``s`` (n,) with positive and negative weights (b, n): one value
    per row of weights. Weights (y, 1 - y) give evaluation.classification_metrics."""
    if name in ("roc_auc", "pr_auc"):
        return _weighted_ranking(name, s, pos, neg)
    total = (pos + neg).sum(axis=1)
    if name == "brier":
        return _ratio(pos @ (1.0 - s) ** 2 + neg @ s**2, total)
    if name == "log_loss":
        c = np.clip(s, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
        return _ratio(pos @ -np.log(c) + neg @ -np.log1p(-c), total)
    predicted = (s >= threshold).astype(float)
    tp, fp = pos @ predicted, neg @ predicted
    fn, tn = pos.sum(axis=1) - tp, neg.sum(axis=1) - fp
    if name == "precision":
        return _ratio(tp, tp + fp)
    if name == "recall":
        return _ratio(tp, tp + fn)
    if name == "f1":
        return _ratio(2 * tp, 2 * tp + fp + fn)
    return _ratio(tp + tn, total)  # accuracy


def _weighted_ranking(name, s, pos, neg) -> np.ndarray:
    # Sort once and sum the weights of each run of tied scores (ascending).
    order = np.argsort(s, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(s[order])) + 1]
    wp = np.add.reduceat(pos[:, order], starts, axis=1)
    wn = np.add.reduceat(neg[:, order], starts, axis=1)
    if name == "roc_auc":
        below = np.cumsum(wn, axis=1) - wn  # negative weight strictly below each score
        pairs = wp.sum(axis=1) * wn.sum(axis=1)
        return _ratio((wp * (below + 0.5 * wn)).sum(axis=1), pairs)
    # Average precision: the precision at each score (rows at or above it), weighted by the
    # positive weight the score adds to recall.
    tp = np.cumsum(wp[:, ::-1], axis=1)[:, ::-1]
    flagged = tp + np.cumsum(wn[:, ::-1], axis=1)[:, ::-1]
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    average_precision = _ratio((wp * precision).sum(axis=1), wp.sum(axis=1))
    return np.where(wn.sum(axis=1) > 0, average_precision, math.nan)  # NaN with one class
