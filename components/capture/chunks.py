"""Captured requests as Arrow tables and Parquet chunks.

A request reaches the capture as columns (:class:`Batch`), kept as given until a flush
turns many of them into one Arrow table, one conversion per column. Conversion never fails
on data: a value that does not fit its declared type is kept as given (Arrow's inferred
type), and as text as a last resort, so one odd request cannot hold back the rows flushed
with it. Chunks are Parquet with one codec for the whole file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.problem import ProblemSpec

logger = logging.getLogger(__name__)

PREDICTION_ID, CAPTURED_AT = "prediction_id", "captured_at"
BASE_COLUMNS = (PREDICTION_ID, CAPTURED_AT, "model_version")
CLASSIFICATION_OUTPUTS = ("probability", "label")
REGRESSION_OUTPUTS = ("value",)
FLAGS_COLUMN = "flags"
CODEC = "snappy"  # Parquet's usual codec, for every column of a chunk

TIMESTAMP = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SEQUENCES = (list, tuple)


def outputs_of(spec: ProblemSpec) -> tuple[str, ...]:
    return CLASSIFICATION_OUTPUTS if spec.is_classification else REGRESSION_OUTPUTS


def epoch_us(moment: datetime) -> int:
    """An aware time as microseconds since the epoch (cheap to keep per request)."""
    return (moment - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, eq=False, slots=True)
class Codes:
    """A categorical column given as codes into ``categories``, as in a model's feature
    matrix: floats, NaN for null. Decoding waits for the flush, where it is one Arrow call
    for many requests. A code that is no whole number in range (a bug in whatever encoded
    it; the value it stood for cannot be recovered) is stored as null and logged."""

    codes: np.ndarray
    categories: tuple

    def values(self) -> list:
        """The categories as Python values, None for null (and invalid codes)."""
        return self.decoded(self.codes, pa.infer_type(list(self.categories))).to_pylist()

    def decoded(self, codes: np.ndarray, declared: pa.DataType, column: str = "") -> pa.Array:
        """``codes`` (of this column's categories) as an Arrow array of the declared type,
        or a dictionary array of it."""
        codes = np.asarray(codes, dtype=np.float64)
        dictionary = column_array(list(self.categories), declared)
        try:
            # Valid codes, the usual case: the safe cast refuses fractions, and
            # from_arrays codes out of range.
            indices = pa.array(codes, from_pandas=True).cast(pa.int32())
            return pa.DictionaryArray.from_arrays(indices, dictionary)
        except (pa.ArrowInvalid, IndexError):
            pass
        with np.errstate(invalid="ignore"):  # inf % 1 is NaN: invalid, as it should be
            invalid = ~np.isnan(codes) & (
                (codes < 0) | (codes >= len(self.categories)) | (codes % 1 != 0)
            )
        if invalid.any():
            logger.error(
                "capture column %s: %d codes are not codes of its %d categories (e.g. %s); "
                "stored as null",
                column or "?",
                int(invalid.sum()),
                len(self.categories),
                sorted(set(codes[invalid].tolist()))[:5],
            )
        indices = np.where(np.isnan(codes) | invalid, -1, codes).astype(np.int64)
        return dictionary.take(pa.array(indices, mask=indices < 0))


@dataclass(frozen=True, eq=False, slots=True)
class FeatureMatrix:
    """Several columns of a request as one array, as in a model's feature matrix: float64,
    one column per name, NaN for null; the columns named in ``categories`` hold codes into
    their categories (as :class:`Codes` does). Give the same ``names`` and ``categories``
    objects with every request: matrices of one layout are stacked at flush time."""

    values: np.ndarray
    names: tuple[str, ...]
    categories: Mapping[str, tuple] = field(default_factory=dict)

    def same_layout(self, other: FeatureMatrix) -> bool:
        return (self.names is other.names or self.names == other.names) and (
            self.categories is other.categories or self.categories == other.categories
        )

    def columns(self) -> dict[str, Any]:
        """The matrix as separate columns: arrays, and Codes for categories."""
        out: dict[str, Any] = {}
        for j, name in enumerate(self.names):
            column = self.values[:, j]
            categories = self.categories.get(name)
            out[name] = column if categories is None else Codes(column, categories)
        return out


@dataclass(slots=True)
class Batch:
    """One recorded request, kept as given until a flush converts many at once. (Slots: a
    buffered request is as few objects as possible for the garbage collector to walk.)"""

    values: dict[str, Any]
    rows: int
    at: int  # microseconds since the epoch
    matrix: FeatureMatrix | None = None


def capture_columns(spec: ProblemSpec) -> tuple[str, ...]:
    outputs = outputs_of(spec)
    columns = (
        *BASE_COLUMNS,
        spec.id_column,
        spec.event_time_column,
        *spec.input_features,
        *outputs,
        FLAGS_COLUMN,
    )
    clashes = sorted({c for c in columns if columns.count(c) > 1})
    if clashes:
        raise ValueError(
            f"problem {spec.name!r}: column names {clashes} clash with the capture's own columns "
            f"({', '.join((*BASE_COLUMNS, *outputs, FLAGS_COLUMN))}); rename them in the "
            "problem file"
        )
    return columns


def arrow_types(spec: ProblemSpec) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {
        PREDICTION_ID: pa.string(),
        CAPTURED_AT: TIMESTAMP,
        "model_version": pa.string(),
        spec.id_column: pa.string(),
        spec.event_time_column: TIMESTAMP,
        "probability": pa.float64(),
        "label": pa.int64(),
        "value": pa.float64(),
        FLAGS_COLUMN: pa.string(),
    }
    for name in spec.input_features:
        feature = spec.features[name]
        if feature.is_categorical:
            ints = all(type(c) is int for c in feature.categories or [])
            types[name] = pa.int64() if ints else pa.string()
        else:
            types[name] = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}[
                feature.type
            ]
    return {name: types[name] for name in capture_columns(spec)}


def batches_table(batches: list[Batch], types: Mapping[str, pa.DataType]) -> pa.Table:
    """Many recorded requests as one table with the columns of ``types``, in order. When
    every request gave a feature matrix of one layout, the matrices are stacked once."""
    layout = batches[0].matrix
    if layout is not None and all(
        b.matrix is not None and b.matrix.same_layout(layout) for b in batches
    ):
        stacked = np.concatenate([b.matrix.values for b in batches])
        in_matrix = {name: j for j, name in enumerate(layout.names)}
    else:  # mixed requests: each matrix as columns of its own request
        stacked, in_matrix = None, {}
        for b in batches:
            if b.matrix is not None:
                b.values.update(b.matrix.columns())
                b.matrix = None
    arrays = []
    for name, declared in types.items():
        if name in in_matrix:
            values = stacked[:, in_matrix[name]]
            categories = layout.categories.get(name)
            if categories is not None:
                arrays.append(Codes(values, categories).decoded(values, declared, name))
            else:
                arrays.append(column_array(np.ascontiguousarray(values), declared))
        elif name == CAPTURED_AT:
            stamps = np.array([b.at for b in batches], dtype=np.int64).astype("datetime64[us]")
            arrays.append(column_array(np.repeat(stamps, [b.rows for b in batches]), declared))
        else:
            arrays.append(_joined_column(name, batches, declared))
    return pa.Table.from_arrays(arrays, names=list(types))


def _joined_column(name: str, batches: list[Batch], declared: pa.DataType) -> pa.Array:
    """One column of many requests as one array."""
    pieces = [b.values.get(name) for b in batches]
    first = pieces[0]
    if first is None and all(p is None for p in pieces):
        return pa.nulls(sum(b.rows for b in batches), type=declared)
    if isinstance(first, Codes) and all(
        isinstance(p, Codes) and p.categories == first.categories for p in pieces
    ):
        return first.decoded(np.concatenate([p.codes for p in pieces]), declared, name)
    if all(type(p) in _SEQUENCES for p in pieces):  # values as sent: chained in C
        return column_array(list(chain.from_iterable(pieces)), declared)
    spread = [_spread(p, b.rows) for p, b in zip(pieces, batches, strict=True)]
    joined = _joined(spread)
    if isinstance(joined, list) and any(isinstance(p, np.ndarray) for p in spread):
        # Arrays beside lists (a matrix's float64 column beside a request's ints): each
        # piece in the declared type on its own, so one piece's dtype does not decide it.
        arrays = [column_array(p, declared) for p in spread]
        if all(a.type == declared for a in arrays):
            return pa.concat_arrays(arrays)
    return column_array(joined, declared)


def _spread(values: Any, rows: int) -> Any:
    """A request's column: None (missing) and a single string stand for every row; codes
    become their categories."""
    if values is None or isinstance(values, str):
        return [values] * rows
    if isinstance(values, Codes):
        return values.values()
    return values


def _joined(pieces: list[Any]) -> Any:
    """Requests' columns end to end: NumPy arrays of one dtype, or all numeric (NumPy
    promotes them, NaN staying null), stay an array; anything else becomes one list of
    Python values."""
    first = pieces[0]
    if all(isinstance(p, np.ndarray) for p in pieces) and (
        all(p.dtype == first.dtype for p in pieces) or all(p.dtype.kind in "fiu" for p in pieces)
    ):
        return np.concatenate(pieces) if len(pieces) > 1 else first
    out: list = []
    for piece in pieces:
        out.extend(piece.tolist() if isinstance(piece, np.ndarray) else piece)
    return out


def column_array(values: Any, declared: pa.DataType) -> pa.Array:
    """A column in the declared type: NumPy numbers (NaN as null) are converted in one
    call, other values through Arrow's own checks, and what does not fit through
    :func:`_as_given`."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiubM":
        if values.dtype.kind == "f":
            array = pa.array(values, mask=np.isnan(values))
        else:
            array = pa.array(values, from_pandas=True)
        if array.type != declared:
            try:
                return array.cast(declared)
            except (pa.ArrowException, OverflowError):
                return array  # kept as given rather than failing the flush
        return array
    values = list(values)
    if declared == TIMESTAMP:
        if values.count(None) == len(values):
            return pa.nulls(len(values), type=declared)
        # Aware datetimes, as their distance from the epoch (no utcoffset() per value);
        # anything else (naive, text, numbers) fails the subtraction and takes _as_given.
        try:
            since = [None if v is None else v - _EPOCH for v in values]
            return pa.array(since, type=pa.duration("us")).cast(pa.int64()).cast(TIMESTAMP)
        except (TypeError, pa.ArrowException, OverflowError):
            pass
    else:
        exact = _EXACT.get(declared)
        if exact is None or all(v is None or type(v) in exact for v in values):
            try:
                return pa.array(values, type=declared)
            except (pa.ArrowException, OverflowError, TypeError, ValueError):
                pass
    return _as_given(values, declared)


# Where Arrow would convert silently, the Python types a column takes as they are: a float
# is never truncated into an int column, and a bool is no number. (Arrow refuses the rest.)
_EXACT: dict[pa.DataType, tuple[type, ...]] = {
    pa.int64(): (int,),
    pa.float64(): (float, int),
}


def _as_given(values: list, declared: pa.DataType) -> pa.Array:
    """The declared type when every value already has it; otherwise the values as given
    (Arrow's inferred type), and as text as a last resort, so a flush never fails on data."""
    if declared == TIMESTAMP and all(v is None or isinstance(v, datetime) for v in values):
        try:
            return pa.array(values, type=declared)
        except (pa.ArrowException, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def partitions(table: pa.Table, keys: np.ndarray):
    """(key, rows of the table with that key) for each distinct key, in order; the table
    itself, not a copy, when every row has the same key."""
    distinct = np.unique(keys)
    if len(distinct) == 1:
        yield distinct[0], table
        return
    for key in distinct:
        yield key, table.filter(pa.array(keys == key))


def hours_of(table: pa.Table) -> np.ndarray:
    """The hour since the epoch each row was captured in."""
    stamps = table.column(CAPTURED_AT).to_numpy().astype("datetime64[us]").astype(np.int64)
    return stamps // 3_600_000_000


def parquet_bytes(table: pa.Table) -> bytes:
    """A chunk: Parquet, one codec. Written without Arrow's own schema, so readers see each
    column's Parquet type: categories are text whether a chunk got them as a dictionary
    array (codes) or as text.

    The encodings follow the column types: dictionary arrays (categories, the model
    version) stay dictionary-encoded, other text (ids: every value distinct) is written
    DELTA_LENGTH_BYTE_ARRAY instead of trying a dictionary that can only overflow, which
    halves the write's CPU at the same size (benchmarks/README.md), and numbers are plain.
    """
    dictionaries = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    text = {f.name: "DELTA_LENGTH_BYTE_ARRAY" for f in table.schema if _is_text(f.type)}
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=CODEC,
        use_dictionary=dictionaries,
        column_encoding=text,
        store_schema=False,
    )
    return sink.getvalue().to_pybytes()


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)
