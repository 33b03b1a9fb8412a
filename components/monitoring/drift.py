"""Drift of a window against the champion's references, from whylogs sketches.

Feature drift is the population stability index (PSI) of each input feature: numbers over
the reference's quantile bins (10 by default: equal shares of the reference, wherever its
values lie), categories over their values, each share floored at ``epsilon`` so that a
value absent on one side gives a large but finite index. PSI rather than the p-values of
KS or chi-square tests: over hundreds of daily windows without drift, p < 0.05 flagged a
third of them (a large window makes any trivial shift significant), while PSI had no false
alarm and caught each drift as early as the data allowed (../shared/ARCHITECTURE.md).

Prediction drift compares the window's scores with the scores the champion gave its own
validation and test rows: a warning only when both the two-sample KS test on the sketches
and the shift of the mean say so, for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats

from components.core.problem import MonitoringSpec, ProblemSpec
from components.data.profiling import ColumnSketch
from components.monitoring.verdict import Finding

_KS_GRID = np.linspace(0.0, 1.0, 201)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float) -> float:
    """The PSI of two distributions over the same bins, given as shares (each sums to 1)."""
    e = np.maximum(np.asarray(expected, dtype=float), epsilon)
    a = np.maximum(np.asarray(actual, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_shares(
    reference: ColumnSketch, window: ColumnSketch, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both columns' shares of numbers in the bins cut at the reference's quantiles."""
    edges = np.unique(reference.quantiles(np.arange(1, bins) / bins))

    def shares(sketch: ColumnSketch) -> np.ndarray:
        return np.diff(np.concatenate([[0.0], sketch.cdf(edges), [1.0]]))

    return shares(reference), shares(window)


def category_shares(
    reference: ColumnSketch, window: ColumnSketch
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both columns' shares of each value seen on either side, and of the rest (values
    beyond the sketches' frequent items) as one last bin."""
    values = sorted(set(reference.frequent) | set(window.frequent))

    def shares(sketch: ColumnSketch) -> np.ndarray:
        present = max(sketch.count - sketch.nulls, 1)
        known = np.array([sketch.frequent.get(v, 0.0) for v in values]) / present
        return np.append(known, max(0.0, 1.0 - known.sum()))

    return values, shares(reference), shares(window)


def window_rows(window: Mapping[str, ColumnSketch], spec: ProblemSpec) -> int:
    """The rows of a window's profile: the count of its first input feature present."""
    counts = [window[name].count for name in spec.input_features if name in window]
    return max(counts, default=0)


def feature_drift(
    reference: Mapping[str, ColumnSketch],
    window: Mapping[str, ColumnSketch],
    spec: ProblemSpec,
    monitoring: MonitoringSpec | None = None,
) -> list[Finding]:
    """A finding per input feature with its PSI (ok, warn or alert by the thresholds), or
    one ``insufficient data`` finding for a window under ``min_rows`` rows."""
    settings = monitoring or spec.monitoring
    rows = window_rows(window, spec)
    if rows < settings.min_rows:
        return [
            Finding(
                "feature_drift",
                "window",
                "insufficient data",
                f"{rows} rows in the window, fewer than {settings.min_rows}: drift not judged",
                float(rows),
                float(settings.min_rows),
            )
        ]
    return [
        _feature_finding(name, reference.get(name), window.get(name), spec, settings)
        for name in spec.input_features
    ]


def _feature_finding(
    name: str,
    reference: ColumnSketch | None,
    window: ColumnSketch | None,
    spec: ProblemSpec,
    settings: MonitoringSpec,
) -> Finding:
    thresholds = settings.drift
    if reference is None or window is None:
        where = "the reference profile" if reference is None else "the window's profile"
        return Finding("feature_drift", name, "warn", f"{name}: not in {where}; drift not judged")
    if window.count - window.nulls == 0:
        return Finding("feature_drift", name, "ok", f"{name}: no values in the window")
    if spec.features[name].is_categorical or not reference.numbers:
        _, expected, actual = category_shares(reference, window)
    else:
        expected, actual = numeric_shares(reference, window, thresholds.bins)
    index = psi(expected, actual, thresholds.epsilon)
    if index >= thresholds.psi_alert:
        status, limit, relation = "alert", thresholds.psi_alert, "at or above the alert level"
    elif index >= thresholds.psi_warn:
        status, limit, relation = "warn", thresholds.psi_warn, "at or above the warning level"
    else:
        status, limit, relation = "ok", thresholds.psi_warn, "below the warning level"
    message = f"{name}: PSI {index:.3f}, {relation} {limit:g}"
    return Finding("feature_drift", name, status, message, index, limit)


def prediction_drift(
    reference: ColumnSketch | None, window: ColumnSketch | None, spec: ProblemSpec
) -> Finding:
    """The window's scores against the score reference: KS on the sketches and the shift of
    the mean; a warning when the KS p-value is under the threshold and the mean moved at
    least ``min_mean_shift``."""
    thresholds = spec.monitoring.prediction
    if reference is None or not reference.numbers:
        return Finding("prediction_drift", "scores", "ok", "scores: no score reference stored")
    if window is None or window.numbers < spec.monitoring.min_rows:
        n = 0 if window is None else window.numbers
        return Finding(
            "prediction_drift",
            "scores",
            "insufficient data",
            f"scores: {n} in the window, fewer than {spec.monitoring.min_rows}: not judged",
        )
    d, p_value = ks_from_sketches(reference, window)
    shift = float(window.mean - reference.mean)
    drifted = p_value < thresholds.ks_p_value and abs(shift) >= thresholds.min_mean_shift
    message = (
        f"scores: KS D={d:.3f} (p={p_value:.2g}), mean {window.mean:.3f} against "
        f"{reference.mean:.3f} in the reference ({shift:+.3f})"
    )
    return Finding(
        "prediction_drift",
        "scores",
        "warn" if drifted else "ok",
        message,
        shift,
        thresholds.min_mean_shift,
    )


def ks_from_sketches(a: ColumnSketch, b: ColumnSketch) -> tuple[float, float]:
    """The two-sample KS statistic of two sketched columns (the largest gap between their
    CDFs over both sides' quantiles) and its asymptotic p-value."""
    grid = np.unique(np.concatenate([a.quantiles(_KS_GRID), b.quantiles(_KS_GRID)]))
    gap = float(np.max(np.abs(a.cdf(grid) - b.cdf(grid))))
    effective = a.numbers * b.numbers / (a.numbers + b.numbers)
    return gap, float(stats.kstwobign.sf(gap * np.sqrt(effective)))
