"""Batch scoring (lifecycle stage 5): a table of any size scored in chunks with one model
version, through exactly the record validation the online service applies.

`score_table` reads a CSV or Parquet file (or any iterator of pandas chunks) one chunk at a
time and, for each chunk:

1. keeps the columns a request record may hold (the id, the event time and the model's
   input features) and drops every other column (the target, `label_time`, ...): the
   service's record model forbids unknown keys, so a training table would otherwise be
   refused row by row. The dropped columns are listed in the summary;
2. types the cells with `schema.coerce_to_spec`, as data prep does (CSV cells are text and
   the strict record model refuses "5" for an int; a Parquet int column with nulls may be
   float). A cell that cannot be typed rejects its row, with the reason;
3. validates every row with the service's `Validator.validate_each` and scores the valid
   ones with `Predictor.predict` (so each gets a prediction id, the model version and the
   probability and label, or the value);
4. appends the predictions to one Parquet file and the rejected rows (every original value
   as text, `_position` in the input and `_reasons`) to another: nothing is dropped silently.

Memory is bounded by the chunk, not the input. Both files are written to hidden temp files
beside their final paths and renamed into place only when every chunk has been scored, the
rejected rows first and the predictions last: a crash or an error leaves no file, or an
older complete one, at the final paths.

The store helpers at the end keep a run's files under `keys.scores` (`<output>` is the key
prefix given as output, "scores" by default):

    <output>/<problem>/<version>/<input_id>/predictions.parquet
    <output>/<problem>/<version>/<input_id>/rejected.parquet    only when a row was rejected
    <output>/<problem>/<version>/<input_id>/summary.json        written last: means complete
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import Store, open_store
from components.data.ingest import DataSourceError, check_source
from components.data.schema import coerce_to_spec
from components.data.validation import SchemaMismatchError
from components.model.registry import Registry, RegistryError
from components.serving.contract import UNKNOWN_CATEGORY_FLAG, Predictor, Validator

POSITION_COLUMN = "_position"
REASONS_COLUMN = "_reasons"
PREDICTIONS_FILE = "predictions.parquet"
REJECTED_FILE = "rejected.parquet"
SUMMARY_FILE = "summary.json"


class ModelMismatchError(RegistryError):
    """The model version was trained on other input features than the problem file declares."""


@dataclass(frozen=True)
class ScoringSummary:
    """What one scoring run read and wrote. rows_in == rows_scored + rows_rejected."""

    rows_in: int
    rows_scored: int
    rows_rejected: int
    chunks: int
    output: str
    rejected_output: str | None  # None when no row was rejected (no file is written)
    model_version: str
    ignored_columns: tuple[str, ...] = ()  # input columns no request record may hold

    def to_markdown(self) -> str:
        """A human summary, published as a Prefect artifact."""
        share = self.rows_rejected / self.rows_in if self.rows_in else 0.0
        lines = [
            f"## Batch scoring with model {self.model_version}",
            "",
            f"- rows in: **{self.rows_in:,}** ({self.chunks:,} chunks)",
            f"- scored: **{self.rows_scored:,}** -> `{self.output}`",
            f"- rejected: **{self.rows_rejected:,}** ({share:.2%})"
            + (f" -> `{self.rejected_output}`" if self.rejected_output else ""),
        ]
        if self.ignored_columns:
            lines.append(f"- ignored columns (not model inputs): {', '.join(self.ignored_columns)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading


def iter_chunks(
    source: str | Path | Iterable[pd.DataFrame], chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """Chunks of at most `chunk_rows` rows of a local CSV or Parquet file (CSV cells as text,
    an empty field null), or the given pandas chunks as they are."""
    if not isinstance(source, str | Path):
        yield from source
        return
    name = str(source)
    if name.startswith("s3://"):
        raise DataSourceError(f"{name}: score_table reads local files; download it first")
    kind = check_source(name)
    path = Path(name).expanduser()
    try:
        if kind == "parquet":
            with pq.ParquetFile(path) as parquet:
                for batch in parquet.iter_batches(batch_size=chunk_rows):
                    yield batch.to_pandas()
            return
        with pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], chunksize=chunk_rows
        ) as reader:
            yield from reader
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{name}: cannot be read as CSV ({exc})") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataSourceError(f"{name}: cannot be read as {kind} ({exc})") from None


# --------------------------------------------------------------------------- scoring


def default_rejected_path(out_path: str | Path) -> Path:
    """`scores.parquet` -> `scores.rejected.parquet`, beside it."""
    out = Path(out_path)
    return out.with_name(f"{out.name.removesuffix('.parquet')}.rejected.parquet")


def score_table(
    source: str | Path | Iterable[pd.DataFrame],
    predictor: Predictor,
    validator: Validator,
    out_path: str | Path,
    *,
    chunk_rows: int = 100_000,
    rejected_path: str | Path | None = None,
) -> ScoringSummary:
    """Score every row of `source` with `predictor`, chunk by chunk; write the predictions
    to `out_path` and the rejected rows to `rejected_path` (default: beside `out_path`, see
    `default_rejected_path`), each atomically. See the module docstring for the contract."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows} must be at least 1")
    out = Path(out_path)
    rejected = Path(rejected_path) if rejected_path is not None else default_rejected_path(out)
    if out.resolve() == rejected.resolve():
        raise ValueError(f"{out}: predictions and rejected rows need two different paths")
    label = str(source) if isinstance(source, str | Path) else "<chunks>"
    predictions, rejects = _AtomicParquet(out), _AtomicParquet(rejected)
    try:
        layout, rows_in, rows_rejected, chunks = _score_chunks(
            iter_chunks(source, chunk_rows), predictor, validator, predictions, rejects, label
        )
        if not predictions.opened:  # no row was scored: still an output, with its schema
            predictions.write(layout.predictions.empty_table())
        rejects.commit()
        predictions.commit()
    except BaseException:
        predictions.abort()
        rejects.abort()
        raise
    return ScoringSummary(
        rows_in=rows_in,
        rows_scored=rows_in - rows_rejected,
        rows_rejected=rows_rejected,
        chunks=chunks,
        output=str(out),
        rejected_output=str(rejected) if rows_rejected else None,
        model_version=predictor.version,
        ignored_columns=tuple(layout.ignored),
    )


def _score_chunks(
    chunks: Iterable[pd.DataFrame],
    predictor: Predictor,
    validator: Validator,
    predictions: _AtomicParquet,
    rejects: _AtomicParquet,
    source: str,
) -> tuple[_Layout, int, int, int]:
    """Score and write chunk after chunk; (layout, rows in, rows rejected, chunks)."""
    layout: _Layout | None = None
    rows_in = rows_rejected = number = 0
    for number, raw in enumerate(chunks, start=1):
        layout = layout or _layout(predictor.spec, list(raw.columns), source)
        layout.check(list(raw.columns), number, source)
        frame = raw.reset_index(drop=True)
        scored, bad = _score_chunk(frame, rows_in, predictor, validator, layout)
        if scored.num_rows:
            predictions.write(scored)
        if bad.num_rows:
            rejects.write(bad)
        rows_in += len(frame)
        rows_rejected += bad.num_rows
    layout = layout or _layout(predictor.spec, None, source)
    return layout, rows_in, rows_rejected, number


@dataclass(frozen=True)
class _Layout:
    """Decided on the first chunk: which columns are kept, and both output schemas."""

    columns: list[str]  # every input column, in order
    kept: list[str]  # the columns a request record may hold
    ignored: list[str]
    predictions: pa.Schema
    rejected: pa.Schema

    def check(self, columns: list[str], number: int, source: str) -> None:
        if columns != self.columns:
            missing = [c for c in self.columns if c not in columns]
            extra = [c for c in columns if c not in self.columns]
            raise SchemaMismatchError(f"{source} (chunk {number}, unlike chunk 1)", missing, extra)


def _layout(spec: ProblemSpec, columns: list[str] | None, source: str) -> _Layout:
    allowed = [spec.id_column, spec.event_time_column, *spec.input_features]
    if columns is None:  # no chunk at all: the output of a table with id and event time
        columns = [spec.id_column, spec.event_time_column]
    else:
        required = [n for n in spec.input_features if not spec.features[n].nullable]
        missing = [n for n in required if n not in columns]
        if missing:
            # One clear error instead of every row rejected for the same missing field.
            raise SchemaMismatchError(source, missing, [])
    fields = [
        pa.field(spec.id_column, pa.string()),
        pa.field(spec.event_time_column, pa.timestamp("ns", tz="UTC")),
    ]
    fields = [f for f in fields if f.name in columns]
    fields += [pa.field("prediction_id", pa.string()), pa.field("model_version", pa.string())]
    if spec.is_classification:
        fields += [pa.field("probability", pa.float64()), pa.field("label", pa.int64())]
    else:
        fields.append(pa.field("value", pa.float64()))
    fields.append(pa.field(UNKNOWN_CATEGORY_FLAG, pa.string()))
    rejected = [pa.field(str(c), pa.string()) for c in columns]
    rejected += [pa.field(POSITION_COLUMN, pa.int64()), pa.field(REASONS_COLUMN, pa.string())]
    return _Layout(
        columns=list(columns),
        kept=[c for c in columns if c in allowed],
        ignored=[str(c) for c in columns if c not in allowed],
        predictions=pa.schema(fields),
        rejected=pa.schema(rejected),
    )


def _score_chunk(
    raw: pd.DataFrame, offset: int, predictor: Predictor, validator: Validator, layout: _Layout
) -> tuple[pa.Table, pa.Table]:
    """(predictions, rejected rows) of one chunk whose index is 0..n-1."""
    spec = predictor.spec
    coerced, failures = coerce_to_spec(raw[layout.kept], spec)
    # The plain records are garbage as soon as they are validated: a chunk's Python objects
    # are most of the memory scoring needs.
    valid, errors = validator.validate_each(_records(coerced, spec))
    reasons = _reasons(failures, errors)
    passed = [i for i in range(len(coerced)) if i not in errors]
    keep = [k for k, i in enumerate(passed) if i not in reasons]
    rows = [passed[k] for k in keep]
    answers = predictor.predict([valid[k] for k in keep]) if keep else []
    del valid
    scored = _predictions_table(coerced.iloc[rows], answers, layout.predictions)
    return scored, _rejected_table(raw, offset, reasons, layout.rejected)


def _records(coerced: pd.DataFrame, spec: ProblemSpec) -> list[dict[str, Any]]:
    """One dict of plain Python values per row, nulls (NaN, NA, NaT) as None: what a JSON
    request would carry. Event times go in as naive UTC datetimes (coercion made them UTC),
    which is many times faster than building aware ones and validates the same."""
    names = list(coerced.columns)
    columns = []
    for name in names:
        values = coerced[name]
        if name == spec.event_time_column:
            naive = values.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
            columns.append(naive.tolist())
        else:
            columns.append(pa.array(values, from_pandas=True).to_pylist())
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _reasons(failures: pd.DataFrame, errors: dict[int, str]) -> dict[int, str]:
    """Per rejected position, its reasons: cells that could not be typed (a nullable cell
    would otherwise pass as null), then what the record model refused."""
    out: dict[int, list[str]] = {}
    for row, column, check, value in failures[["row", "column", "check", "value"]].itertuples(
        index=False
    ):
        out.setdefault(int(row), []).append(f"{column}: {check} (got {value!r})")
    for position, text in errors.items():
        out.setdefault(position, []).append(text)
    return {position: "; ".join(parts) for position, parts in sorted(out.items())}


def _predictions_table(rows: pd.DataFrame, answers: list[dict], schema: pa.Schema) -> pa.Table:
    columns: dict[str, Any] = {}
    for field in schema:
        if field.name in rows.columns:
            columns[field.name] = pa.array(rows[field.name], type=field.type, from_pandas=True)
        elif field.name == UNKNOWN_CATEGORY_FLAG:
            flags = (a.get("flags", {}).get(UNKNOWN_CATEGORY_FLAG) for a in answers)
            columns[field.name] = pa.array([",".join(f) if f else None for f in flags], field.type)
        else:
            columns[field.name] = pa.array([a[field.name] for a in answers], field.type)
    return pa.table(columns, schema=schema)


def _rejected_table(
    raw: pd.DataFrame, offset: int, reasons: dict[int, str], schema: pa.Schema
) -> pa.Table:
    positions = list(reasons)
    bad = raw.iloc[positions]
    columns = {str(name): _as_text(bad[name]) for name in raw.columns}
    columns[POSITION_COLUMN] = [offset + p for p in positions]
    columns[REASONS_COLUMN] = list(reasons.values())
    return pa.table(columns, schema=schema)


def _as_text(values: pd.Series) -> list[str | None]:
    return [None if _is_null(v) else str(v) for v in values.tolist()]


def _is_null(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and np.isnan(value))
    )


class _AtomicParquet:
    """A Parquet file written table by table into a hidden temp file beside its final path;
    `commit` renames it into place, `abort` removes it. Opened on the first write."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        self._writer: pq.ParquetWriter | None = None

    @property
    def opened(self) -> bool:
        return self._writer is not None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        self._writer.write_table(table)

    def commit(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self.tmp.replace(self.final)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- model and inputs


def load_predictor(registry: Registry, spec: ProblemSpec, version: str | None = None) -> Predictor:
    """A Predictor for `version` (default: the champion), its model file verified against
    the checksum in its metadata and its threshold taken from there."""
    from components.model.training import load_model  # xgboost's training side, only when needed

    chosen = version or registry.alias("champion")
    if chosen is None:
        raise RegistryError(
            f"problem {spec.name!r} has no champion in {registry.store.url}: train one "
            "(`mlops train`) or name a version to score with"
        )
    booster = load_model(registry.read_file(chosen, "model.ubj"))
    meta = registry.metadata(chosen)
    trained_on = meta.get("features")
    if trained_on is not None and list(trained_on) != spec.input_features:
        raise ModelMismatchError(
            f"version {chosen} of {spec.name!r} was trained on features {trained_on}, but the "
            f"problem file declares {spec.input_features}: score with the problem file the "
            "model was trained with, or train a model for this one"
        )
    return Predictor(spec, booster, version=chosen, threshold=meta.get("threshold"))


def file_id(path: str | Path) -> str:
    """A 16-hex-digit id of a file's bytes, read in blocks."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


def fetch_s3_object(uri: str, s3_client: Any, folder: Path) -> Path:
    """Download s3://bucket/key into `folder` through a store on the bucket, keeping the file
    name so the format can be told from it."""
    check_source(uri)
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise DataSourceError(f"{uri}: an S3 input needs the form s3://bucket/key")
    if s3_client is None:
        raise DataSourceError(f"{uri}: reading from S3 needs an S3 client")
    bucket_store = open_store(f"s3://{bucket}", s3_client=s3_client)
    if not bucket_store.exists(key):
        raise DataSourceError(f"{uri}: input object not found; check the bucket and key")
    return bucket_store.get_file(key, folder / key.rsplit("/", 1)[-1])


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class ScoresLocation:
    """Where one run's scores are stored: `keys.scores`, `root` being the output prefix."""

    root: str
    problem: str
    version: str
    input_id: str

    def key(self, name: str) -> str:
        return keys.scores(self.root, self.problem, self.version, self.input_id, name)


def scores_location(
    output: str, problem: str, version: str, input_id: str
) -> ScoresLocation | None:
    """Where to store the scores of `input_id` with `version`; None for a local output."""
    if is_local_output(output):
        return None
    return ScoresLocation(output, problem, version, input_id)


def stored_summary(store: Store, where: ScoresLocation) -> ScoringSummary | None:
    """The summary of a complete earlier run at `where`, or None."""
    key = where.key(SUMMARY_FILE)
    if not store.exists(key):  # the summary is create-only and never deleted
        return None
    raw = store.get_json(key)
    return ScoringSummary(**{**raw, "ignored_columns": tuple(raw.get("ignored_columns", ()))})


def store_scores(store: Store, where: ScoresLocation, summary: ScoringSummary) -> ScoringSummary:
    """Upload the files of a local run to `where`, then its summary (create-only, last: its
    presence means the scores are complete). Returns the summary with store URIs.

    The files are overwritten, not created only, so that a run that crashed after uploading
    them but before the summary can be repeated."""
    rejected_key = where.key(REJECTED_FILE) if summary.rejected_output else None
    if rejected_key:
        store.put_file(rejected_key, summary.rejected_output)
    store.put_file(where.key(PREDICTIONS_FILE), summary.output)
    stored = replace(
        summary,
        output=store.uri(where.key(PREDICTIONS_FILE)),
        rejected_output=store.uri(rejected_key) if rejected_key else None,
    )
    body = json.dumps(asdict(stored), indent=2).encode()
    store.put_bytes(where.key(SUMMARY_FILE), body, create_only=True)
    return stored


def is_local_output(output: str) -> bool:
    """A `*.parquet` output is a local file; anything else is a key prefix in the store."""
    return output.lower().endswith(".parquet")
