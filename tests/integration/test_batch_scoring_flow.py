"""The batch-scoring flow for real under a temporary Prefect server: a snapshot and files
(local, and on moto's S3) scored with the champion, outputs stored, counts right."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from components.core.store import LocalStore, open_store
from components.data import datagen
from components.data.ingest import DataSourceError
from components.data.snapshot import read_snapshot
from components.model.registry import Registry
from components.serving import batch as scoring
from flows.batch_scoring import BatchScoringParams, batch_score
from flows.data_prep import DataPrepParams, GeneratedInput, data_prep
from flows.training import TrainingParams, train

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with one snapshot and a champion trained on it: (store folder, snapshot id,
    champion version)."""
    folder = tmp_path_factory.mktemp("scoring") / "store"
    manifest = data_prep(
        DataPrepParams(
            problem=CHURN, store=str(folder), generated=GeneratedInput(rows=12_000, seed=8)
        )
    )
    result = train(
        TrainingParams(
            problem=CHURN, store=str(folder), trials=0, cv_folds=0, snapshot_id=manifest.snapshot_id
        )
    )
    assert result.promoted, result.gate_reasons
    return folder, manifest.snapshot_id, result.version


def _quality_traffic(rows: int = 3000, seed: int = 21) -> datagen.Generated:
    config = datagen.GeneratorConfig(
        rows=rows,
        days=30,
        start=date(2026, 4, 1),
        seed=seed,
        scenario="quality",
        drift_day=0,
        quality_fraction=0.04,
    )
    return datagen.generate(config)


def test_a_snapshot_is_scored_with_the_champion_and_stored(trained):
    folder, snapshot_id, champion = trained
    params = BatchScoringParams(
        problem=CHURN, store=str(folder), snapshot_id=snapshot_id, chunk_rows=2500
    )

    summary = batch_score(params)

    store = LocalStore(folder)
    prefix = f"scores/churn/{champion}/{snapshot_id}"
    rows = read_snapshot(store, "churn", snapshot_id)
    assert summary.model_version == champion
    assert (summary.rows_in, summary.rows_scored, summary.rows_rejected) == (
        len(rows),
        len(rows),
        0,
    )
    assert summary.chunks == -(-len(rows) // 2500)
    assert summary.ignored_columns == ("churned",)
    assert summary.output == store.uri(f"{prefix}/predictions.parquet")
    assert summary.rejected_output is None
    assert store.list("scores/") == [f"{prefix}/predictions.parquet", f"{prefix}/summary.json"]
    scored = pd.read_parquet(folder / prefix / "predictions.parquet")
    assert scored["customer_id"].tolist() == rows["customer_id"].tolist()
    assert scored["prediction_id"].is_unique
    threshold = Registry(store, "churn").metadata(champion)["threshold"]
    assert (scored["label"] == (scored["probability"] >= threshold)).all()
    markdown = asyncio.run(_artifact_markdown("batch-scoring-churn"))
    assert markdown.startswith(f"## Batch scoring with model {champion}")

    # The same input with the same model again: the stored run is returned, not redone.
    again = batch_score(params)
    assert again == summary
    assert pd.read_parquet(folder / prefix / "predictions.parquet").equals(scored)


def test_a_csv_file_is_scored_to_a_local_file_with_rejected_rows_beside_it(trained, tmp_path):
    folder, _, champion = trained
    generated = _quality_traffic()
    datagen.traffic_rows(generated.frame).to_csv(tmp_path / "traffic.csv", index=False)
    out = tmp_path / "out" / "scores.parquet"

    summary = batch_score(
        BatchScoringParams(
            problem=CHURN,
            store=str(folder),
            input=str(tmp_path / "traffic.csv"),
            output=str(out),
            chunk_rows=1000,
        )
    )

    corrupted = len(generated.corruptions)
    assert corrupted > 0
    assert (summary.rows_in, summary.rows_rejected, summary.chunks) == (3000, corrupted, 3)
    assert summary.rows_scored == 3000 - corrupted == len(pd.read_parquet(out))
    assert summary.rejected_output == str(tmp_path / "out" / "scores.rejected.parquet")
    rejected = pd.read_parquet(summary.rejected_output)
    assert set(rejected["customer_id"]) == set(generated.corruptions["customer_id"])
    assert summary.ignored_columns == ()
    assert summary.model_version == champion
    # A local output leaves the store alone.
    input_id = scoring.file_id(tmp_path / "traffic.csv")
    assert not LocalStore(folder).list(f"scores/churn/{champion}/{input_id}")


def test_a_parquet_file_on_s3_is_scored_into_an_s3_store(
    trained, s3_bucket, moto_server, monkeypatch, tmp_path
):
    folder, _, champion = trained
    client, bucket = s3_bucket
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", moto_server)
    s3_store = open_store(f"s3://{bucket}/mlops", s3_client=client)
    local = Registry(LocalStore(folder), "churn")
    remote = Registry(s3_store, "churn")
    version = remote.register(
        {"model.ubj": local.read_file(champion, "model.ubj")},
        {key: local.metadata(champion)[key] for key in ("threshold", "features")},
    )
    remote.promote(version, actor="test", reason="copied from the local store")
    generated = _quality_traffic(rows=1500, seed=22)
    generated.frame.to_parquet(tmp_path / "day.parquet", index=False)
    client.upload_file(str(tmp_path / "day.parquet"), bucket, "raw/day.parquet")

    summary = batch_score(
        BatchScoringParams(
            problem=CHURN, store=f"s3://{bucket}/mlops", input=f"s3://{bucket}/raw/day.parquet"
        )
    )

    input_id = scoring.file_id(tmp_path / "day.parquet")
    prefix = f"scores/churn/{version}/{input_id}"
    assert s3_store.list("scores/") == [
        f"{prefix}/predictions.parquet",
        f"{prefix}/rejected.parquet",
        f"{prefix}/summary.json",
    ]
    assert summary.output == f"s3://{bucket}/mlops/{prefix}/predictions.parquet"
    assert summary.rows_rejected == len(generated.corruptions)
    assert summary.rows_scored + summary.rows_rejected == 1500
    assert summary.ignored_columns == ("churned", "label_time")
    where = scoring.scores_location("scores", "churn", version, input_id)
    assert scoring.stored_summary(s3_store, where) == summary


def test_a_missing_s3_input_is_named(s3_bucket, tmp_path):
    client, bucket = s3_bucket
    for uri in (f"s3://{bucket}/raw/absent.parquet", f"s3://{bucket}-absent/raw/day.parquet"):
        with pytest.raises(DataSourceError, match=f"{uri}: input object not found"):
            scoring.fetch_s3_object(uri, client, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_params_need_exactly_one_input_and_a_usable_output():
    with pytest.raises(ValidationError, match="exactly one of input"):
        BatchScoringParams(problem=CHURN)
    with pytest.raises(ValidationError, match="exactly one of input"):
        BatchScoringParams(problem=CHURN, input="a.csv", snapshot_id="abc")
    with pytest.raises(ValidationError, match="point the store at s3://"):
        BatchScoringParams(problem=CHURN, input="a.csv", output="s3://bucket/scores")


async def _artifact_markdown(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    return artifacts[0].data
