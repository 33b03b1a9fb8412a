"""Reading a user's dataset: CSV or Parquet, from a local path or s3://bucket/key.

CSV cells are read as text and typed by `components.data.schema.coerce_to_spec`, so that a bad
cell becomes a quarantined row instead of a failed read of the whole file.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
from botocore.exceptions import ClientError

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
PARQUET_SUFFIXES = (".parquet", ".pq")


class DataSourceError(ValueError):
    """The input could not be found or read; the message names it and says why."""


def read_table(source: str, *, s3_client=None) -> pd.DataFrame:
    """Read a CSV or Parquet table from a local path or an s3:// URI (needs `s3_client`)."""
    kind = check_source(source)
    if source.startswith("s3://"):
        if s3_client is None:
            raise DataSourceError(f"{source}: reading from S3 needs an S3 client")
        body = io.BytesIO(_fetch_s3(source, s3_client))
        return _parse(body, kind, source)
    return _parse(Path(source).expanduser(), kind, source)


def check_source(source: str) -> str:
    """Fail early on what can be known without reading: the format, and for a local path
    that the file exists. Returns the format ("csv" or "parquet")."""
    kind = _format_of(source)
    if source.startswith("s3://"):
        return kind
    path = Path(source).expanduser()
    if not path.exists():
        raise DataSourceError(f"{source}: input file not found (looked in {path.resolve()})")
    if not path.is_file():
        raise DataSourceError(f"{source}: is not a file")
    return kind


def _format_of(source: str) -> str:
    lower = source.lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    allowed = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
    raise DataSourceError(f"{source}: unsupported file type (expected one of {allowed})")


def _fetch_s3(uri: str, s3_client) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise DataSourceError(f"{uri}: an S3 input needs the form s3://bucket/key")
    try:
        return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise DataSourceError(f"{uri}: input object not found ({code})") from None
        raise DataSourceError(f"{uri}: cannot be read from S3 ({code}: {exc})") from exc


def _parse(handle, kind: str, source: str) -> pd.DataFrame:
    try:
        if kind == "csv":
            # Every cell as text; an empty field is null. Typing happens in validation.
            compression = "infer" if isinstance(handle, Path) else _compression(source)
            return pd.read_csv(
                handle, dtype=str, keep_default_na=False, na_values=[""], compression=compression
            )
        return pd.read_parquet(handle)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{source}: cannot be read as CSV ({exc})") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataSourceError(f"{source}: cannot be read as {kind} ({exc})") from None


def _compression(source: str) -> str | None:
    for suffix, name in ((".gz", "gzip"), (".bz2", "bz2"), (".zip", "zip"), (".xz", "xz")):
        if source.lower().endswith(suffix):
            return name
    return None
