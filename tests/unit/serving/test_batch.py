"""Batch scoring: every row scored once or rejected with reasons, predictions equal to the
service's and to pandas' path, CSV and Parquet, atomic output, the store layout."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.core.problem import load_problem
from components.core.store import LocalStore, ObjectExistsError
from components.data import datagen
from components.data.ingest import DataSourceError
from components.data.validation import SchemaMismatchError, validate_frame
from components.model.registry import Registry, RegistryError
from components.model.training import TrainParams, model_bytes, predict, split_by_time, train_model
from components.serving import batch as scoring
from components.serving.contract import Predictor, Validator

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)


@pytest.fixture(scope="module")
def booster(spec):
    config = datagen.GeneratorConfig(rows=5000, days=30, start=date(2026, 1, 1), seed=1)
    frame = datagen.generate(config).frame.drop(columns=["label_time"])
    parts = split_by_time(validate_frame(frame, spec).valid, spec)
    params = TrainParams(num_boost_round=15, early_stopping_rounds=5, learning_rate=0.3)
    return train_model(parts.train, parts.validation, spec, params, nthread=1).booster


@pytest.fixture(scope="module")
def predictor(spec, booster):
    return Predictor(spec, booster, version="v7", threshold=THRESHOLD)


def _traffic(rows: int = 2000, seed: int = 2, **changes) -> datagen.Generated:
    config = datagen.GeneratorConfig(rows=rows, days=20, seed=seed, drift_day=0, **changes)
    return datagen.generate(config)


def _records(frame: pd.DataFrame, spec) -> list[dict]:
    """What a client would send: id, time and inputs, nulls as None."""
    columns = [spec.id_column, spec.event_time_column, *spec.input_features]
    plain = frame[columns].astype(object)
    return plain.where(plain.notna(), None).to_dict("records")


def test_every_row_is_scored_once_or_rejected_with_its_reasons(spec, predictor, tmp_path):
    generated = _traffic(scenario="quality", quality_fraction=0.05)
    frame = generated.frame
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / "out" / "scores.parquet"

    summary = scoring.score_table(
        tmp_path / "in.parquet", predictor, Validator(spec), out, chunk_rows=700
    )

    scored = pd.read_parquet(out)
    rejected = pd.read_parquet(summary.rejected_output)
    assert summary.rows_in == len(frame) == 2000
    assert summary.chunks == math.ceil(2000 / 700)
    assert summary.rows_scored == len(scored)
    assert summary.rows_rejected == len(rejected) == len(generated.corruptions) > 0
    assert summary.ignored_columns == ("churned", "label_time")
    assert summary.model_version == "v7"
    ids = pd.concat([scored[spec.id_column], rejected[spec.id_column]])
    assert ids.is_unique
    assert set(ids) == set(frame[spec.id_column])
    # Every corrupted row, and only those, is rejected; its position points at it.
    assert set(rejected[spec.id_column]) == set(generated.corruptions[spec.id_column])
    positions = rejected[scoring.POSITION_COLUMN].to_numpy()
    assert (frame[spec.id_column].to_numpy()[positions] == rejected[spec.id_column]).all()
    assert rejected[scoring.REASONS_COLUMN].str.len().gt(0).all()
    assert scored["prediction_id"].is_unique
    assert (scored["model_version"] == "v7").all()
    assert scored[spec.event_time_column].tolist() == (
        frame.set_index(spec.id_column).loc[scored[spec.id_column], spec.event_time_column].tolist()
    )
    assert not list(out.parent.glob(".*.tmp"))


def test_predictions_equal_the_service_path_and_the_pandas_path(spec, booster, predictor, tmp_path):
    frame = _traffic(rows=1500, seed=4).frame
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    scoring.score_table(
        tmp_path / "in.parquet", predictor, Validator(spec), tmp_path / "o.parquet", chunk_rows=400
    )
    scored = pd.read_parquet(tmp_path / "o.parquet")

    assert scored[spec.id_column].tolist() == frame[spec.id_column].tolist()
    valid, errors = Validator(spec).validate_each(_records(frame, spec))
    assert errors == {}
    service = predictor.scores(valid)
    pandas_path = predict(booster, frame, spec)
    np.testing.assert_array_equal(scored["probability"].to_numpy(), service.astype("float64"))
    np.testing.assert_array_equal(scored["probability"].to_numpy(), pandas_path.astype("float64"))
    expected_labels = (service >= THRESHOLD).astype("int64")
    np.testing.assert_array_equal(scored["label"].to_numpy(), expected_labels)
    assert scored[scoring.UNKNOWN_CATEGORY_FLAG].isna().all()


def _hand_corrupted(spec) -> pd.DataFrame:
    frame = _traffic(rows=40, seed=5).frame.drop(columns=["label_time", "churned"])
    frame["tenure_months"] = frame["tenure_months"].astype("Int64")
    frame.loc[0, "payment_method"] = "crypto"  # unknown category
    frame.loc[1, "tenure_months"] = -3  # out of range
    frame.loc[2, "monthly_charges"] = np.nan  # null in a non-nullable column
    frame.loc[3, "total_charges"] = np.nan  # null in a nullable column: fine
    frame.loc[4, "usage_hours"] = np.inf  # not a number a JSON request could carry
    return frame


def test_hand_corrupted_rows_are_rejected_with_field_level_reasons(spec, predictor, tmp_path):
    frame = _hand_corrupted(spec)
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    summary = scoring.score_table(
        tmp_path / "in.parquet", predictor, Validator(spec), tmp_path / "o.parquet", chunk_rows=7
    )
    rejected = pd.read_parquet(summary.rejected_output).set_index(scoring.POSITION_COLUMN)

    assert summary.rows_rejected == 4
    assert summary.rows_scored == 36
    assert sorted(rejected.index) == [0, 1, 2, 4]
    reasons = rejected[scoring.REASONS_COLUMN]
    assert reasons[0].startswith("payment_method: Input should be 'credit-card'")
    assert reasons[1] == "tenure_months: Input should be greater than or equal to 0"
    assert reasons[2].startswith("monthly_charges:")
    assert reasons[4].startswith("usage_hours:")
    # Original values, as text, nulls as nulls.
    assert rejected.loc[0, "payment_method"] == "crypto"
    assert rejected.loc[1, "tenure_months"] == "-3"
    assert pd.isna(rejected.loc[2, "monthly_charges"])
    assert rejected.loc[4, "usage_hours"] == "inf"
    scored = pd.read_parquet(tmp_path / "o.parquet")
    assert frame.loc[3, spec.id_column] in set(scored[spec.id_column])


def test_unknown_categories_can_be_scored_and_flagged_as_the_service_can(spec, predictor, tmp_path):
    frame = _hand_corrupted(spec).iloc[[0, 3, 5]]
    summary = scoring.score_table(
        [frame], predictor, Validator(spec, flag_unknown=True), tmp_path / "o.parquet"
    )
    flags = pq.read_table(tmp_path / "o.parquet")[scoring.UNKNOWN_CATEGORY_FLAG]
    assert summary.rows_scored == 3
    assert flags.to_pylist() == ["payment_method", None, None]


def test_csv_cells_are_typed_first_and_untypable_cells_reject_their_row(spec, predictor, tmp_path):
    frame = _traffic(rows=600, seed=6).frame
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    text = frame.astype(object).where(frame.notna(), "").astype(str)
    text.loc[10, "tenure_months"] = "abc"  # not an int
    text.loc[11, "total_charges"] = "n/a"  # not a float, in a nullable column
    text.loc[12, "total_charges"] = " "  # blank: null, which this column allows
    text.to_csv(tmp_path / "in.csv", index=False)

    csv = scoring.score_table(
        tmp_path / "in.csv", predictor, Validator(spec), tmp_path / "c.parquet", chunk_rows=250
    )
    parquet = scoring.score_table(
        tmp_path / "in.parquet", predictor, Validator(spec), tmp_path / "p.parquet"
    )

    assert (csv.rows_in, csv.rows_scored, csv.rows_rejected, csv.chunks) == (600, 598, 2, 3)
    rejected = pd.read_parquet(csv.rejected_output).set_index(scoring.POSITION_COLUMN)
    assert rejected.loc[10, scoring.REASONS_COLUMN].startswith(
        "tenure_months: type: expected int (got 'abc')"
    )
    assert rejected.loc[11, scoring.REASONS_COLUMN] == (
        "total_charges: type: expected float (got 'n/a')"
    )
    from_csv = pd.read_parquet(tmp_path / "c.parquet").set_index(spec.id_column)
    from_parquet = pd.read_parquet(tmp_path / "p.parquet").set_index(spec.id_column)
    blanked = frame.loc[12, spec.id_column]
    assert blanked in from_csv.index  # scored, with total_charges null
    from_csv = from_csv.drop(index=blanked)
    same = from_parquet.loc[from_csv.index]
    np.testing.assert_array_equal(from_csv["probability"], same["probability"])
    assert (from_csv[spec.event_time_column] == same[spec.event_time_column]).all()
    assert parquet.rejected_output is None
    assert not (tmp_path / "p.rejected.parquet").exists()


class _FailsOnSecondChunk(Predictor):
    calls = 0

    def predict(self, records):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("the model server went away")
        return super().predict(records)


def test_a_failure_midway_leaves_no_new_output_behind(spec, booster, tmp_path):
    frame = _traffic(rows=900, seed=7, scenario="quality", quality_fraction=0.1).frame
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / "o.parquet"
    out.write_bytes(b"an older, complete output")
    failing = _FailsOnSecondChunk(spec, booster, version="v7", threshold=THRESHOLD)

    with pytest.raises(RuntimeError, match="went away"):
        scoring.score_table(tmp_path / "in.parquet", failing, Validator(spec), out, chunk_rows=300)

    assert out.read_bytes() == b"an older, complete output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "o.parquet"]


def test_a_missing_input_feature_is_one_clear_error(spec, predictor, tmp_path):
    frame = _traffic(rows=100).frame.drop(columns=["monthly_charges"])
    with pytest.raises(SchemaMismatchError, match="missing columns: monthly_charges"):
        scoring.score_table([frame], predictor, Validator(spec), tmp_path / "o.parquet")
    assert list(tmp_path.iterdir()) == []


def test_chunks_must_keep_their_columns(spec, predictor, tmp_path):
    frame = _traffic(rows=100).frame
    chunks = [frame.iloc[:50], frame.iloc[50:].drop(columns=["label_time"])]
    with pytest.raises(SchemaMismatchError, match=r"chunk 2.*missing columns: label_time"):
        scoring.score_table(chunks, predictor, Validator(spec), tmp_path / "o.parquet")
    assert list(tmp_path.iterdir()) == []


def test_no_rows_still_gives_an_output_with_its_schema(spec, predictor, tmp_path):
    summary = scoring.score_table([], predictor, Validator(spec), tmp_path / "o.parquet")
    assert (summary.rows_in, summary.chunks, summary.rejected_output) == (0, 0, None)
    schema = pq.read_schema(tmp_path / "o.parquet")
    assert schema.names == [
        spec.id_column,
        spec.event_time_column,
        "prediction_id",
        "model_version",
        "probability",
        "label",
        scoring.UNKNOWN_CATEGORY_FLAG,
    ]


def test_bad_arguments_are_refused(spec, predictor, tmp_path):
    with pytest.raises(ValueError, match="chunk_rows=0"):
        scoring.score_table([], predictor, Validator(spec), tmp_path / "o.parquet", chunk_rows=0)
    with pytest.raises(ValueError, match="two different paths"):
        scoring.score_table(
            [],
            predictor,
            Validator(spec),
            tmp_path / "o.parquet",
            rejected_path=tmp_path / "o.parquet",
        )
    with pytest.raises(DataSourceError, match="not found"):
        scoring.score_table(
            tmp_path / "absent.csv", predictor, Validator(spec), tmp_path / "o.parquet"
        )


def test_summary_markdown_has_the_counts():
    summary = scoring.ScoringSummary(1000, 990, 10, 1, "o.parquet", "r.parquet", "v2", ("churned",))
    text = summary.to_markdown()
    assert "model v2" in text
    assert "**1,000**" in text
    assert "**10** (1.00%) -> `r.parquet`" in text
    assert "churned" in text


def test_load_predictor_reads_the_champion_with_its_threshold(spec, booster, tmp_path):
    registry = Registry(LocalStore(tmp_path), spec.name)
    with pytest.raises(RegistryError, match="no champion"):
        scoring.load_predictor(registry, spec)
    files = {"model.ubj": model_bytes(booster)}
    good = registry.register(files, {"threshold": 0.42, "features": spec.input_features})
    other = registry.register(files, {"threshold": 0.5, "features": ["tenure_months"]})
    registry.promote(good, actor="test", reason="test")

    predictor = scoring.load_predictor(registry, spec)
    assert (predictor.version, predictor.threshold) == (good, 0.42)
    with pytest.raises(scoring.ModelMismatchError, match="trained on features"):
        scoring.load_predictor(registry, spec, other)


def test_scores_are_stored_with_the_summary_last(spec, predictor, tmp_path):
    frame = _hand_corrupted(spec)
    summary = scoring.score_table([frame], predictor, Validator(spec), tmp_path / "o.parquet")
    store = LocalStore(tmp_path / "store")
    where = scoring.scores_location("scores", spec.name, "v7", "abc")
    assert scoring.stored_summary(store, where) is None

    stored = scoring.store_scores(store, where, summary)

    assert store.list("scores/") == [
        "scores/churn/v7/abc/predictions.parquet",
        "scores/churn/v7/abc/rejected.parquet",
        "scores/churn/v7/abc/summary.json",
    ]
    assert stored.output == store.uri("scores/churn/v7/abc/predictions.parquet")
    assert stored.rejected_output == store.uri("scores/churn/v7/abc/rejected.parquet")
    assert scoring.stored_summary(store, where) == stored
    assert (stored.rows_scored, stored.rows_rejected) == (summary.rows_scored, 4)
    with pytest.raises(ObjectExistsError):  # a complete run is never overwritten
        scoring.store_scores(store, where, summary)


def test_a_local_output_has_no_location_in_the_store():
    assert scoring.scores_location("out/s.parquet", "churn", "v7", "abc") is None
    where = scoring.scores_location("/team/scores/", "churn", "v7", "abc")
    assert where.key("summary.json") == "team/scores/churn/v7/abc/summary.json"


def test_s3_inputs_need_a_key_and_a_client(tmp_path):
    with pytest.raises(DataSourceError, match="the form s3://bucket/key"):
        scoring.fetch_s3_object("s3://bucket-only.csv", object(), tmp_path)
    with pytest.raises(DataSourceError, match="needs an S3 client"):
        scoring.fetch_s3_object("s3://bucket/day.csv", None, tmp_path)
    with pytest.raises(DataSourceError, match="unsupported file type"):
        scoring.fetch_s3_object("s3://bucket/day.json", object(), tmp_path)


def test_file_id_and_output_kind(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"x,y\n1,2\n")
    (tmp_path / "b.csv").write_bytes(b"x,y\n1,2\n")
    assert scoring.file_id(tmp_path / "a.csv") == scoring.file_id(tmp_path / "b.csv")
    assert len(scoring.file_id(tmp_path / "a.csv")) == 16
    assert scoring.is_local_output("out/scores.parquet")
    assert not scoring.is_local_output("scores")
    assert scoring.default_rejected_path("a/s.parquet") == Path("a/s.rejected.parquet")
