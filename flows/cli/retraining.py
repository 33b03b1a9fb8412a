"""`mlops retrain`: ask the retraining policy, and retrain when it (or the user) says so."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli._common import PROBLEM_OPTION, STORE_OPTION, _fail, _user_errors, console

app = typer.Typer()


@app.command("retrain")
def retrain(
    reason: str | None = typer.Option(
        None,
        help="Retrain now for this reason (skips the cooldown and the weekly cap, never the "
        "wait for clean data after a quality incident).",
    ),
    trials: int = typer.Option(20, min=0, help="Tuning trials (0: default parameters)."),
    concurrency: int = typer.Option(2, min=1, help="Trials at once."),
    seed: int = typer.Option(42, help="Seed for tuning and training."),
    deploy: str = typer.Option(
        "none", help="Redeploy a promoted model: none, or local (replaces the running service)."
    ),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Print the retraining policy's decision; when it says retrain, build the snapshot from
    labelled production rows, train a challenger, compare it with the champion on the
    held-out recent window (gate and shadow check) and promote it only if it wins."""
    from components.core.problem import load_problem
    from components.core.settings import Settings
    from components.core.store import store_from_settings
    from components.model.registry import Registry
    from components.monitoring.monitor import NoChampionError, require_champion
    from flows.retraining import RetrainingParams
    from flows.retraining import retrain as run

    if deploy not in ("none", "local"):
        raise _fail(ValueError(f"--deploy {deploy!r}: expected none or local"))
    try:
        spec = load_problem(problem)
        require_champion(Registry(store_from_settings(Settings(), store), spec.name), spec)
        params = RetrainingParams(
            problem=problem,
            reason=reason,
            trials=trials,
            concurrency=concurrency,
            seed=seed,
            deploy=deploy,
            store=store,
            actor="mlops retrain",
        )
        result = run(params)
    except (*_user_errors(), ValueError, NoChampionError) as exc:
        raise _fail(exc) from None
    _print(result)


def _print(result) -> None:
    console.print(f"policy: {result.decision}", highlight=False, soft_wrap=True)
    if not result.retrain:
        return
    verdicts = {
        "promoted": f"[green]{result.version} promoted[/]: champion was {result.champion_before}",
        "refused": f"[yellow]{result.version} not promoted[/]: {result.champion_before} stays",
        "superseded": f"[yellow]{result.version} not promoted[/]: the champion changed to "
        f"{result.champion_after} while it trained",
    }
    console.print(f"snapshot {result.snapshot_id}: {verdicts[result.outcome]}")
    for reason in result.gate_reasons:
        console.print(f"  {reason}", highlight=False)
    if result.deployed:
        console.print(f"deployed: {result.deployed.get('url', result.deployed)}", highlight=False)
