"""A small production timeline for the retraining tests: a champion trained on generated
history, then days of traffic scored by whichever version is champion, captured through the
real capture, labels recorded as feedback once their label time has passed, and each day
monitored and its report stored."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from components.capture.buffer import Capture
from components.capture.feedback import record_feedback
from components.core.problem import ProblemSpec
from components.core.store import Store
from components.data import datagen, profiling
from components.data.snapshot import write_snapshot
from components.data.validation import validate_frame
from components.model import assessment, gate, registration, training
from components.model.registry import Registry
from components.monitoring.monitor import champion_references, monitor_window
from components.monitoring.profile_job import profile_captures
from components.serving.contract import Predictor, Validator
from components.serving.ids import PredictionIds, problem_secret

START = date(2026, 1, 1)


@dataclass
class Timeline:
    """``history_days`` of history from ``start``, then ``days`` of production from day
    index 0."""

    store: Store
    spec: ProblemSpec
    scenario: str = "none"
    seed: int = 3
    rows_per_day: int = 1500
    history_days: int = 40
    days: int = 20
    onset: int = 5
    label_delay: int = 3
    start: date = START
    now: datetime = field(init=False)
    pending: list = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        total = self.history_days + self.days
        config = datagen.GeneratorConfig(
            rows=self.rows_per_day * total,
            days=total,
            start=self.start,
            seed=self.seed,
            scenario=self.scenario,
            drift_day=self.history_days + self.onset,
            label_delay_days=self.label_delay,
        )
        self.generated = datagen.generate(config)
        self.frame = self.generated.frame
        self.now = self.day(0)
        self.ids = PredictionIds(problem_secret(self.store, self.spec.name))

    def day(self, index: int) -> datetime:
        first = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return first + timedelta(days=self.history_days + index)

    def registry(self) -> Registry:
        return Registry(self.store, self.spec.name, clock=lambda: self.now)

    def train_champion(self) -> str:
        """Snapshot the rows labelled by day 0, train with the defaults, register, promote."""
        spec, store = self.spec, self.store
        rows = datagen.training_rows(self.frame, self.day(0))
        valid = validate_frame(rows, spec).valid
        manifest = write_snapshot(
            store,
            spec,
            valid,
            source="history",
            profile=profiling.profile_frame(valid[list(spec.features)]),
            quarantined_rows=0,
            quarantine_key=None,
            validation_key=None,
            now=self.now,
        )
        parts = training.split_by_time(valid, spec)
        params = training.TrainParams(num_boost_round=200)
        model = training.train_model(parts.train, parts.validation, spec, params, seed=1)
        result = assessment.evaluate_candidate(parts, spec, model)
        decision = gate.decide_promotion(spec, result.metrics, result.baseline, None)
        candidate = registration.Candidate(
            manifest.snapshot_id, parts, model, params, 1, 0, None, result, None
        )
        registry = self.registry()
        version = registration.register_version(
            registry, store, spec, candidate, decision, promote=True, clock=lambda: self.now
        ).version
        registry.promote(version, actor="test", reason="first")
        return version

    def serve_day(self, index: int, requests: int = 3) -> None:
        """The day's traffic scored by the champion and captured; labels queued."""
        spec = self.spec
        registry = self.registry()
        version = registry.alias("champion")
        booster = training.load_model(registry.read_file(version, "model.ubj"), nthread=1)
        threshold = registry.metadata(version).get("threshold")
        predictor = Predictor(
            spec, booster, version=version, threshold=threshold, new_ids=self.ids.new_many
        )
        validator = Validator(spec)
        capture = Capture(self.store, spec, worker_id=f"day{index}")
        start = self.day(index)
        rows = self.frame[
            (self.frame["event_time"] >= start)
            & (self.frame["event_time"] < start + timedelta(days=1))
        ]
        for part in np.array_split(np.arange(len(rows)), requests):
            batch = rows.iloc[part]
            traffic = datagen.traffic_rows(batch)
            records = json.loads(traffic.to_json(orient="records", date_format="iso"))
            valid, errors = validator.validate_each(records)
            kept = [i for i in range(len(records)) if i not in errors]
            if not kept:
                continue
            scored = predictor.predict_batch(valid)
            capture.record(valid, scored.answers, received_at=batch["event_time"].iloc[-1])
            labels = batch.iloc[kept]
            self.pending += list(
                zip(labels[datagen.LABEL_TIME], scored.ids, labels[datagen.TARGET], strict=True)
            )
        capture.close()

    def record_labels(self, until: datetime) -> int:
        due = [p for p in self.pending if p[0] <= until]
        self.pending = [p for p in self.pending if p[0] > until]
        for at, prediction_id, label in due:
            record_feedback(self.store, self.spec, prediction_id, int(label), observed_at=at)
        return len(due)

    def monitor_day(self, index: int):
        start = self.day(index)
        profile_captures(
            self.store, self.spec, window="1d", since=start, until=start + timedelta(days=1)
        )
        references = champion_references(self.registry(), self.spec)
        report, _ = monitor_window(
            self.store, references, self.spec, start, clock=lambda: start + timedelta(days=1)
        )
        return report

    def run_days(self, first: int, last: int, *, monitor: bool = True) -> list:
        """Serve, label and (unless ``monitor`` is False) monitor days ``first`` to
        ``last`` - 1; the clock ends at the end of the last day."""
        reports = []
        for index in range(first, last):
            self.serve_day(index)
            self.now = self.day(index + 1)
            self.record_labels(self.now)
            if monitor:
                reports.append(self.monitor_day(index))
        return reports


def post_drift(frame: pd.DataFrame, timeline: Timeline, start: int, end: int) -> pd.DataFrame:
    times = frame["event_time"]
    return frame[(times >= timeline.day(start)) & (times < timeline.day(end))]


def write_problem(spec: ProblemSpec, folder: Path, **retraining) -> Path:
    """The problem file with ``retraining`` settings changed (nested dicts replace whole
    sub-sections), for a flow that reads the problem from a path."""
    import yaml

    doc = json.loads(spec.model_dump_json())
    doc["retraining"].update(retraining)
    doc["alerts"] = {"channels": [{"type": "jsonl", "path": str(folder / "alerts.jsonl")}]}
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def problem_file(spec: ProblemSpec, folder: Path, **sections) -> Path:
    """The problem file with sections changed: ``retraining={"shadow": {...}}`` merges into
    the retraining section (one level deep); alerts go to ``folder / "alerts.jsonl"``."""
    import yaml

    doc = json.loads(spec.model_dump_json())
    for name, changes in sections.items():
        for key, value in changes.items():
            current = doc[name].get(key)
            doc[name][key] = {**current, **value} if isinstance(current, dict) else value
    doc["alerts"] = {"channels": [{"type": "jsonl", "path": str(folder / "alerts.jsonl")}]}
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
