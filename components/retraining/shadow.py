"""The shadow check (lifecycle stage 7): before promotion, the challenger scores the traffic
the champion answered in the last monitored window, and its answers are compared with what
production actually answered (the captured scores and labels).

Pure: the caller reads the captured rows. The report joins the gate's decision: its figures
go on the model card, and the problem file's limits (``retraining.shadow``) may block the
promotion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from components.core.problem import ProblemSpec
from components.model import training
from components.model.gate import Decision
from components.model.registration import score_column


@dataclass(frozen=True)
class ShadowReport:
    champion: str
    rows: int
    changed_labels: float | None  # share of rows whose label differs (classification)
    champion_mean: float | None
    challenger_mean: float | None
    mean_shift: float | None  # challenger - champion
    mean_abs_change: float | None
    ks_statistic: float | None
    checks: tuple[tuple[bool, str], ...]

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks)

    def to_dict(self) -> dict:
        figures = {k: v for k, v in self.__dict__.items() if k != "checks"}
        reasons = [f"{'pass' if ok else 'FAIL'}: {text}" for ok, text in self.checks]
        return {**figures, "passed": self.passed, "reasons": reasons}


def shadow_compare(
    spec: ProblemSpec,
    traffic: pd.DataFrame,
    champion: str,
    booster,
    threshold: float | None,
) -> ShadowReport:
    """The challenger (``booster`` at ``threshold``) on the captured rows of ``traffic``
    that ``champion`` answered, against those answers."""
    column = score_column(spec)
    served = traffic.iloc[:0]
    if column in traffic and "model_version" in traffic:
        served = traffic[(traffic["model_version"] == champion) & traffic[column].notna()]
    if served.empty:
        note = f"shadow: no captured traffic answered by {champion} in the last window"
        return ShadowReport(champion, 0, None, None, None, None, None, None, ((True, note),))
    before = served[column].to_numpy(dtype=float)
    after = training.predict(booster, served, spec).astype(float)
    changed = None
    if spec.is_classification and threshold is not None and "label" in served:
        changed = float(np.mean((after >= threshold).astype(int) != served["label"].to_numpy()))
    shift = float(after.mean() - before.mean())
    report = ShadowReport(
        champion=champion,
        rows=len(served),
        changed_labels=changed,
        champion_mean=float(before.mean()),
        challenger_mean=float(after.mean()),
        mean_shift=shift,
        mean_abs_change=float(np.abs(after - before).mean()),
        ks_statistic=float(stats.ks_2samp(before, after).statistic),
        checks=(),
    )
    return ShadowReport(**{**report.__dict__, "checks": _checks(spec, report)})


def _checks(spec: ProblemSpec, report: ShadowReport) -> tuple[tuple[bool, str], ...]:
    limits = spec.retraining.shadow
    checks = []
    changed = report.changed_labels
    if changed is not None:
        limit = limits.max_changed_labels
        ok = limit is None or changed <= limit
        bound = f"at most {limit:.2%}" if limit is not None else "no limit set"
        checks.append(
            (
                ok,
                f"shadow: {changed:.2%} of {report.rows:,} answers of {report.champion} in "
                f"the last window change label ({bound})",
            )
        )
    limit = limits.max_mean_shift
    ok = limit is None or abs(report.mean_shift) <= limit
    bound = f"at most {limit:.4f}" if limit is not None else "no limit set"
    checks.append(
        (
            ok,
            f"shadow: mean score {report.champion_mean:.4f} -> {report.challenger_mean:.4f} "
            f"(shift {report.mean_shift:+.4f}, {bound}; KS {report.ks_statistic:.3f})",
        )
    )
    return tuple(checks)


def with_shadow(decision: Decision, report: ShadowReport) -> Decision:
    """The gate's decision with the shadow check's reasons (and failures) added."""
    reasons = [*decision.reasons, *report.to_dict()["reasons"]]
    failures = [*decision.failures, *(text for ok, text in report.checks if not ok)]
    return Decision(passed=not failures, reasons=reasons, failures=failures)
