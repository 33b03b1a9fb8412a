"""What every command group shares: consoles, common options, and turning a user's mistake
into one `error:` paragraph with exit code 2."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

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


PROBLEM_OPTION = typer.Option(Path("problems/churn.yaml"), help="Problem definition file.")


STORE_OPTION = typer.Option(None, help="Store URL (default: MLOPS_STORE).")


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


def _ship_errors() -> tuple[type[Exception], ...]:
    from bentos.packaging import SmokeTestError
    from components.deploy.base import DeployError

    return (SmokeTestError, DeployError, ValueError)


def _fail(exc: Exception) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
