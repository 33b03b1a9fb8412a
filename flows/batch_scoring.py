"""Batch scoring as a Prefect flow (stage 5): a file or a snapshot scored with one model
version, in chunks, through the online service's validation.

The model is read through the registry (its checksum verified), the input is fetched to a
temp folder (an s3:// input through a store on its bucket, a snapshot verified against its
manifest) and `components.serving.batch.score_table` writes the predictions and rejected rows.
They are kept at a local `*.parquet` path, or stored under `keys.scores`:

    <output>/<problem>/<version>/<input_id>/{predictions,rejected}.parquet, summary.json

where `input_id` is the snapshot id, or the first 16 hex digits of the input file's
sha256. `summary.json` is written last; a run that finds it returns it instead of scoring
the same input with the same model again (each run would mint new prediction ids).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field, model_validator

from components.core.problem import ProblemSpec, load_problem
from components.core.s3_store import make_s3_client
from components.core.settings import Settings
from components.core.store import Store, store_from_settings, validate_key
from components.data.ingest import check_source
from components.data.snapshot import download_snapshot
from components.model.registry import Registry
from components.serving import batch as scoring
from components.serving.contract import Predictor, Validator
from flows.tasks import retry_on, task


class BatchScoringParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    input: str | None = Field(None, description="CSV/Parquet file to score: a path or s3:// URI")
    snapshot_id: str | None = Field(None, description="Score this snapshot from the store")
    version: str | None = Field(None, description="Model version; None: the champion")
    output: str = Field(
        "scores", description="A local *.parquet file, or a key prefix in the store"
    )
    chunk_rows: int = Field(100_000, ge=1, description="Rows read, validated and scored at once")
    flag_unknown_categories: bool = Field(
        False, description="Score unknown categories as missing and flag them, not reject"
    )
    store: str | None = Field(None, description="Overrides MLOPS_STORE for this run")

    @model_validator(mode="after")
    def _check(self) -> BatchScoringParams:
        if (self.input is None) == (self.snapshot_id is None):
            raise ValueError("give exactly one of input (a file) and snapshot_id")
        if self.output.startswith("s3://"):
            raise ValueError(
                f"output {self.output!r}: to write scores to S3, point the store at "
                "s3://bucket/prefix and give a key prefix as output (e.g. 'scores')"
            )
        if not scoring.is_local_output(self.output):
            validate_key(self.output.strip("/"))
        return self


@dataclass(frozen=True)
class ScoringInput:
    path: Path  # a local file
    input_id: str  # the snapshot id, or the file's content id
    source: str  # where it came from, for messages


@task
def load_spec(path: Path) -> ProblemSpec:
    return load_problem(path)


@task
def load_predictor(store: Store, spec: ProblemSpec, version: str | None) -> Predictor:
    predictor = scoring.load_predictor(Registry(store, spec.name), spec, version)
    get_run_logger().info("scoring with %s %s", spec.name, predictor.version)
    return predictor


# Only fetches (to a temp folder, so a second try starts clean). botocore retries each call;
# this outlasts a longer network outage. Missing objects and refused access fail at once.
@task(retries=2, retry_delay_seconds=30, retry_condition_fn=retry_on(BotoCoreError))
def fetch_input(
    store: Store, spec: ProblemSpec, params: BatchScoringParams, settings: Settings, folder: Path
) -> ScoringInput:
    if params.snapshot_id is not None:
        target = folder / f"snapshot-{params.snapshot_id}.parquet"
        path = download_snapshot(store, spec.name, params.snapshot_id, target)
        return ScoringInput(path, params.snapshot_id, f"snapshot {params.snapshot_id}")
    if params.input.startswith("s3://"):
        client = make_s3_client(
            settings.s3_endpoint_url, settings.aws_region, settings.s3_max_attempts
        )
        path = scoring.fetch_s3_object(params.input, client, folder)
    else:
        path = Path(params.input).expanduser()
        check_source(str(path))
    return ScoringInput(path, scoring.file_id(path), params.input)


@task
def find_stored(
    store: Store, where: scoring.ScoresLocation | None
) -> scoring.ScoringSummary | None:
    if where is None:
        return None
    found = scoring.stored_summary(store, where)
    if found is not None:
        get_run_logger().info("already scored: %s; returning that run's summary", found.output)
    return found


@task
def score(
    scoring_input: ScoringInput,
    predictor: Predictor,
    params: BatchScoringParams,
    folder: Path,
) -> scoring.ScoringSummary:
    validator = Validator(predictor.spec, flag_unknown=params.flag_unknown_categories)
    local = scoring.is_local_output(params.output)
    out = Path(params.output).expanduser() if local else folder / scoring.PREDICTIONS_FILE
    rejected = None if local else folder / scoring.REJECTED_FILE
    summary = scoring.score_table(
        scoring_input.path,
        predictor,
        validator,
        out,
        chunk_rows=params.chunk_rows,
        rejected_path=rejected,
    )
    get_run_logger().info(
        "%s: %d rows in, %d scored, %d rejected",
        scoring_input.source,
        summary.rows_in,
        summary.rows_scored,
        summary.rows_rejected,
    )
    return summary


@task
def store_scores(
    store: Store, where: scoring.ScoresLocation | None, summary: scoring.ScoringSummary
) -> scoring.ScoringSummary:
    if where is None:
        return summary
    stored = scoring.store_scores(store, where, summary)
    get_run_logger().info("predictions stored at %s", stored.output)
    return stored


@task
def publish(spec: ProblemSpec, summary: scoring.ScoringSummary) -> None:
    create_markdown_artifact(
        markdown=summary.to_markdown(),
        key=f"batch-scoring-{spec.name.replace('_', '-')}",
        description=f"Batch scoring of {spec.name} with {summary.model_version}",
    )


@flow(name="batch-scoring")
def batch_score(params: BatchScoringParams) -> scoring.ScoringSummary:
    """Predictions for every valid row of a file or snapshot; rejected rows with reasons."""
    settings = Settings()
    store = store_from_settings(settings, params.store)
    spec = load_spec(params.problem)
    predictor = load_predictor(store, spec, params.version)
    with tempfile.TemporaryDirectory(prefix="mlops-scoring-") as work:
        scoring_input = fetch_input(store, spec, params, settings, Path(work))
        where = scoring.scores_location(
            params.output, spec.name, predictor.version, scoring_input.input_id
        )
        summary = find_stored(store, where)
        if summary is None:
            summary = score(scoring_input, predictor, params, Path(work))
            summary = store_scores(store, where, summary)
    publish(spec, summary)
    return summary
