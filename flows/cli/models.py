"""`mlops models`: the registry's versions, champion and history."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli._common import PROBLEM_OPTION, STORE_OPTION, _fail, _user_errors, console

app = typer.Typer(help="The model registry: versions, champion, history.", no_args_is_help=True)


def _registry(problem: Path, store: str | None):
    from components.core.problem import load_problem
    from components.core.settings import Settings
    from components.core.store import store_from_settings
    from components.model.registry import Registry

    spec = load_problem(problem)
    return Registry(store_from_settings(Settings(), store), spec.name)


@app.command("list")
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


@app.command("show")
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


@app.command("promote")
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


@app.command("rollback")
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


@app.command("history")
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
