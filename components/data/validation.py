"""Validation and quarantine (lifecycle stage 2).

`validate_frame` checks a whole dataset against the problem's contract, lazily, so that
every failure is collected. Rows that fail any check are split off into a quarantine frame
with the reason for each row; nothing is dropped silently. Missing or unexpected columns
are a different kind of failure (no row can be trusted) and raise SchemaMismatchError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from components.core.problem import ProblemSpec
from components.data.schema import build_schema, coerce_to_spec, expected_columns

ROW_COLUMN = "_row"
REASON_COLUMN = "_reasons"
_EXAMPLES = 5


class SchemaMismatchError(ValueError):
    """The dataset's columns are not the problem's columns."""

    def __init__(self, source: str, missing: list[str], extra: list[str]):
        self.missing, self.extra = missing, extra
        parts = []
        if missing:
            parts.append(f"missing columns: {', '.join(missing)}")
        if extra:
            parts.append(
                f"unexpected columns: {', '.join(extra)} (declare them in the problem file, "
                "or set data_quality.extra_columns: ignore)"
            )
        super().__init__(f"{source}: {'; '.join(parts)}")


class EmptyDataError(ValueError):
    """The dataset has no rows: nothing to validate or snapshot."""


class QuarantineThresholdError(ValueError):
    """Too many rows failed validation for the data to be used."""


@dataclass(frozen=True)
class CheckFailure:
    """One failed check: how many rows it caught and a few of the offending values."""

    column: str
    check: str
    count: int
    examples: list[str]


@dataclass(frozen=True)
class ValidationReport:
    source: str
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    failures: list[CheckFailure] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def quarantined_fraction(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "quarantined_fraction": self.quarantined_fraction}

    def to_markdown(self) -> str:
        """A human summary, published as a Prefect artifact and printed by the CLI."""
        lines = [
            f"## Validation of `{self.source}`",
            "",
            f"- rows in: **{self.rows_in:,}**",
            f"- valid: **{self.rows_valid:,}**",
            f"- quarantined: **{self.rows_quarantined:,}** ({self.quarantined_fraction:.2%})",
        ]
        if self.ignored_columns:
            lines.append(f"- ignored columns: {', '.join(self.ignored_columns)}")
        if self.failures:
            lines += ["", "| column | check | failing rows | examples |", "|---|---|---:|---|"]
            for f in self.failures:
                examples = ", ".join(f"`{e}`" for e in f.examples)
                lines.append(f"| {f.column} | {f.check} | {f.count:,} | {examples} |")
        else:
            lines += ["", "Every check passed."]
        return "\n".join(lines)


@dataclass(frozen=True)
class ValidationResult:
    valid: pd.DataFrame  # coerced to the canonical dtypes, in canonical column order
    quarantined: pd.DataFrame  # the rows as they came in, plus _row and _reasons
    report: ValidationReport


def validate_frame(
    frame: pd.DataFrame,
    spec: ProblemSpec,
    *,
    source: str = "<frame>",
    include_target: bool = True,
) -> ValidationResult:
    """Check every row against the spec; split valid rows from quarantined ones."""
    frame, ignored = _conform_columns(frame, spec, source, include_target)
    if frame.empty:
        raise EmptyDataError(f"{source}: has the right columns but no rows")
    frame = frame.reset_index(drop=True)
    coerced, type_failures = coerce_to_spec(frame, spec)
    check_failures = _run_checks(coerced, spec, include_target)
    failures = _merge_failures(type_failures, check_failures)
    bad = np.zeros(len(frame), dtype=bool)
    bad[failures["row"].to_numpy(dtype=np.int64)] = True
    valid = coerced.loc[~bad].reset_index(drop=True)
    quarantined = _quarantine_frame(frame, bad, failures)
    report = ValidationReport(
        source=source,
        rows_in=len(frame),
        rows_valid=len(valid),
        rows_quarantined=int(bad.sum()),
        failures=_summarise(failures),
        ignored_columns=ignored,
    )
    return ValidationResult(valid=valid, quarantined=quarantined, report=report)


def check_quarantine_threshold(report: ValidationReport, spec: ProblemSpec) -> None:
    """Raise QuarantineThresholdError when more rows were quarantined than the spec allows."""
    limit = spec.data_quality.max_quarantined_fraction
    if report.quarantined_fraction <= limit:
        return
    worst = sorted(report.failures, key=lambda f: -f.count)[:3]
    causes = "; ".join(f"{f.column}: {f.check} ({f.count:,} rows)" for f in worst)
    raise QuarantineThresholdError(
        f"{report.source}: {report.rows_quarantined:,} of {report.rows_in:,} rows "
        f"({report.quarantined_fraction:.2%}) failed validation, above the problem's limit "
        f"data_quality.max_quarantined_fraction = {limit:.2%}. Main causes: {causes}. "
        "The quarantined rows and their reasons are in the store; fix the source data "
        "(or raise the limit in the problem file) and run again."
    )


def _conform_columns(
    frame: pd.DataFrame, spec: ProblemSpec, source: str, include_target: bool
) -> tuple[pd.DataFrame, list[str]]:
    expected = expected_columns(spec, include_target=include_target)
    present = [str(c) for c in frame.columns]
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected]
    if missing or (extra and spec.data_quality.extra_columns == "error"):
        raise SchemaMismatchError(source, missing, extra)
    return frame[expected], extra


def _run_checks(coerced: pd.DataFrame, spec: ProblemSpec, include_target: bool) -> pd.DataFrame:
    schema = build_schema(spec, include_target=include_target)
    try:
        schema.validate(coerced, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pd.DataFrame({"row": [], "column": [], "check": [], "value": []})
    unplaced = cases[cases["index"].isna()]
    if len(unplaced):
        # Every column-level problem is handled before this point; anything left is a bug.
        raise RuntimeError(f"validation failed without row numbers:\n{unplaced.to_string()}")
    return pd.DataFrame(
        {
            "row": cases["index"].astype(np.int64).to_numpy(),
            "column": cases["column"].astype(str).to_numpy(),
            "check": cases["check"].map(_readable_check).to_numpy(),
            "value": cases["failure_case"].to_numpy(),
        }
    )


def _readable_check(check: str) -> str:
    if check == "field_uniqueness":
        return "duplicate id"
    if check == "not_nullable":
        return "null in a non-nullable column"
    if check.startswith("isin("):
        return "not an allowed category"
    if check.startswith("in_range("):
        return f"out of range [{check[len('in_range(') : -1]}]"
    return check


def _merge_failures(type_failures: pd.DataFrame, check_failures: pd.DataFrame) -> pd.DataFrame:
    """Combine both kinds; a cell that failed coercion is not reported again as null."""
    if len(type_failures) and len(check_failures):
        typed = set(
            zip(type_failures["row"].astype(np.int64), type_failures["column"], strict=True)
        )
        keys = zip(check_failures["row"], check_failures["column"], strict=True)
        repeat = np.fromiter((k in typed for k in keys), dtype=bool, count=len(check_failures))
        check_failures = check_failures.loc[~repeat]
    parts = [f for f in (type_failures, check_failures) if len(f)]
    if not parts:
        return pd.DataFrame({"row": np.array([], dtype=np.int64), "column": [], "check": []})
    merged = pd.concat(parts, ignore_index=True)
    merged["row"] = merged["row"].astype(np.int64)
    merged["value"] = merged["value"].map(_show)
    return merged.sort_values(["row", "column"], kind="stable", ignore_index=True)


def _show(value: object) -> str:
    return (
        "null"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else repr(value.item() if isinstance(value, np.generic) else value)
    )


def _quarantine_frame(frame: pd.DataFrame, bad: np.ndarray, failures: pd.DataFrame) -> pd.DataFrame:
    rows = frame.loc[bad].copy()
    if not len(failures):
        rows[ROW_COLUMN] = pd.Series(dtype=np.int64)
        rows[REASON_COLUMN] = pd.Series(dtype="str")
        return rows.reset_index(drop=True)
    text = failures["column"] + ": " + failures["check"] + " (" + failures["value"] + ")"
    reasons = text.groupby(failures["row"], sort=True).agg("; ".join)
    rows[ROW_COLUMN] = rows.index.to_numpy(dtype=np.int64)
    rows[REASON_COLUMN] = reasons.reindex(rows.index).to_numpy()
    return rows.reset_index(drop=True)


def _summarise(failures: pd.DataFrame) -> list[CheckFailure]:
    out = []
    for (column, check), group in failures.groupby(["column", "check"], sort=True):
        out.append(
            CheckFailure(
                column=str(column),
                check=str(check),
                count=int(group["row"].nunique()),
                examples=list(dict.fromkeys(group["value"]))[:_EXAMPLES],
            )
        )
    return out
