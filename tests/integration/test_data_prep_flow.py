"""The data-prep flow, run for real under a temporary Prefect server, on a local store and
on moto's S3 server."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from components.core.store import LocalStore, open_store
from components.data import datagen
from components.data.snapshot import latest_snapshot_id, read_snapshot
from components.data.validation import EmptyDataError, QuarantineThresholdError
from flows.data_prep import DataPrepParams, GeneratedInput, data_prep

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
pytestmark = pytest.mark.usefixtures("prefect_server")


def _generated(**changes) -> GeneratedInput:
    return GeneratedInput(**{"rows": 3000, "days": 60, "drift_day": 0, **changes})


def _params(store: str, **changes) -> DataPrepParams:
    return DataPrepParams(problem=CHURN, store=store, **changes)


def _write_quality_csv(path: Path, fraction: float) -> pd.DataFrame:
    config = datagen.GeneratorConfig(
        rows=3000,
        days=60,
        start=date(2026, 1, 1),
        seed=3,
        scenario="quality",
        drift_day=0,
        quality_fraction=fraction,
    )
    generated = datagen.generate(config)
    generated.frame.drop(columns=["label_time"]).to_csv(path, index=False)
    return generated.corruptions


def test_generated_data_becomes_a_snapshot_with_profile_and_artifact(tmp_path):
    store_dir = tmp_path / "store"
    manifest = data_prep(_params(str(store_dir), generated=_generated()))
    store = LocalStore(store_dir)
    assert latest_snapshot_id(store, "churn") == manifest.snapshot_id
    assert manifest.quarantined_rows == 0
    assert store.exists(manifest.profile_key)
    assert store.exists(manifest.validation_key)
    rows = read_snapshot(store, "churn", manifest.snapshot_id)
    assert len(rows) == manifest.rows > 0
    assert asyncio.run(_artifact_markdown("data-validation")).startswith("## Validation of")


def test_same_input_gives_the_same_snapshot(tmp_path):
    params = _params(str(tmp_path / "store"), generated=_generated(seed=11))
    first = data_prep(params)
    second = data_prep(params)
    assert first.snapshot_id == second.snapshot_id
    assert len(LocalStore(tmp_path / "store").list("snapshots/churn/" + first.snapshot_id)) == 3


def test_bad_rows_from_a_csv_are_quarantined_with_reasons(tmp_path):
    corruptions = _write_quality_csv(tmp_path / "in.csv", fraction=0.03)
    manifest = data_prep(_params(str(tmp_path / "store"), input=str(tmp_path / "in.csv")))
    quarantined = pd.read_parquet(tmp_path / "store" / manifest.quarantine_key)
    assert sorted(quarantined["customer_id"]) == sorted(corruptions["customer_id"])
    assert quarantined["_reasons"].str.len().min() > 0
    assert manifest.rows + manifest.quarantined_rows == 3000


def test_too_many_bad_rows_stop_the_flow_before_any_snapshot(tmp_path):
    _write_quality_csv(tmp_path / "bad.csv", fraction=0.2)
    store = LocalStore(tmp_path / "store")
    with pytest.raises(QuarantineThresholdError, match="above the problem's limit"):
        data_prep(_params(str(tmp_path / "store"), input=str(tmp_path / "bad.csv")))
    assert store.list("snapshots") == []
    (rows_key,) = [k for k in store.list("quarantine") if k.endswith("rows.parquet")]
    assert len(pd.read_parquet(tmp_path / "store" / rows_key)) == 600


def test_generated_period_without_labels_is_a_clear_error(tmp_path):
    with pytest.raises(EmptyDataError, match="no label has arrived by the end of the 20"):
        data_prep(_params(str(tmp_path / "store"), generated=_generated(days=20)))
    assert not (tmp_path / "store").exists()


def test_s3_input_and_s3_store(s3_bucket, moto_server, monkeypatch, tmp_path):
    client, bucket = s3_bucket
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", moto_server)
    frame = datagen.generate(datagen.GeneratorConfig(rows=2000, days=60, seed=5)).frame
    frame.drop(columns=["label_time"]).to_parquet(tmp_path / "in.parquet", index=False)
    client.upload_file(str(tmp_path / "in.parquet"), bucket, "raw/in.parquet")
    manifest = data_prep(_params(f"s3://{bucket}/mlops", input=f"s3://{bucket}/raw/in.parquet"))
    store = open_store(f"s3://{bucket}/mlops", s3_client=client)
    assert latest_snapshot_id(store, "churn") == manifest.snapshot_id
    assert manifest.rows == 2000
    assert len(read_snapshot(store, "churn", manifest.snapshot_id)) == 2000


async def _artifact_markdown(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    return artifacts[0].data
