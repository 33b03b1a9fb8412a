"""`mlops data`: generate churn data and prepare (validate, quarantine, snapshot) any table."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import typer

from flows.cli._common import SCENARIO_HELP, Kind, Scenario, _as_utc, _fail, _user_errors, console

app = typer.Typer(help="Generate and prepare data (lifecycle stage 2).", no_args_is_help=True)


@app.command("generate")
def data_generate(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output .csv or .parquet file, or a folder with --by-day."
    ),
    rows: int = typer.Option(100_000, min=1, max=5_000_000, help="Rows to generate."),
    days: int = typer.Option(90, min=1, help="Daily batches the rows are spread over."),
    start: datetime = typer.Option("2026-01-01", formats=["%Y-%m-%d"], help="First day."),
    seed: int = typer.Option(42, help="Random seed; the same seed gives the same data."),
    scenario: Scenario = typer.Option(Scenario.none, help=SCENARIO_HELP),
    drift_day: int = typer.Option(60, min=0, help="Day index from which the scenario applies."),
    label_delay: int = typer.Option(30, min=0, help="Days until a label arrives."),
    quality_fraction: float = typer.Option(
        0.02, min=0, max=1, help="Share of post-drift rows corrupted (quality)."
    ),
    kind: Kind = typer.Option(
        Kind.training,
        help="training: rows whose label has arrived by --as-of. traffic: features only "
        "(what the service sees). labels: id, label, label time. full: everything.",
    ),
    as_of: datetime | None = typer.Option(
        None,
        formats=["%Y-%m-%d"],
        help="Export date for training/labels (default: the end of the generated period).",
    ),
    by_day: bool = typer.Option(False, help="Write one file per day into the --out folder."),
) -> None:
    """Write generated churn data (daily batches, delayed labels, drift scenarios)."""
    from components.data import datagen

    suffix = ".parquet" if by_day else out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise _fail(ValueError(f"--out {out}: use a .csv or .parquet file name"))
    config = datagen.GeneratorConfig(
        rows=rows,
        days=days,
        start=start.date(),
        seed=seed,
        scenario=scenario.value,
        drift_day=drift_day,
        label_delay_days=label_delay,
        quality_fraction=quality_fraction,
    )
    frame = datagen.generate(config).frame
    cutoff = (
        _as_utc(as_of)
        if as_of
        else datetime.combine(config.start + timedelta(days=days), time(), tzinfo=UTC)
    )
    table = _select(frame, kind, cutoff)
    if by_day:
        out.mkdir(parents=True, exist_ok=True)
        for day, batch in datagen.daily_batches(table):
            _write(batch, out / f"{day.isoformat()}.parquet")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write(table, out)
    console.print(f"wrote {len(table):,} {kind.value} rows ({scenario.value} scenario) to {out}")
    if kind in (Kind.training, Kind.labels) and len(table) < len(frame):
        console.print(f"{len(frame) - len(table):,} rows have no label yet at {cutoff:%Y-%m-%d}")


def _select(frame, kind: Kind, cutoff: datetime):
    from components.data import datagen

    if kind is Kind.training:
        return datagen.training_rows(frame, cutoff)
    if kind is Kind.traffic:
        return datagen.traffic_rows(frame)
    if kind is Kind.labels:
        return datagen.label_rows(frame, cutoff)
    return frame


def _write(frame, path: Path) -> None:
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


@app.command("prep")
def data_prep(
    problem: Path = typer.Option(Path("problems/churn.yaml"), help="Problem definition file."),
    input: str | None = typer.Option(
        None,
        "--input",
        "-i",
        help="CSV or Parquet: local path or s3://bucket/key. Default: generated churn data.",
    ),
    store: str | None = typer.Option(
        None, help="Store URL (default: MLOPS_STORE or ./.mlops/store)."
    ),
    rows: int = typer.Option(100_000, min=1, max=5_000_000, help="Generated rows (no --input)."),
    days: int = typer.Option(90, min=1, help="Generated days (no --input)."),
    seed: int = typer.Option(42, help="Generator seed (no --input)."),
    scenario: Scenario = typer.Option(Scenario.none, help=SCENARIO_HELP),
    drift_day: int = typer.Option(60, min=0, help="Day the scenario starts (no --input)."),
) -> None:
    """Validate data against the problem, quarantine bad rows, and write a snapshot."""
    from components.core.problem import load_problem
    from components.data.ingest import check_source
    from flows.data_prep import DataPrepParams, GeneratedInput
    from flows.data_prep import data_prep as data_prep_flow

    try:
        # Fail before starting Prefect on what can be checked without it.
        load_problem(problem)
        if input is not None:
            check_source(input)
    except _user_errors() as exc:
        raise _fail(exc) from None
    params = DataPrepParams(
        problem=problem,
        input=input,
        store=store,
        generated=GeneratedInput(
            rows=rows, days=days, seed=seed, scenario=scenario.value, drift_day=drift_day
        ),
    )
    try:
        manifest = data_prep_flow(params)
    except _user_errors() as exc:
        raise _fail(exc) from None
    console.print(
        f"[green]snapshot {manifest.snapshot_id}[/]: {manifest.rows:,} rows "
        f"({manifest.quarantined_rows:,} quarantined) from {manifest.source}"
    )
