"""Performance findings of a monitored window: realised once labels arrive, estimated from
the scores until then.

Labels arrive late (the problem's ``label_delay_days``), so each monitoring run judges the
most recent windows whose predictions have enough labels, not the window just closed:
the primary metric of the latest such window with its interval, its calibration, and the
last ``trailing_windows`` of them pooled against the champion's test figure. The window
just closed gets the estimate only (NannyML's CBPE idea, :func:`estimated_metric`), which
sees covariate shift long before labels can but not concept drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from components.core.problem import LOWER_IS_BETTER, ProblemSpec
from components.monitoring import performance
from components.monitoring.verdict import Finding


@dataclass(frozen=True)
class LabelledWindow:
    """The labelled predictions of one window: observed labels and the scores given."""

    start: datetime
    y: np.ndarray
    p: np.ndarray


@dataclass(frozen=True)
class Baseline:
    """The champion's figures: its test metrics, threshold and, from its test scores, the
    estimate the same method gives (what the window's estimate is compared with)."""

    metrics: dict[str, float]
    threshold: float | None
    estimated: dict[str, float] = field(default_factory=dict)


def performance_findings(
    spec: ProblemSpec,
    baseline: Baseline,
    labelled: list[LabelledWindow],
    scores: np.ndarray,
) -> tuple[list[Finding], dict]:
    """Findings and a JSON-able summary (metric history included) for a classification
    problem; ``labelled`` holds the windows up to the one monitored, oldest first."""
    if not spec.is_classification:
        return [], {}
    settings = spec.monitoring.performance
    primary = spec.metric.primary
    threshold = baseline.threshold if baseline.threshold is not None else 0.5
    enough = [w for w in labelled if len(w.y) >= settings.min_labelled_rows]
    summary: dict = {"metric": primary, "history": _history(spec, labelled, threshold)}
    found = [_estimate(spec, baseline, scores, threshold, summary)]
    if not enough:
        found.append(
            Finding(
                "performance",
                primary,
                "ok",
                f"{primary}: no window with {settings.min_labelled_rows} labelled rows yet",
            )
        )
        return found, summary
    latest = enough[-1]
    found.append(_calibration(spec, latest, summary))
    pooled = enough[-settings.trailing_windows :]
    found.append(_degradation(spec, baseline, pooled, summary))
    return found, summary


def _history(spec: ProblemSpec, labelled: list[LabelledWindow], threshold: float) -> list[dict]:
    settings = spec.monitoring.performance
    rows = []
    for window in labelled:
        entry = {"window": window.start.isoformat(), "labelled": len(window.y)}
        if len(window.y) >= settings.min_labelled_rows and 0 < window.y.sum() < len(window.y):
            interval = performance.metric_with_interval(
                spec.metric.primary, window.y, window.p, threshold, settings.confidence
            )
            entry.update(value=interval.value, low=interval.low, high=interval.high)
        rows.append(entry)
    return rows


def _estimate(
    spec: ProblemSpec, baseline: Baseline, scores: np.ndarray, threshold: float, summary: dict
) -> Finding:
    primary = spec.metric.primary
    if len(scores) < spec.monitoring.min_rows:
        return Finding(
            "estimated_performance",
            primary,
            "insufficient data",
            f"estimated {primary}: {len(scores)} scores, fewer than {spec.monitoring.min_rows}",
        )
    estimate = performance.estimated_metric(primary, scores, threshold)
    summary["estimated"] = estimate
    reference = baseline.estimated.get(primary)
    drop = spec.monitoring.performance.estimated_drop_warn
    if reference is None:
        return Finding(
            "estimated_performance",
            primary,
            "ok",
            f"estimated {primary} {estimate:.3f} from the scores (no baseline estimate)",
            estimate,
        )
    worse = reference - estimate if primary not in LOWER_IS_BETTER else estimate - reference
    status = "warn" if worse >= drop else "ok"
    return Finding(
        "estimated_performance",
        primary,
        status,
        f"estimated {primary} {estimate:.3f} from the scores against {reference:.3f} on the "
        f"champion's test rows ({-worse:+.3f}; labels will tell; blind to concept drift)",
        estimate,
        reference,
    )


def _calibration(spec: ProblemSpec, window: LabelledWindow, summary: dict) -> Finding:
    limit = spec.monitoring.performance.calibration_z
    result = performance.calibration_z(window.y, window.p)
    summary["calibration"] = {"window": window.start.isoformat(), **result.to_dict()}
    status = "alert" if abs(result.z) > limit else "ok"
    return Finding(
        "calibration",
        "scores",
        status,
        f"calibration of the window of {window.start:%Y-%m-%d %H:%M}: {result.observed} "
        f"positives observed, {result.expected:.1f} expected (z={result.z:+.2f}, limit {limit:g})",
        result.z,
        limit,
    )


def _degradation(
    spec: ProblemSpec, baseline: Baseline, pooled: list[LabelledWindow], summary: dict
) -> Finding:
    settings = spec.monitoring.performance
    reference = baseline.metrics.get("roc_auc")
    if reference is None:
        return Finding("degradation", "roc_auc", "ok", "roc_auc: the champion has no test figure")
    y = np.concatenate([w.y for w in pooled])
    p = np.concatenate([w.p for w in pooled])
    result = performance.auc_below(y, p, reference, windows=len(pooled))
    summary["degradation"] = result.to_dict()
    status = "alert" if result.p_value < settings.degradation_p_value else "ok"
    return Finding(
        "degradation",
        "roc_auc",
        status,
        f"roc_auc {result.value:.3f} over the last {len(pooled)} labelled windows "
        f"({result.n} rows) against {reference:.3f} on the champion's test rows "
        f"(one-sided DeLong p={result.p_value:.2g})",
        result.value,
        reference,
    )
