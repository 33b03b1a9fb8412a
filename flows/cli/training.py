"""`mlops train`: tune, train, evaluate, gate and register a model."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli._common import _fail, _user_errors, console, errors

app = typer.Typer()


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
