"""Data quality of a window of served traffic, from its profile, the spec and rejections.

What the service refuses never reaches a capture profile (the request contract validates
every record), so a data incident shows mainly as a rising rejection rate; what it accepts
is checked against the spec here: nulls where none are allowed, a nullable column's null
rate well above the reference's, values outside the declared range, categories not
declared. Each is an alert: a model fed such data is not to be trusted, and retraining on
it would learn the incident.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scipy import stats

from components.core.problem import Feature, ProblemSpec
from components.data.profiling import ColumnSketch
from components.monitoring.verdict import Finding

_SHOWN = 5  # unexpected categories named in a message


def data_quality(
    window: Mapping[str, ColumnSketch],
    reference: Mapping[str, ColumnSketch],
    spec: ProblemSpec,
) -> list[Finding]:
    """The findings of every input feature's checks; only problems are returned, and one
    ``ok`` finding when there is none."""
    found: list[Finding] = []
    for name in spec.input_features:
        sketch = window.get(name)
        if sketch is None:
            if window:
                found.append(_alert(name, f"{name}: missing from the window's profile"))
            continue
        found += _nulls(name, spec.features[name], sketch, reference.get(name), spec)
        found += _range(name, spec.features[name], sketch)
        found += _categories(name, spec.features[name], sketch)
    return found or [Finding("data_quality", "window", "ok", "data quality: no problem found")]


def rejection_rate(
    rejected: int, answered: int, reasons: Sequence[tuple[str, int]], spec: ProblemSpec
) -> Finding:
    """The share of received rows the service refused, against ``max_rejection_rate``;
    ``reasons`` are (field and check, rows) pairs, the most frequent first."""
    limit = spec.monitoring.quality.max_rejection_rate
    received = rejected + answered
    rate = rejected / received if received else 0.0
    top = ", ".join(f"{why} ({rows})" for why, rows in reasons[:3])
    message = f"rejections: {rejected} of {received} rows refused ({rate:.2%})"
    if top:
        message += f", mostly {top}"
    status = "alert" if rate > limit else "ok"
    if status == "alert":
        message += f"; above {limit:.2%}"
    return Finding("rejections", "requests", status, message, rate, limit)


def _alert(subject: str, message: str, value: float | None = None, limit: float | None = None):
    return Finding("data_quality", subject, "alert", message, value, limit)


def _nulls(
    name: str,
    feature: Feature,
    sketch: ColumnSketch,
    reference: ColumnSketch | None,
    spec: ProblemSpec,
) -> list[Finding]:
    if not sketch.nulls:
        return []
    if not feature.nullable:
        return [_alert(name, f"{name}: {sketch.nulls} nulls in a column that allows none")]
    if reference is None or not reference.count:
        return []
    quality = spec.monitoring.quality
    baseline = reference.nulls / reference.count
    allowed = min(1.0, quality.null_rate_factor * baseline)
    rate = sketch.nulls / sketch.count
    # P(at least this many nulls) if the rate were the allowed one.
    p_value = float(stats.binom.sf(sketch.nulls - 1, sketch.count, allowed))
    if rate > allowed and p_value < quality.null_rate_p_value:
        return [
            _alert(
                name,
                f"{name}: null rate {rate:.2%}, above {quality.null_rate_factor:g}x the "
                f"reference's {baseline:.2%} (binomial p={p_value:.2g})",
                rate,
                allowed,
            )
        ]
    return []


def _range(name: str, feature: Feature, sketch: ColumnSketch) -> list[Finding]:
    found = []
    if feature.min is not None and sketch.min is not None and sketch.min < feature.min:
        found.append(
            _alert(
                name,
                f"{name}: minimum {sketch.min:g} below the declared {feature.min:g}",
                sketch.min,
                feature.min,
            )
        )
    if feature.max is not None and sketch.max is not None and sketch.max > feature.max:
        found.append(
            _alert(
                name,
                f"{name}: maximum {sketch.max:g} above the declared {feature.max:g}",
                sketch.max,
                feature.max,
            )
        )
    return found


def _categories(name: str, feature: Feature, sketch: ColumnSketch) -> list[Finding]:
    if not feature.is_categorical or not feature.categories:
        return []
    declared = {str(c) for c in feature.categories}
    unknown = sorted(v for v in sketch.frequent if v not in declared)
    if not unknown:
        return []
    rows = sum(sketch.frequent[v] for v in unknown)
    shown = ", ".join(repr(v) for v in unknown[:_SHOWN])
    more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
    return [_alert(name, f"{name}: {rows:.0f} rows with undeclared categories {shown}{more}", rows)]
