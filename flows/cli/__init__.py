"""The `mlops` command line: one module per command group, assembled here.

Each command parses options, calls one flow or component, and turns a user's mistake into a
one-paragraph message and exit code 2 (never a traceback). Heavy imports (Prefect, pandas)
happen inside the commands so `mlops --help` stays fast.
"""

from __future__ import annotations

import typer

from flows.cli import (
    data,
    demo,
    models,
    monitoring,
    orchestration,
    retraining,
    serving,
    training,
)

app = typer.Typer(
    help="An MLOps loop on a laptop: data, training, gate, serving, monitoring, retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(orchestration.app, name="prefect")
for group in (training, serving, monitoring, retraining, demo):
    app.add_typer(group.app)
