"""`mlops profile-captures`: the scheduled profile job over captured predictions."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli._common import PROBLEM_OPTION, STORE_OPTION, _fail, _user_errors, console

app = typer.Typer()


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
    it on a schedule, e.g. every few minutes (runs never overlap)."""
    from flows.capture_profiles import CaptureProfileParams, profile_captured, to_markdown

    try:
        params = CaptureProfileParams(problem=problem, window=window, hours=hours, store=store)
        done = profile_captured(params)
    except (*_user_errors(), ValueError) as exc:
        raise _fail(exc) from None
    console.print(to_markdown(done), highlight=False, soft_wrap=True)
