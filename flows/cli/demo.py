"""`mlops demo`: the loop on generated data with embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli._common import Scenario, console
from flows.cli.data import data_prep
from flows.cli.models import models_list
from flows.cli.serving import package
from flows.cli.training import train

app = typer.Typer()


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
