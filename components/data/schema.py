"""The data contract derived from a ProblemSpec: canonical dtypes, type coercion, and the
Pandera schema that checks ranges, categories, nullability and unique ids.

Coercion is done here, column by column, rather than by Pandera's `coerce=True`: when one
value of a column fails to coerce, Pandera leaves the whole column untyped and its range
checks then fail without row numbers. Coercing ourselves records exactly which cells were
not of the declared type and lets every other check still run on every other row.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from components.core.problem import Feature, ProblemSpec

EVENT_TIME_DTYPE = pd.DatetimeTZDtype("ns", "UTC")
_DTYPES = {"int": "Int64", "float": "float64", "category": "str", "bool": "boolean"}


def feature_dtype(feature: Feature) -> str:
    """The pandas dtype a feature has after coercion (int columns are nullable Int64)."""
    if feature.type == "category" and all(isinstance(c, int) for c in feature.categories or []):
        return "Int64"
    return _DTYPES[feature.type]


def expected_columns(spec: ProblemSpec, *, include_target: bool = True) -> list[str]:
    """Column names a dataset for this problem holds, in canonical order."""
    features = spec.features if include_target else spec.input_features
    return [spec.id_column, spec.event_time_column, *features]


def build_schema(spec: ProblemSpec, *, include_target: bool = True) -> pa.DataFrameSchema:
    """The Pandera schema for coerced data: ids unique and present, event times present,
    every feature within its declared range or categories and non-null unless nullable."""
    columns = {
        spec.id_column: pa.Column(str, nullable=False, unique=True, report_duplicates="all"),
        spec.event_time_column: pa.Column(EVENT_TIME_DTYPE, nullable=False),
    }
    names = spec.features if include_target else spec.input_features
    for name in names:
        feature = spec.features[name]
        columns[name] = pa.Column(
            feature_dtype(feature), checks=_checks(feature), nullable=feature.nullable
        )
    return pa.DataFrameSchema(columns, strict=True, coerce=False, name=spec.name)


def _checks(feature: Feature) -> list[pa.Check]:
    checks = []
    if feature.min is not None or feature.max is not None:
        low = feature.min if feature.min is not None else float("-inf")
        high = feature.max if feature.max is not None else float("inf")
        checks.append(pa.Check.in_range(low, high))
    if feature.categories is not None:
        checks.append(pa.Check.isin(feature.categories))
    return checks


def coerce_to_spec(frame: pd.DataFrame, spec: ProblemSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cast each declared column to its canonical dtype.

    Returns the coerced frame and one row per cell that held a value but could not be cast
    (columns `row`, `column`, `check`, `value`); such cells become null in the coerced frame.
    Naive timestamps are taken as UTC.
    """
    out = {}
    failures = []
    for name in frame.columns:
        raw = _blank_as_null(frame[name])
        if name == spec.id_column:
            out[name] = _as_id(raw)
            continue
        if name == spec.event_time_column:
            casted, check = _as_time(raw), "type: expected a timestamp"
        elif name in spec.features:
            feature = spec.features[name]
            casted, check = _cast(raw, feature), f"type: expected {feature.type}"
        else:
            out[name] = raw
            continue
        lost = raw.notna().to_numpy() & casted.isna().to_numpy()
        if lost.any():
            failures.append(
                pd.DataFrame(
                    {"row": frame.index[lost], "column": name, "check": check, "value": raw[lost]}
                )
            )
        out[name] = casted
    failed = pd.concat(failures, ignore_index=True) if failures else _empty_failures()
    return pd.DataFrame(out, index=frame.index), failed


def _blank_as_null(raw: pd.Series) -> pd.Series:
    """An empty or all-space text cell (an empty CSV field) means null, not a bad value."""
    if not (pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)):
        return raw
    blank = raw.astype("str").str.strip().eq("").to_numpy() & raw.notna().to_numpy()
    return raw.where(~blank, None) if blank.any() else raw


def _empty_failures() -> pd.DataFrame:
    return pd.DataFrame({"row": [], "column": [], "check": [], "value": []})


def _as_id(raw: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(raw):
        # Ids read as float because of a null: 17.0 should stay "17".
        raw = raw.astype("Int64")
    return raw.astype("str").where(raw.notna(), None)


def _as_time(raw: pd.Series) -> pd.Series:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype(EVENT_TIME_DTYPE)
    if pd.api.types.is_datetime64_dtype(raw):
        return raw.dt.tz_localize("UTC").astype(EVENT_TIME_DTYPE)
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    return parsed.astype(EVENT_TIME_DTYPE)


def _cast(raw: pd.Series, feature: Feature) -> pd.Series:
    dtype = feature_dtype(feature)
    if dtype == "str":
        return raw.astype("str").where(raw.notna(), None)
    if dtype == "boolean":
        return _as_bool(raw)
    numbers = pd.to_numeric(raw, errors="coerce")
    if dtype == "Int64":
        # 2.5 in an int column is not an int: make it a coercion failure, not a silent floor.
        whole = numbers.isna() | (numbers == numbers.round())
        numbers = numbers.where(whole)
    return numbers.astype(dtype)


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _as_bool(raw: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype("boolean")
    text = raw.astype("str").str.strip().str.lower()
    mapped = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    mapped[text.isin(_TRUE)] = True
    mapped[text.isin(_FALSE)] = False
    return mapped.where(raw.notna(), pd.NA)
