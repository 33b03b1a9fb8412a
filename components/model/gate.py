"""The approval gate (lifecycle stage 4): a pure decision with every reason, pass or fail.

A challenger passes only if every absolute floor in the problem holds, it beats the naive
baseline, and, when a champion exists, it beats the champion (evaluated on the same rows) by
at least the problem's margin. A tie never promotes. The caller acts on the Decision:
registers the version as rejected, or promotes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from components.core.problem import LOWER_IS_BETTER, ProblemSpec
from components.model.evaluation import improvement as _better


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # every check, pass or fail, in order
    failures: list[str] = field(default_factory=list)  # the subset that failed


def decide_promotion(
    spec: ProblemSpec,
    challenger: dict[str, float],
    baseline: dict[str, float],
    champion: dict[str, float] | None,
) -> Decision:
    """Check every condition, collect every reason, then decide."""
    checks = [
        *_floor_checks(spec, challenger),
        _baseline_check(spec, challenger, baseline),
        _champion_check(spec, challenger, champion),
    ]
    reasons = [f"{'pass' if ok else 'FAIL'}: {text}" for ok, text in checks]
    failures = [text for ok, text in checks if not ok]
    return Decision(passed=not failures, reasons=reasons, failures=failures)


def _value(metrics: dict[str, float], name: str) -> float:
    value = metrics.get(name, math.nan)
    return float(value) if value is not None else math.nan


def _floor_checks(spec: ProblemSpec, challenger: dict[str, float]) -> list[tuple[bool, str]]:
    out = []
    for name, floor in spec.metric.floors.items():
        value = _value(challenger, name)
        word = "at most" if name in LOWER_IS_BETTER else "at least"
        if math.isnan(value):
            out.append((False, f"{name} is not available; the floor requires {word} {floor}"))
            continue
        ok = _better(name, value, floor) >= 0
        out.append((ok, f"{name} = {value:.4f}, floor: {word} {floor:.4f}"))
    return out


def _baseline_check(spec, challenger, baseline) -> tuple[bool, str]:
    metric = spec.metric.primary
    mine, theirs = _value(challenger, metric), _value(baseline, metric)
    if math.isnan(mine) or math.isnan(theirs):
        return False, f"{metric} is not available for the model ({mine}) or baseline ({theirs})"
    gain = _better(metric, mine, theirs)
    return gain > 0, f"{metric} {mine:.4f} vs baseline {theirs:.4f} (improvement {gain:+.4f})"


def _champion_check(spec, challenger, champion) -> tuple[bool, str]:
    if champion is None:
        return True, "no champion yet: the first model that clears the floors becomes champion"
    metric, margin = spec.metric.primary, spec.metric.champion_margin
    mine, theirs = _value(challenger, metric), _value(champion, metric)
    if math.isnan(mine) or math.isnan(theirs):
        return False, f"{metric} is not available for the model ({mine}) or champion ({theirs})"
    gain = _better(metric, mine, theirs)
    ok = gain > 0 and gain >= margin
    verdict = "tie" if gain == 0 else ("better" if gain > 0 else "worse")
    return ok, (
        f"{metric} {mine:.4f} vs champion {theirs:.4f} on the same test rows: {verdict} "
        f"by {gain:+.4f}, required margin > 0 and >= {margin:.4f}"
    )
