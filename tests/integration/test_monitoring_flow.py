"""The monitoring flow for real under a temporary Prefect server: a champion trained by the
training flow, traffic captured as the service would (a price rise from the third day, then
refused rows), `monitor` judging each closed day once, the alerts it sends and the Prefect
events it emits."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from components.capture.buffer import Capture, CaptureConfig
from components.core.problem import load_problem
from components.core.store import LocalStore
from components.data.datagen import GeneratorConfig, generate
from components.model import training
from components.model.registry import Registry
from flows.data_prep import DataPrepParams, GeneratedInput, data_prep
from flows.monitoring import MonitorParams, monitor
from flows.training import TrainingParams, train

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitoring") / "store"
    data_prep(
        DataPrepParams(
            problem=CHURN, store=str(folder), generated=GeneratedInput(rows=20_000, days=60, seed=4)
        )
    )
    train(TrainingParams(problem=CHURN, store=str(folder), trials=0, cv_folds=0, seed=1))
    _capture_traffic(LocalStore(folder))
    return folder


def _capture_traffic(store: LocalStore) -> None:
    """Four days of 2,500 scored rows, a price rise from the third; 60 refused rows on the
    fourth."""
    spec = load_problem(CHURN)
    registry = Registry(store, spec.name)
    version = registry.alias("champion")
    booster = training.load_model(registry.read_file(version, "model.ubj"))
    frame = generate(
        GeneratorConfig(
            rows=10_000, days=4, start=date(2026, 11, 1), scenario="covariate", drift_day=2, seed=9
        )
    ).frame
    scores = training.predict(booster, frame, spec)
    records = frame[spec.input_features].to_dict("records")
    capture = Capture(store, spec, worker_id="test", config=CaptureConfig(flush_interval_s=60))
    for lo in range(0, len(frame), 100):
        answers = [
            {
                "prediction_id": f"p{i}",
                "model_version": version,
                "probability": float(scores[i]),
                "label": int(scores[i] >= 0.5),
            }
            for i in range(lo, min(lo + 100, len(frame)))
        ]
        at = frame["event_time"].iloc[lo].to_pydatetime()
        capture.record(records[lo : lo + 100], answers, received_at=at)
    for _ in range(6):
        capture.record_rejection(
            10, [("usage_hours", "missing")], received_at=datetime(2026, 11, 4, 9, tzinfo=UTC)
        )
    capture.close()


def _events(names: list[str], wait_s: float = 30.0) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    since = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = time.monotonic() + wait_s
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=names), occurred=EventOccurredFilter(since=since)
                ),
                limit=50,
            )
        if len(page.events) >= 2 or time.monotonic() > deadline:
            return page.events
        time.sleep(1.0)


def test_each_closed_day_is_judged_once_with_alerts_and_events(store_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the problem's JSON-lines channel writes .mlops/alerts.jsonl
    done = monitor(MonitorParams(problem=CHURN, store=str(store_dir)))
    by_day = {item.report.window_start.date(): item.report for item in done}
    assert sorted(by_day) == [date(2026, 11, d) for d in (1, 2, 3, 4)]
    assert by_day[date(2026, 11, 1)].status == "ok", by_day[date(2026, 11, 1)].reasons
    assert by_day[date(2026, 11, 2)].status == "ok", by_day[date(2026, 11, 2)].reasons
    assert "drift-detected" in by_day[date(2026, 11, 3)].conditions
    fourth = by_day[date(2026, 11, 4)]
    assert fourth.rejected == 60 and "quality-failed" in fourth.conditions
    assert (store_dir / "monitoring" / "churn" / "reports").is_dir()

    lines = [
        json.loads(line) for line in (tmp_path / ".mlops" / "alerts.jsonl").read_text().splitlines()
    ]
    assert [(a["condition"], a["severity"]) for a in lines if a["severity"] == "alert"] == [
        ("drift-detected", "alert"),
        ("quality-failed", "alert"),
    ]  # the second day of drift is within the cooldown: not sent again
    page = store_dir / "monitoring" / "churn" / "reports" / "window=20261103T000000Z.html"
    assert lines[0]["report"] == f"file://{page}"
    html = page.read_text()
    assert "monthly_charges" in html and html.count('src="data:image/png;base64,') == 3

    events = _events(["mlops.model.drift-detected", "mlops.data.quality-failed"])
    assert {e.event for e in events} >= {"mlops.model.drift-detected", "mlops.data.quality-failed"}
    drift = next(e for e in events if e.event == "mlops.model.drift-detected")
    assert drift.resource.id == "mlops.model.churn"
    # Where the model lives, for the retraining the event triggers (infra/prefect.yaml).
    assert drift.resource["mlops.problem"] == str(CHURN)
    assert drift.resource["mlops.store"] == store_dir.resolve().as_uri()
    assert isinstance(drift.payload["reasons"], list) and drift.payload["reasons"]
    assert drift.payload["window"]["start"].startswith("2026-11-0")

    assert monitor(MonitorParams(problem=CHURN, store=str(store_dir))) == []  # idempotent
