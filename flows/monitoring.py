"""Monitoring as a Prefect flow (lifecycle stage 6): profile what is new, then judge each
closed window not judged yet against the champion's references.

Idempotent: a window's report is written once; running again monitors only the windows
that closed since. Each report's verdict becomes a Prefect Markdown and table artifact, and
each condition it raises (drift detected, performance degraded, data quality failed) a
Prefect event on the resource ``mlops.model.<problem>`` with the reasons and the window,
which a deployment trigger can start retraining from. The resource's labels name the
problem file and the store the run used (``mlops.problem``, ``mlops.store``), so that the
retraining it starts (infra/prefect.yaml) works on the same model.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from pydantic import BaseModel, Field

from components.alerts.alert import Alert
from components.alerts.build import with_settings_channels
from components.alerts.channels.base import Channel
from components.alerts.dispatch import DeliveryResult, dispatch_alerts
from components.capture.readers import capture_keys
from components.capture.windows import parse_window, window_start
from components.core import keys
from components.core.problem import AlertSpec, ProblemSpec, load_problem
from components.core.settings import Settings
from components.core.store import Store, store_from_settings
from components.model.registry import Registry
from components.monitoring.monitor import (
    MonitoringReport,
    champion_references,
    monitor_window,
    monitored_windows,
)
from components.monitoring.notify import alerts_of
from components.monitoring.profile_job import ProfileJobBusyError, profile_captures
from flows.alerting import build_channels
from flows.tasks import retry_on, task

EVENTS = {
    "drift-detected": "mlops.model.drift-detected",
    "performance-degraded": "mlops.model.performance-degraded",
    "quality-failed": "mlops.data.quality-failed",
}


class MonitorParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    window: date | None = Field(None, description="Monitor only the window of this day")
    since: date | None = Field(None, description="Monitor closed windows from this day on")
    store: str | None = Field(None, description="Overrides MLOPS_STORE for this run")


class MonitoredWindow(BaseModel):
    report: MonitoringReport
    page: str  # the report's HTML page (the JSON report is beside it)
    alerts: list[dict] = Field(default_factory=list)  # one delivery result per channel


def alert_state_path(store: Store) -> Path:
    """Where alert dedupe is remembered: beside a local store's objects, else in the
    working directory's .mlops folder (a worker that starts fresh each run forgets it; the
    Prefect trigger's own rate limit still holds)."""
    root = getattr(store, "root", None)
    return Path(root) / "alerts" / "state.json" if root else Path(".mlops") / "alerts-state.json"


def model_resource(spec: ProblemSpec, problem: Path, store: Store) -> dict[str, str]:
    """The Prefect resource of the problem's model: its id, and the problem file and store
    this run read, as labels a deployment trigger can pass on to the run it starts."""
    return {
        "prefect.resource.id": f"mlops.model.{spec.name}",
        "mlops.problem": str(problem),
        "mlops.store": store.url,
    }


def closed_windows(
    store: Store, spec: ProblemSpec, now: datetime, since: datetime | None = None
) -> list[datetime]:
    """The windows holding captured rows that have ended by ``now`` and were not judged."""
    width = parse_window(spec.monitoring.window)
    starts = {
        window_start(keys.capture_hour(key), width)
        for key in capture_keys(store, spec.name, since, None)
    }
    done = set(monitored_windows(store, spec.name))
    return sorted(
        s for s in starts if s + width <= now and s not in done and (since is None or s >= since)
    )


def _day(value: date | None) -> datetime | None:
    return datetime(value.year, value.month, value.day, tzinfo=UTC) if value else None


@task(retries=2, retry_delay_seconds=60, retry_condition_fn=retry_on(ProfileJobBusyError))
def profile_new(store: Store, spec: ProblemSpec, since: datetime | None) -> None:
    """Profile the captures no run has profiled yet. A scheduled profile-captures run holds
    the problem's lease for a few seconds: wait for it rather than fail the monitoring."""
    profile_captures(store, spec, window=spec.monitoring.window, since=since)


# No retries: dispatch_alerts already retries each channel and returns a failed delivery
# as a result, and a second try would resend what the first delivered. The timeout bounds
# a channel without a timeout of its own (a Prefect notification block).
@task(timeout_seconds=120)
def send_alerts(
    alerts: list[Alert], channels: list[Channel], alert_spec: AlertSpec, store: Store
) -> list[DeliveryResult]:
    return dispatch_alerts(alerts, channels, alert_spec, state_path=alert_state_path(store))


@flow(name="monitor")
def monitor(params: MonitorParams | None = None) -> list[MonitoredWindow]:
    """Profile new captures, then monitor every closed window not monitored yet."""
    params = params or MonitorParams()
    logger = get_run_logger()
    spec = load_problem(params.problem)
    store = store_from_settings(Settings(), params.store)
    now = datetime.now(UTC)
    since = _day(params.window) or _day(params.since)
    profile_new(store, spec, since)
    windows = closed_windows(store, spec, now, since)
    if params.window is not None:
        windows = [s for s in windows if s == since]
    references = champion_references(Registry(store, spec.name), spec) if windows else None
    settings = Settings()
    alert_spec = with_settings_channels(spec.alerts, settings.alert_channels)
    channels = build_channels(alert_spec, settings) if windows else []
    done = []
    for start in windows:
        report, page = monitor_window(store, references, spec, start)
        logger.info("window %s: %s %s", start.isoformat(), report.status, report.reasons)
        _publish(spec, report, store.uri(page), model_resource(spec, params.problem, store))
        results = send_alerts(alerts_of(report, store.uri(page)), channels, alert_spec, store)
        for result in results:
            logger.info("alert %s on %s: %s", result.condition, result.channel, result.status)
        done.append(
            MonitoredWindow(
                report=report, page=store.uri(page), alerts=[r.as_dict() for r in results]
            )
        )
    return done


def _publish(
    spec: ProblemSpec, report: MonitoringReport, page: str, resource: dict[str, Any]
) -> None:
    slug = spec.name.replace("_", "-")
    create_markdown_artifact(
        markdown=to_markdown(report),
        key=f"monitoring-{slug}",
        description=f"{spec.name}: window of {report.window_start:%Y-%m-%d %H:%M}",
    )
    create_table_artifact(
        table=[
            {
                "check": f["check"],
                "subject": f["subject"],
                "status": f["status"],
                "value": f["value"],
                "message": f["message"],
            }
            for f in report.findings
        ],
        key=f"monitoring-findings-{slug}",
    )
    for condition, reasons in report.conditions.items():
        emit_event(
            event=EVENTS[condition],
            resource=resource,
            payload={
                "reasons": reasons,
                "window": {
                    "start": report.window_start.isoformat(),
                    "end": report.window_end.isoformat(),
                },
                "status": report.status,
                "champion": report.champion,
                "report": page,
            },
        )


def to_markdown(report: MonitoringReport) -> str:
    lines = [
        f"## {report.problem}: {report.status} for "
        f"{report.window_start:%Y-%m-%d %H:%M} to {report.window_end:%Y-%m-%d %H:%M} UTC",
        "",
        f"Champion {report.champion}; {report.rows} rows answered, {report.rejected} refused; "
        f"{report.unlabelled} predictions still unlabelled.",
        "",
    ]
    lines += [f"- {reason}" for reason in report.reasons] or ["- nothing found"]
    psi = report.psi()
    if psi:
        lines += ["", "| feature | PSI |", "|---|---|"]
        lines += [
            f"| {name} | {value:.3f} |" for name, value in sorted(psi.items(), key=lambda i: -i[1])
        ]
    return "\n".join(lines)
