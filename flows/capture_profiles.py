"""Profiles of captured predictions as a Prefect flow (stage 6's input): the whylogs step of
prediction capture, run as a scheduled job, never in the serving workers.

The service captures rows to Parquet chunks and never profiles them, which keeps whylogs'
CPU off the request path. This flow profiles every chunk no earlier run profiled
(`components.monitoring.profile_job.profile_captures`), one profile per window, stored
where monitoring reads window profiles. Run it every few minutes: each run is incremental,
and a run that dies is redone by the next without counting rows twice. Runs of one problem
never overlap: each holds a lease in the store, and a run that finds it held fails at once
with ProfileJobBusyError, having done nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field, field_validator

from components.capture.windows import parse_window
from components.core.problem import load_problem
from components.core.settings import Settings
from components.core.store import store_from_settings
from components.monitoring.profile_job import ProfiledWindow, profile_captures


class CaptureProfileParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    window: str = Field("1h", description="The service's capture window (its profiles' width)")
    hours: float = Field(
        48.0,
        ge=0,
        description="Only windows that end within the last this many hours; 0: every window",
    )
    store: str | None = Field(None, description="Overrides MLOPS_STORE for this run")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value


@flow(name="profile-captures")
def profile_captured(params: CaptureProfileParams | None = None) -> list[ProfiledWindow]:
    """Profile the captured chunks not yet profiled, one whylogs profile per window."""
    params = params or CaptureProfileParams()
    logger = get_run_logger()
    spec = load_problem(params.problem)
    store = store_from_settings(Settings(), params.store)
    since = datetime.now(UTC) - timedelta(hours=params.hours) if params.hours else None
    done = profile_captures(store, spec, window=params.window, since=since)
    for window in done:
        if window.key:
            logger.info(
                "window %s: %d rows of %d new chunks profiled into %s",
                window.start.isoformat(),
                window.rows,
                window.chunks,
                window.key,
            )
    create_markdown_artifact(
        markdown=to_markdown(done),
        key=f"capture-profiles-{spec.name.replace('_', '-')}",
        description=f"Profiles of {spec.name}'s captured predictions",
    )
    return done


def to_markdown(done: list[ProfiledWindow]) -> str:
    lines = ["| window | new chunks | rows profiled | profile |", "|---|---|---|---|"]
    for w in done:
        lines.append(
            f"| {w.start.isoformat()} | {w.chunks} | {w.rows} | {w.key or 'nothing new'} |"
        )
    if not done:
        lines.append("| (no captured chunks in range) | | | |")
    return "\n".join(lines)
