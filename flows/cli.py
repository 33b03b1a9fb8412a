"""The `mlops` command line. Each command parses options, calls one flow or component, and
turns a user's mistake into a one-paragraph message and exit code 2 (never a traceback).

Heavy imports (Prefect, pandas) happen inside the commands so `mlops --help` stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    help="An MLOps loop on a laptop: data, training, gate, serving, monitoring, retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Generate and prepare data (lifecycle stage 2).", no_args_is_help=True)
app.add_typer(data_app, name="data")
models_app = typer.Typer(
    help="The model registry: versions, champion, history.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

console = Console()
errors = Console(stderr=True)


class Scenario(StrEnum):
    none = "none"
    covariate = "covariate"
    concept = "concept"
    quality = "quality"


class Kind(StrEnum):
    training = "training"
    traffic = "traffic"
    labels = "labels"
    full = "full"


SCENARIO_HELP = (
    "none: no drift. covariate: a price rise shifts charges and the plan mix, P(churn|x) "
    "unchanged. concept: same features, long-tenure two-year customers now churn. quality: "
    "nulls, out-of-range values, a unit change and unseen categories in a share of rows."
)


def _user_errors() -> tuple[type[Exception], ...]:
    from components.core.problem import ProblemSpecError
    from components.core.store import StoreError
    from components.data.ingest import DataSourceError
    from components.data.snapshot import NoSnapshotError
    from components.data.validation import (
        EmptyDataError,
        QuarantineThresholdError,
        SchemaMismatchError,
    )
    from components.model.registry import RegistryError
    from components.model.training import SplitError

    return (
        ProblemSpecError,
        DataSourceError,
        SchemaMismatchError,
        EmptyDataError,
        QuarantineThresholdError,
        StoreError,
        RegistryError,
        SplitError,
        NoSnapshotError,
    )


def _fail(exc: Exception) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@data_app.command("generate")
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


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


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


@data_app.command("prep")
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


@app.command()
def train(
    problem: Path = typer.Option(Path("problems/churn.yaml"), help="Problem definition file."),
    snapshot: str | None = typer.Option(None, help="Snapshot id (default: the newest)."),
    trials: int = typer.Option(20, min=0, help="Tuning trials (0: default parameters)."),
    timeout: float | None = typer.Option(
        None, min=1, help="Stop starting trials after this many seconds."
    ),
    concurrency: int = typer.Option(2, min=1, help="Trials at once."),
    threads: int = typer.Option(0, min=0, help="XGBoost threads for the final model (0: all)."),
    cv_folds: int = typer.Option(5, min=0, help="Cross-validation folds (0: skip)."),
    seed: int = typer.Option(42, help="Seed for tuning and training."),
    promote: bool = typer.Option(True, help="Promote to champion when the gate passes."),
    store: str | None = typer.Option(None, help="Store URL (default: MLOPS_STORE)."),
) -> None:
    """Tune, train, evaluate and gate a model on a snapshot; register it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from components.core.problem import load_problem
    from flows.progress import listening
    from flows.training import TrainingParams
    from flows.training import train as train_flow

    try:
        load_problem(problem)
    except _user_errors() as exc:
        raise _fail(exc) from None
    params = TrainingParams(
        problem=problem,
        snapshot_id=snapshot,
        trials=trials,
        timeout_s=timeout,
        concurrency=concurrency,
        threads=threads,
        cv_folds=cv_folds,
        seed=seed,
        promote=promote,
        store=store,
        actor="mlops train",
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
    )
    with Progress(*columns, console=errors, transient=True) as bar:
        job = bar.add_task("tuning", total=max(trials, 1), best="-")

        def show(stage: str, done: int, total: int, best: float | None) -> None:
            bar.update(
                job, completed=done, total=total, best=f"{best:.4f}" if best is not None else "-"
            )

        try:
            with listening(show):
                result = train_flow(params)
        except _user_errors() as exc:
            raise _fail(exc) from None
    _print_training(result)


def _print_training(result) -> None:
    metrics = ", ".join(
        f"{k} {v:.4f}"
        for k, v in result.metrics.items()
        if k in ("roc_auc", "pr_auc", "log_loss", "rmse", "r2")
    )
    colour = "green" if result.gate_passed else "yellow"
    verdict = (
        "promoted to champion"
        if result.promoted
        else "passed the gate (challenger)"
        if result.gate_passed
        else "rejected by the gate"
    )
    console.print(f"[{colour}]{result.version}[/] on snapshot {result.snapshot_id}: {verdict}")
    console.print(f"test: {metrics}")
    for reason in result.gate_reasons:
        console.print(f"  {reason}", highlight=False)


def _registry(problem: Path, store: str | None):
    from components.core.problem import load_problem
    from components.core.settings import Settings
    from components.core.store import store_from_settings
    from components.model.registry import Registry

    spec = load_problem(problem)
    return Registry(store_from_settings(Settings(), store), spec.name)


PROBLEM_OPTION = typer.Option(Path("problems/churn.yaml"), help="Problem definition file.")
STORE_OPTION = typer.Option(None, help="Store URL (default: MLOPS_STORE).")


@models_app.command("list")
def models_list(problem: Path = PROBLEM_OPTION, store: str | None = STORE_OPTION) -> None:
    """Every registered version with its status, aliases and primary metric."""
    from rich.table import Table

    try:
        registry = _registry(problem, store)
        versions = registry.versions()
        table = Table("version", "status", "aliases", "created", "snapshot", "primary metric")
        for info in versions:
            meta = registry.metadata(info.version) if info.status != "pending" else {}
            primary = _primary(meta)
            table.add_row(
                info.version,
                info.status,
                ", ".join(info.aliases),
                info.created_at,
                meta.get("snapshot_id", ""),
                primary,
            )
    except _user_errors() as exc:
        raise _fail(exc) from None
    if not versions:
        console.print("no model registered yet: run `mlops train`")
        return
    console.print(table)


def _primary(meta: dict) -> str:
    metrics = meta.get("metrics") or {}
    for name in ("roc_auc", "rmse"):
        if name in metrics:
            return f"{name} {metrics[name]:.4f}"
    return ""


@models_app.command("show")
def models_show(
    version: str = typer.Argument("champion", help="Version id, or champion / challenger."),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """A version's metadata (metrics, parameters, gate) after verifying its files."""
    import json

    try:
        registry = _registry(problem, store)
        resolved = registry.alias(version) if version in ("champion", "challenger") else version
        if resolved is None:
            raise _fail(ValueError(f"no {version} yet: run `mlops train`"))
        registry.verify(resolved)
        meta = registry.metadata(resolved)
    except _user_errors() as exc:
        raise _fail(exc) from None
    shown = {
        k: meta[k]
        for k in (
            "version",
            "created_at",
            "snapshot_id",
            "metrics",
            "baseline",
            "cv",
            "threshold",
            "best_iteration",
            "params",
            "gate",
            "code_version",
        )
        if k in meta
    }
    console.print_json(json.dumps(shown, default=str))
    console.print(f"files verified: {len(meta.get('files', {}))} (sha256)")


@models_app.command("promote")
def models_promote(
    version: str = typer.Argument(..., help="Version id to make champion."),
    reason: str = typer.Option("manual promotion", help="Why (kept in the history)."),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Make a registered version the champion (rejected versions are refused)."""
    try:
        registry = _registry(problem, store)
        registry.verify(version)
        entry = registry.promote(version, actor="mlops models promote", reason=reason)
    except _user_errors() as exc:
        raise _fail(exc) from None
    console.print(f"champion: {entry.from_version} -> {entry.to_version}")


@models_app.command("rollback")
def models_rollback(
    to: str | None = typer.Option(
        None, help="Version to roll back to (default: the previous champion)."
    ),
    reason: str = typer.Option("manual rollback", help="Why (kept in the history)."),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Move the champion back to the previous champion (or to --to)."""
    try:
        registry = _registry(problem, store)
        entry = registry.rollback(actor="mlops models rollback", reason=reason, to=to)
    except _user_errors() as exc:
        raise _fail(exc) from None
    console.print(f"champion: {entry.from_version} -> {entry.to_version}")


@models_app.command("history")
def models_history(problem: Path = PROBLEM_OPTION, store: str | None = STORE_OPTION) -> None:
    """Every change of an alias: when, who, from, to and why."""
    from rich.table import Table

    try:
        entries = _registry(problem, store).history()
    except _user_errors() as exc:
        raise _fail(exc) from None
    table = Table("#", "alias", "from", "to", "at", "actor", "reason")
    for e in entries:
        table.add_row(
            str(e.seq), e.alias, e.from_version or "-", e.to_version or "-", e.at, e.actor, e.reason
        )
    console.print(table)


@app.command()
def package(
    version: str | None = typer.Option(None, help="Registry version (default: the champion)."),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Build the bento, smoke-test it on 127.0.0.1, then upload it to the store.

    The bento's generated Dockerfile is printed; with a Docker engine,
    `bentoml containerize <bento tag>` builds the image.
    """
    from flows.deployment import PackageParams
    from flows.deployment import package as package_flow

    try:
        result = package_flow(PackageParams(problem=problem, version=version, store=store))
    except (*_user_errors(), *_ship_errors()) as exc:
        raise _fail(exc) from None
    console.print(f"[green]{result.bento_tag}[/] ({result.model_tag}) stored at {result.bento_key}")
    for line in result.smoke:
        console.print(f"  smoke test: {line}")
    console.print(f"Dockerfile: {result.dockerfile}")
    console.print(f"container (needs Docker): bentoml containerize {result.bento_tag}")


def _ship_errors() -> tuple[type[Exception], ...]:
    from bentos.packaging import SmokeTestError
    from components.deploy.aws import DeployError

    return (SmokeTestError, DeployError, ValueError)


@app.command()
def deploy(
    target: str = typer.Option("local", help="local | lambda | sagemaker"),
    action: str = typer.Option("start", help="local only: start | status | stop"),
    version: str | None = typer.Option(None, help="Registry version (default: the champion)."),
    port: int | None = typer.Option(None, help="local: port (default: a free one)."),
    workers: int = typer.Option(2, min=1, help="local: BentoML workers."),
    image_uri: str | None = typer.Option(None, help="lambda/sagemaker: the image to run."),
    role_arn: str | None = typer.Option(None, help="lambda/sagemaker: execution role ARN."),
    function_name: str | None = typer.Option(None, help="lambda: function name."),
    repository: str | None = typer.Option(None, help="lambda: ECR repository name."),
    canary_weight: float = typer.Option(0.1, help="lambda: share of traffic to the canary."),
    max_error_rate: float = typer.Option(0.01, help="lambda: error rate that rolls back."),
    bake_seconds: float = typer.Option(600, help="lambda: how long the canary runs."),
    endpoint_name: str | None = typer.Option(None, help="sagemaker: endpoint name."),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Serve the champion locally, or roll it out to AWS Lambda or SageMaker Serverless."""
    import json

    from flows.deployment import DeployParams
    from flows.deployment import deploy as deploy_flow

    try:
        params = DeployParams(
            problem=problem,
            target=target,
            action=action,
            version=version,
            port=port,
            workers=workers,
            image_uri=image_uri,
            role_arn=role_arn,
            function_name=function_name,
            repository=repository,
            canary_weight=canary_weight,
            max_error_rate=max_error_rate,
            bake_seconds=bake_seconds,
            endpoint_name=endpoint_name,
            store=store,
        )
        result = deploy_flow(params)
    except (*_user_errors(), *_ship_errors()) as exc:
        raise _fail(exc) from None
    console.print_json(json.dumps(result, default=str))


@app.command()
def score(
    input: str | None = typer.Option(
        None, "--input", "-i", help="CSV/Parquet file or s3://bucket/key to score."
    ),
    snapshot: str | None = typer.Option(None, help="Score a snapshot from the store instead."),
    version: str | None = typer.Option(None, help="Registry version (default: the champion)."),
    output: str = typer.Option(
        "scores", help="A local .parquet file, or a key prefix in the store."
    ),
    chunk_rows: int = typer.Option(100_000, min=1, help="Rows per chunk (bounds memory)."),
    flag_unknown_categories: bool = typer.Option(
        False, help="Score unknown categories as missing and flag them, instead of rejecting."
    ),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Batch-score a file or snapshot in chunks, with the service's model and validation."""
    from flows.batch_scoring import BatchScoringParams, batch_score

    try:
        summary = batch_score(
            BatchScoringParams(
                problem=problem,
                input=input,
                snapshot_id=snapshot,
                version=version,
                output=output,
                chunk_rows=chunk_rows,
                flag_unknown_categories=flag_unknown_categories,
                store=store,
            )
        )
    except (*_user_errors(), ValueError) as exc:
        raise _fail(exc) from None
    console.print(summary.to_markdown(), highlight=False)


@app.command("profile-captures")
def profile_captures(
    window: str = typer.Option("1h", help="The service's capture window."),
    hours: float = typer.Option(
        48.0, min=0, help="Only windows that end within the last HOURS hours (0: all)."
    ),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Profile captured predictions not profiled yet (whylogs, one profile per window); run
    it on a schedule when the service captures without profiles (runs never overlap)."""
    from flows.capture_profiles import CaptureProfileParams, profile_captured, to_markdown

    try:
        params = CaptureProfileParams(problem=problem, window=window, hours=hours, store=store)
        done = profile_captured(params)
    except (*_user_errors(), ValueError) as exc:
        raise _fail(exc) from None
    console.print(to_markdown(done), highlight=False, soft_wrap=True)


@app.command()
def demo(
    rows: int = typer.Option(100_000, min=1_000, help="Generated rows."),
    trials: int = typer.Option(10, min=0, help="Tuning trials."),
    store: str | None = typer.Option(None, help="Store URL (default ./.mlops/store)."),
) -> None:
    """Run the loop on generated data with embedded defaults (so far: data, training, gate,
    registry, and a smoke-tested bento)."""
    problem = Path("problems/churn.yaml")
    console.rule("stage 2: data preparation on generated churn data")
    data_prep(
        problem=problem,
        input=None,
        store=store,
        rows=rows,
        days=90,
        seed=42,
        scenario=Scenario.none,
        drift_day=60,
    )
    console.rule("stages 3-4: tuning, training, evaluation, the gate, the registry")
    train(
        problem=problem,
        snapshot=None,
        trials=trials,
        timeout=None,
        concurrency=2,
        threads=0,
        cv_folds=5,
        seed=42,
        promote=True,
        store=store,
    )
    console.rule("the registry")
    models_list(problem=problem, store=store)
    console.rule("stage 5: the champion as a bento, smoke-tested under bentoml serve")
    package(version=None, problem=problem, store=store)
    console.print("serve it: mlops deploy --target local   (stop: --action stop)")
