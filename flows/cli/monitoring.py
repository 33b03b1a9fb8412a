"""`mlops profile-captures` (the scheduled profile job over captured predictions) and
`mlops monitor` (each closed window judged against the champion)."""

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


@app.command("monitor")
def monitor(
    window: str | None = typer.Option(
        None, help="Monitor only the window of this day (YYYY-MM-DD)."
    ),
    since: str | None = typer.Option(
        None, help="Monitor the closed windows from this day (YYYY-MM-DD) on."
    ),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Profile what capture stored since the last run, then monitor every closed window not
    monitored yet (drift, data quality, rejections, scores, performance on labels)."""
    from components.core.problem import load_problem
    from components.core.settings import Settings
    from components.core.store import store_from_settings
    from components.model.registry import Registry
    from components.monitoring.monitor import require_champion
    from flows.monitoring import MonitorParams
    from flows.monitoring import monitor as run

    if window is not None and since is not None:
        raise _fail(ValueError("give --window or --since, not both"))
    try:
        params = MonitorParams(problem=problem, window=window, since=since, store=store)
        spec = load_problem(problem)
        require_champion(Registry(store_from_settings(Settings(), store), spec.name), spec)
        done = run(params)
    except (*_user_errors(), ValueError, LookupError) as exc:
        raise _fail(exc) from None
    if not done:
        console.print("no closed window left to monitor", highlight=False)
        return
    lines = [
        "| window | status | rows | refused | unlabelled | reasons |",
        "|---|---|---|---|---|---|",
    ]
    for item in done:
        r = item.report
        reasons = "; ".join(r.reasons) or "-"
        lines.append(
            f"| {r.window_start:%Y-%m-%d %H:%M} | {r.status} | {r.rows} | {r.rejected} | "
            f"{r.unlabelled} | {reasons} |"
        )
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
    console.print(f"report: {done[-1].page}", highlight=False, soft_wrap=True)
