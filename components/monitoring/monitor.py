"""Monitoring one window (lifecycle stage 6): gather what capture stored, judge it against
the champion's references, and keep the report.

`gather_window` reads (the window's profiles, rejections, scores and the labelled
predictions of the recent windows); `assess_window` is pure: the checks, their findings and
the verdict, as a :class:`MonitoringReport`; `store_report` writes it, once per window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel

from components.capture.feedback import read_feedback
from components.capture.readers import read_captures
from components.capture.rejections import WindowRejections, read_rejections, rejections_by_window
from components.capture.windows import parse_window, utc_now
from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import Store
from components.data.profiling import ColumnSketch, column_sketches, merge_profiles
from components.model.registration import SCORE_PROFILE, score_column
from components.model.registry import Registry
from components.monitoring.drift import feature_drift, prediction_drift, window_rows
from components.monitoring.performance_checks import Baseline, LabelledWindow, performance_findings
from components.monitoring.profile_job import window_profiles
from components.monitoring.quality import data_quality, rejection_rate
from components.monitoring.verdict import Finding, Status, conditions, verdict


def history_windows(spec: ProblemSpec, width: timedelta) -> int:
    """How many windows before the one monitored are read for labelled predictions: those
    whose labels may still be arriving (the problem's label delay) and the trailing windows
    the degradation test pools, once their labels are in."""
    delay = math.ceil(timedelta(days=spec.label_delay_days) / width)
    return delay + spec.monitoring.performance.trailing_windows + 1


class NoChampionError(LookupError):
    """Monitoring needs a champion: its references are the baseline."""


@dataclass(frozen=True)
class References:
    """The champion's baseline: the profile of its training data, of its scores, and its
    test figures."""

    version: str
    features: dict[str, ColumnSketch]
    scores: ColumnSketch | None
    baseline: Baseline


@dataclass(frozen=True)
class WindowInputs:
    start: datetime
    end: datetime
    sketches: dict[str, ColumnSketch]
    rejected: WindowRejections | None
    scores: np.ndarray
    labelled: list[LabelledWindow] = field(default_factory=list)
    unlabelled: int = 0
    served: dict[str, int] = field(default_factory=dict)


class MonitoringReport(BaseModel):
    problem: str
    window_start: datetime
    window_end: datetime
    champion: str
    served_versions: dict[str, int]
    rows: int
    rejected: int
    rejection_reasons: list[tuple[str, int]]
    unlabelled: int
    status: Status
    reasons: list[str]
    conditions: dict[str, list[str]]
    findings: list[dict]
    performance: dict
    created_at: datetime

    def psi(self) -> dict[str, float]:
        """Each feature's PSI, as the report found it."""
        return {
            f["subject"]: f["value"]
            for f in self.findings
            if f["check"] == "feature_drift" and f["value"] is not None and f["subject"] != "window"
        }


def require_champion(registry: Registry, spec: ProblemSpec) -> str:
    """The champion's version; NoChampionError, saying what to do, when there is none."""
    version = registry.alias("champion")
    if version is None:
        raise NoChampionError(
            f"problem '{spec.name}' has no champion: train and promote a model first "
            "(`mlops train`), monitoring compares traffic with its references"
        )
    return version


def champion_references(registry: Registry, spec: ProblemSpec) -> References:
    version = require_champion(registry, spec)
    metadata = registry.metadata(version)
    files = metadata.get("files", {})
    scores = None
    if SCORE_PROFILE in files:
        scores = column_sketches(registry.read_file(version, SCORE_PROFILE)).get(score_column(spec))
    return References(
        version=version,
        features=column_sketches(registry.read_file(version, "reference_profile.bin")),
        scores=scores,
        baseline=Baseline(
            metrics=metadata.get("metrics", {}),
            threshold=metadata.get("threshold"),
            estimated=metadata.get("estimated_metrics", {}),
        ),
    )


def assess_window(
    spec: ProblemSpec,
    references: References,
    window: WindowInputs,
    *,
    now: datetime,
) -> MonitoringReport:
    """Every check on ``window``, the verdict and the report (pure)."""
    answered = window_rows(window.sketches, spec)
    rejected = window.rejected.rows if window.rejected else 0
    # Already ranked, the most frequent first.
    ranked = window.rejected.reasons if window.rejected else {}
    reasons = [(f"{field_}: {check}", n) for (field_, check), n in ranked.items()]
    findings: list[Finding] = [
        *feature_drift(references.features, window.sketches, spec),
        *(data_quality(window.sketches, references.features, spec) if window.sketches else []),
        rejection_rate(rejected, answered, reasons, spec),
        prediction_drift(references.scores, window.sketches.get(score_column(spec)), spec),
    ]
    performance, summary = performance_findings(
        spec, references.baseline, window.labelled, window.scores
    )
    findings += performance
    result = verdict(findings)
    return MonitoringReport(
        problem=spec.name,
        window_start=window.start,
        window_end=window.end,
        champion=references.version,
        served_versions=window.served,
        rows=answered,
        rejected=rejected,
        rejection_reasons=reasons,
        unlabelled=window.unlabelled,
        status=result.status,
        reasons=list(result.reasons),
        conditions=conditions(findings),
        findings=[f.to_dict() for f in findings],
        performance=summary,
        created_at=now,
    )


def gather_window(
    store: Store,
    spec: ProblemSpec,
    start: datetime,
    *,
    profile_window: str | None = None,
    version: str | None = None,
) -> WindowInputs:
    """What capture stored about the window starting at ``start`` (of the problem's
    monitoring width), and the labelled predictions of the windows before it: only those
    ``version`` made, when given (after a promotion, the labels that arrive for the old
    champion's predictions say nothing of the new one)."""
    width = parse_window(spec.monitoring.window)
    end = start + width
    sketches = _window_sketches(store, spec, start, end, profile_window or spec.monitoring.window)
    rejected = rejections_by_window(read_rejections(store, spec.name, start, end), width)
    history_start = start - history_windows(spec, width) * width
    column = score_column(spec)
    captured = read_captures(
        store, spec.name, history_start, end, columns=["prediction_id", "model_version", column]
    )
    own = captured if version is None else captured[captured["model_version"] == version]
    labelled, unlabelled = _labelled(own, read_feedback(store, spec.name), spec, start, width)
    current = captured[captured["captured_at"] >= start]
    scores = current[column].to_numpy(dtype=float) if column in current else np.array([])
    served = current["model_version"].value_counts().to_dict() if len(current) else {}
    return WindowInputs(
        start=start,
        end=end,
        sketches=sketches,
        rejected=rejected[0] if rejected else None,
        scores=scores[np.isfinite(scores)],
        labelled=labelled,
        unlabelled=unlabelled,
        served={str(k): int(v) for k, v in served.items()},
    )


def _window_sketches(
    store: Store, spec: ProblemSpec, start: datetime, end: datetime, profile_window: str
) -> dict[str, ColumnSketch]:
    """The merged profile of the profile-job windows inside [start, end)."""
    step = parse_window(profile_window)
    profiles: list[bytes] = []
    moment = start
    while moment < end:
        profiles += window_profiles(store, spec.name, moment)
        moment += step
    return column_sketches(merge_profiles(profiles)) if profiles else {}


def _labelled(
    captured: pd.DataFrame,
    feedback: pd.DataFrame,
    spec: ProblemSpec,
    start: datetime,
    width: timedelta,
) -> tuple[list[LabelledWindow], int]:
    """Captured predictions joined with their labels by prediction id, per window up to the
    one monitored (oldest first), and how many of that window's predictions have none."""
    column = score_column(spec)
    if captured.empty or column not in captured:
        return [], 0
    observed = feedback[["prediction_id", "label"]].rename(columns={"label": "observed"})
    labelled = captured["prediction_id"].isin(observed["prediction_id"])
    unlabelled = int((~labelled & (captured["captured_at"] >= start)).sum())
    joined = captured.loc[labelled, ["prediction_id", "captured_at", column]].merge(
        observed, on="prediction_id"
    )
    joined["window"] = joined["captured_at"].dt.floor(width)  # windows align on the epoch
    windows = []
    for moment, rows in joined.groupby("window", sort=True):
        windows.append(
            LabelledWindow(
                moment.to_pydatetime(),
                rows["observed"].to_numpy(dtype=float),
                rows[column].to_numpy(dtype=float),
            )
        )
    return windows, unlabelled


def store_report(store: Store, report: MonitoringReport) -> str:
    """Write the report of its window, once; a later run for the same window does not
    replace it (the history is what was known when the window was judged)."""
    key = keys.monitoring_report(report.problem, report.window_start)
    store.put_bytes(key, report.model_dump_json(indent=2).encode(), create_only=True)
    return key


def store_page(store: Store, spec: ProblemSpec, report: MonitoringReport) -> str:
    """Write the report's self-contained HTML page beside it (with the history up to its
    window in the charts), once; returns its key."""
    from components.monitoring.report_page import render_report_html

    page = render_report_html(report, report_history(store, spec.name), spec.monitoring)
    key = keys.monitoring_page(spec.name, report.window_start)
    store.put_bytes(key, page.encode(), create_only=True)
    return key


def monitored_windows(store: Store, problem: str) -> list[datetime]:
    found = (keys.monitoring_report_start(k) for k in store.list(keys.monitoring_prefix(problem)))
    return sorted(s for s in found if s is not None)


def report_history(store: Store, problem: str) -> list[MonitoringReport]:
    return [
        MonitoringReport.model_validate_json(store.get_bytes(keys.monitoring_report(problem, s)))
        for s in monitored_windows(store, problem)
    ]


def monitor_window(
    store: Store,
    references: References,
    spec: ProblemSpec,
    start: datetime,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> tuple[MonitoringReport, str]:
    """Gather, assess and store one window's report and its page; returns the report with
    the page's key. ``references`` are :func:`champion_references` (read once per run)."""
    window = gather_window(store, spec, start, version=references.version)
    report = assess_window(spec, references, window, now=clock())
    store_report(store, report)
    return report, store_page(store, spec, report)
