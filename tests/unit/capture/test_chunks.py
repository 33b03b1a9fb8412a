"""Captured chunks: what the service gives as codes, matrices or rows is stored as the same
columns, in Parquet with one codec."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from capture_cases import (
    Clock,
    chunk_keys,
    columns_of,
    matrix_request,
    record_n,
)

from components.capture.buffer import Capture
from components.capture.chunks import Codes, FeatureMatrix
from components.capture.readers import read_captures
from components.core.store import LocalStore


def test_categories_given_as_codes_are_stored_as_categories(spec, store):

    regions = spec.features["region"].categories
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    codes = Codes(np.array([0.0, np.nan, len(regions) - 1]), tuple(regions))
    capture.record_columns(columns_of(["a0", "a1", "a2"], region=codes), 3)
    capture.record_columns(
        columns_of(["b0", "b1"], region=Codes(np.array([1.0, 1.0]), tuple(regions))), 2
    )
    assert capture.flush() == 5
    # The same column as codes in one request and as values in another (mixed) also works.
    capture.record_columns(columns_of(["c0"], region=Codes(np.array([2.0]), tuple(regions))), 1)
    capture.record_columns(columns_of(["d0"], region=["west"]), 1)
    assert capture.flush() == 2
    frame = read_captures(store, "churn").set_index("prediction_id")
    assert pd.isna(frame.loc["a1", "region"])  # NaN code: null
    assert frame["region"].drop("a1").to_dict() == {
        "a0": regions[0],
        "a2": regions[-1],
        "b0": regions[1],
        "b1": regions[1],
        "c0": regions[2],
        "d0": "west",
    }
    assert (frame["model_version"] == "v1").all()
    assert frame["flags"].isna().all()  # a column no request gave is null


def test_features_given_as_a_matrix_are_stored_as_the_same_columns(spec, tmp_path):
    names = tuple(spec.input_features)
    categories = {n: tuple(spec.features[n].categories) for n in spec.categorical_features}
    frames = {}
    for how in ("plain", "matrix", "mixed", "rows"):
        store = LocalStore(tmp_path / how)
        capture = Capture(store, spec, worker_id="w1", clock=Clock())
        for k in range(3):
            ids = [f"r{k}-{i}" for i in range(4)]
            plain, rest, matrix = matrix_request(ids, names, categories)
            if how == "plain" or (how == "mixed" and k == 1):
                capture.record_columns(plain, 4)
            elif how == "rows" and k == 1:  # one by one, in the same flush as matrices
                keys = (spec.id_column, spec.event_time_column, *names)
                capture.record(
                    [{key: plain[key][i] for key in keys} for i in range(4)],
                    [
                        {
                            "prediction_id": ids[i],
                            "model_version": "v1",
                            "probability": float(plain["probability"][i]),
                            "label": int(plain["label"][i]),
                        }
                        for i in range(4)
                    ],
                )
            else:
                capture.record_columns(rest, 4, matrix=matrix)
        assert capture.flush() == 12
        frames[how] = read_captures(store, "churn").sort_values("prediction_id", ignore_index=True)
    for how in ("matrix", "mixed", "rows"):
        pd.testing.assert_frame_equal(frames[how], frames["plain"])
    assert frames["plain"][names[0]].isna().sum() == 3
    assert frames["plain"]["region"].notna().sum() == 12


def test_a_feature_matrix_that_does_not_fit_is_refused(spec, store):

    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    names = ("tenure_months", "monthly_charges")
    columns = columns_of(["a", "b"])
    rest = {k: v for k, v in columns.items() if k not in names}
    with pytest.raises(ValueError, match=r"shape \(3, 2\) for 2 rows"):
        capture.record_columns(rest, 2, matrix=FeatureMatrix(np.zeros((3, 2)), names))
    with pytest.raises(ValueError, match=r"\['colour'\] are not capture columns"):
        capture.record_columns(rest, 2, matrix=FeatureMatrix(np.zeros((2, 1)), ("colour",)))
    with pytest.raises(ValueError, match=r"\['monthly_charges', 'tenure_months'\] given both"):
        capture.record_columns(columns, 2, matrix=FeatureMatrix(np.zeros((2, 2)), names))
    assert capture.unwritten_rows == 0


def test_codes_outside_the_categories_are_stored_as_null_and_logged(spec, store, caplog):

    regions = tuple(spec.features["region"].categories)
    assert Codes(np.array([0.0, np.nan]), ("a", "b")).values() == ["a", None]
    assert Codes(np.array([1.0]), (0, 1)).values() == [1]
    for code in (2.0, 0.5, -1.0, np.inf, 1e30):  # each kind alone, too
        assert Codes(np.array([1.0, code]), ("a", "b")).values() == ["b", None], code
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    bad = Codes(np.array([0.0, 99.0, 0.5, -1.0]), regions)
    capture.record_columns(columns_of(["a", "b", "c", "d"], region=bad), 4)
    with caplog.at_level(logging.ERROR):
        assert capture.flush() == 4  # the rows are kept
    assert "capture column region: 3 codes are not codes of its 5 categories" in caplog.text
    frame = read_captures(store, "churn").set_index("prediction_id")
    assert frame.loc["a", "region"] == regions[0]
    assert frame.loc[["b", "c", "d"], "region"].isna().all()


def test_event_times_keep_their_instant_whatever_their_offset(spec, store):
    plus2 = timezone(timedelta(hours=2))
    times = [
        datetime(2024, 4, 30, 8, 0, 0, 123456, tzinfo=plus2),
        None,
        pd.Timestamp("2024-04-30 06:00", tz="UTC"),
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),  # before the epoch
    ]
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    ids = ["a", "b", "c", "d"]
    capture.record_columns(columns_of(ids, event_time=times), 4)
    assert capture.flush() == 4
    stored = read_captures(store, "churn").set_index("prediction_id")["event_time"]
    assert stored["a"] == pd.Timestamp("2024-04-30 06:00:00.123456", tz="UTC")
    assert pd.isna(stored["b"])
    assert stored["c"] == pd.Timestamp("2024-04-30 06:00", tz="UTC")
    assert stored["d"] == pd.Timestamp("1969-12-31 23:59", tz="UTC")


def test_chunks_are_parquet_with_one_codec_and_statistics_on_time(spec, store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    record_n(capture, 20)
    capture.flush()
    [key] = chunk_keys(store)
    meta = pq.ParquetFile(pa.BufferReader(store.get_bytes(key))).metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    # Readers filter chunks by time from these statistics.
    assert columns["captured_at"].statistics.has_min_max
    assert columns["event_time"].statistics.has_min_max
    assert {column.compression for column in columns.values()} == {"SNAPPY"}


def test_chunk_encodings_follow_the_column_types(spec, store, tmp_path):
    import pyarrow.parquet as pq

    regions = tuple(spec.features["region"].categories)
    capture = Capture(store, spec, worker_id="w1", clock=Clock())
    codes = Codes(np.array([0.0, 1.0, 2.0]), regions)
    capture.record_columns(columns_of(["a0", "a1", "a2"], region=codes), 3)
    assert capture.flush() == 3
    [key] = chunk_keys(store)
    meta = pq.ParquetFile(store.get_file(key, tmp_path / "chunk.parquet")).metadata
    columns = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i)
        for i in range(meta.num_columns)
    }
    assert {c.compression for c in columns.values()} == {"SNAPPY"}  # one codec
    assert "DELTA_LENGTH_BYTE_ARRAY" in columns["prediction_id"].encodings  # distinct text
    assert "RLE_DICTIONARY" in columns["region"].encodings  # a category
    assert "RLE_DICTIONARY" not in columns["probability"].encodings  # a number
