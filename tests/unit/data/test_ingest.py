"""Reading inputs: CSV and Parquet from disk, and clear errors for what cannot be read."""

from __future__ import annotations

import pandas as pd
import pytest

from components.data.ingest import DataSourceError, read_table


def test_csv_cells_are_read_as_text_with_empty_as_null(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,x,c\n001,1.5,a\n002,,b\n")
    frame = read_table(str(path))
    assert frame["id"].tolist() == ["001", "002"]  # leading zeros kept
    assert frame["x"].iloc[0] == "1.5"
    assert pd.isna(frame["x"].iloc[1])


def test_gzipped_csv(tmp_path):
    path = tmp_path / "in.csv.gz"
    pd.DataFrame({"a": [1, 2]}).to_csv(path, index=False)
    assert read_table(str(path))["a"].tolist() == ["1", "2"]


def test_parquet_keeps_its_types(tmp_path):
    path = tmp_path / "in.parquet"
    pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}).to_parquet(path)
    frame = read_table(str(path))
    assert frame["a"].dtype == "int64"
    assert frame["b"].tolist() == [0.5, 1.5]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataSourceError, match=r"nope\.csv: input file not found"):
        read_table(str(tmp_path / "nope.csv"))


def test_directory_is_not_a_file(tmp_path):
    folder = tmp_path / "d.parquet"
    folder.mkdir()
    with pytest.raises(DataSourceError, match="is not a file"):
        read_table(str(folder))


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "in.xlsx"
    path.write_text("x")
    with pytest.raises(DataSourceError, match=r"in\.xlsx: unsupported file type"):
        read_table(str(path))


def test_corrupt_parquet_is_reported(tmp_path):
    path = tmp_path / "in.parquet"
    path.write_bytes(b"definitely not parquet")
    with pytest.raises(DataSourceError, match=r"in\.parquet: cannot be read as parquet"):
        read_table(str(path))


def test_unreadable_csv_is_reported(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(DataSourceError, match=r"in\.csv: cannot be read as CSV"):
        read_table(str(path))


def test_empty_csv_is_reported(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("")
    with pytest.raises(DataSourceError, match=r"in\.csv: cannot be read as CSV"):
        read_table(str(path))


def test_s3_needs_a_client():
    with pytest.raises(DataSourceError, match="needs an S3 client"):
        read_table("s3://bucket/key.csv")
