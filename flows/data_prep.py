"""The data stage as a Prefect flow: ingest, validate, quarantine, snapshot, profile.

The flow only wires components; its tasks do not cache (see flows/tasks.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from components.core.problem import ProblemSpec, load_problem
from components.core.s3_store import make_s3_client
from components.core.settings import Settings
from components.core.store import Store, store_from_settings
from components.data import datagen, ingest, profiling, validation
from components.data.snapshot import SnapshotManifest, content_id, write_quarantine, write_snapshot
from flows.tasks import task


class GeneratedInput(BaseModel):
    """Generated churn data, used when no input file is given (the embedded default)."""

    rows: int = Field(100_000, ge=1, le=5_000_000)
    days: int = Field(90, ge=1)
    start: date = date(2026, 1, 1)
    seed: int = 42
    scenario: str = Field("none", pattern="^(none|covariate|concept|quality)$")
    drift_day: int = Field(60, ge=0)
    quality_fraction: float = Field(0.02, ge=0, le=1)

    def config(self, label_delay_days: int) -> datagen.GeneratorConfig:
        return datagen.GeneratorConfig(
            rows=self.rows,
            days=self.days,
            start=self.start,
            seed=self.seed,
            scenario=self.scenario,
            drift_day=self.drift_day,
            label_delay_days=label_delay_days,
            quality_fraction=self.quality_fraction,
        )

    def as_of(self) -> datetime:
        """Training data is exported at the end of the generated period."""
        return datetime.combine(self.start + timedelta(days=self.days), time(), tzinfo=UTC)

    def source(self) -> str:
        return (
            f"generated:churn?rows={self.rows}&days={self.days}&start={self.start}"
            f"&seed={self.seed}&scenario={self.scenario}&drift_day={self.drift_day}"
            f"&quality_fraction={self.quality_fraction}"
        )


class DataPrepParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    input: str | None = Field(None, description="CSV/Parquet path or s3:// URI; None: generated")
    generated: GeneratedInput = GeneratedInput()
    store: str | None = Field(None, description="Overrides MLOPS_STORE for this run")


@task
def load_spec(path: Path) -> ProblemSpec:
    return load_problem(path)


@task
def load_input(params: DataPrepParams, spec: ProblemSpec, settings: Settings) -> pd.DataFrame:
    if params.input is None:
        generated = datagen.generate(params.generated.config(spec.label_delay_days))
        rows = datagen.training_rows(generated.frame, params.generated.as_of())
        if rows.empty:
            raise validation.EmptyDataError(
                f"{params.generated.source()}: no label has arrived by the end of the "
                f"{params.generated.days} generated days (labels take {spec.label_delay_days} "
                "days); generate more days"
            )
        return rows
    client = None
    if params.input.startswith("s3://"):
        client = make_s3_client(
            settings.s3_endpoint_url, settings.aws_region, settings.s3_max_attempts
        )
    return ingest.read_table(params.input, s3_client=client)


@task
def validate(frame: pd.DataFrame, spec: ProblemSpec, source: str) -> validation.ValidationResult:
    result = validation.validate_frame(frame, spec, source=source)
    get_run_logger().info(
        "%s: %d rows in, %d valid, %d quarantined",
        source,
        result.report.rows_in,
        result.report.rows_valid,
        result.report.rows_quarantined,
    )
    return result


@task
def store_quarantine(
    store: Store, spec: ProblemSpec, frame: pd.DataFrame, result: validation.ValidationResult
) -> tuple[str, str | None]:
    input_id = content_id(frame, spec.schema_version)
    return write_quarantine(store, spec, input_id, result.quarantined, result.report.to_dict())


@task
def publish_report(report: validation.ValidationReport) -> None:
    create_markdown_artifact(
        markdown=report.to_markdown(),
        key="data-validation",
        description=f"Validation of {report.source}",
    )


@task
def enforce_quarantine_limit(report: validation.ValidationReport, spec: ProblemSpec) -> None:
    validation.check_quarantine_threshold(report, spec)


@task
def profile(valid: pd.DataFrame, spec: ProblemSpec) -> bytes:
    # Features and target only: ids are unique by design and event time always moves on.
    return profiling.profile_frame(valid[list(spec.features)])


@task
def snapshot(
    store: Store,
    spec: ProblemSpec,
    result: validation.ValidationResult,
    reference_profile: bytes,
    quarantine_keys: tuple[str, str | None],
) -> SnapshotManifest:
    report_key, rows_key = quarantine_keys
    manifest = write_snapshot(
        store,
        spec,
        result.valid,
        source=result.report.source,
        profile=reference_profile,
        quarantined_rows=result.report.rows_quarantined,
        quarantine_key=rows_key,
        validation_key=report_key,
    )
    get_run_logger().info(
        "snapshot %s: %d rows at %s",
        manifest.snapshot_id,
        manifest.rows,
        store.uri(manifest.data_key),
    )
    return manifest


@flow(name="data-prep")
def data_prep(params: DataPrepParams | None = None) -> SnapshotManifest:
    """Validated, content-addressed snapshot of the input, with its reference profile."""
    params = params or DataPrepParams()
    settings = Settings()
    store = store_from_settings(settings, params.store)
    spec = load_spec(params.problem)
    source = params.input or params.generated.source()
    frame = load_input(params, spec, settings)
    result = validate(frame, spec, source)
    quarantine_keys = store_quarantine(store, spec, frame, result)
    publish_report(result.report)
    enforce_quarantine_limit(result.report, spec)
    reference = profile(result.valid, spec)
    return snapshot(store, spec, result, reference, quarantine_keys)
