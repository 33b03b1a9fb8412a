"""How soon the real monitoring components detect the generator's drift scenarios, and how
often they raise a false alarm, over many seeds.

    .venv/bin/python benchmarks/monitoring_efficacy.py [--seeds 10] [--rows-per-day 3000]

Per seed: generate `history-days + days` days of churn rows for each
scenario (their rows before the drift day are identical, which is checked, so one champion
per seed serves every scenario), snapshot the rows whose labels arrived by the first
monitored day, train a champion as `mlops train --trials 0` does (split by time, default
parameters, evaluation, gate, registration with its reference and score profiles,
promotion), and copy that store once per scenario.

Then, per scenario, day by day over the `days` monitored windows, in a LocalStore: the
day's traffic, cut into `--requests-per-day` requests of consecutive rows, goes through the
service's contract as JSON records (`Validator.validate_each`; an invalid record is refused
alone, as a one-record request would be, its (field, check) reasons counted by
`Capture.record_rejection`); the valid ones are scored by the champion's `Predictor` and
captured (`Capture.record`, received at the request's last event time); capture is
flushed; the labels whose label time (event time + `--label-delay` days) falls by the end
of the day are recorded as feedback (observed at their label time); `profile_captures`
profiles the day and `gather_window` + `assess_window` judge it. Drift starts on window
`onset`. The stores live in /dev/shm when it exists (every label is one fsynced file) and
serve their reads from memory (`cached_store`); `--plain-store` turns that off.

A check's status in a window is the worst status of its findings. Detection delay: the
first window at or after onset where the check reaches warn (or worse) and alert, minus the
onset window; for `concept`, minus the window in which the onset window's labels have all
arrived (onset + label delay), the earliest any label can tell. False alarms: windows
before onset (every window for `none`) where the check is at warn, or at alert.

Printed: one table per scenario (aggregated over seeds), the four targets met or not, the
margins (each check's figure: its worst value without drift, its weakest in the window
that should detect), the run time, and the window-by-window trace of one seed that missed
its target (`--trace`: of the first seed of every scenario).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENARIOS = ("none", "covariate", "concept", "quality")
ANY = "(any check)"  # the report's own status
STAGES = ("serve", "feedback", "profile", "gather", "assess")


@dataclass(frozen=True)
class RunConfig:
    rows_per_day: int = 3000
    history_days: int = 60
    days: int = 30
    onset: int = 15
    label_delay: int = 7
    quality_fraction: float = 0.02
    requests_per_day: int = 4
    cached_store: bool = True
    scenarios: tuple[str, ...] = SCENARIOS
    threads: int = 0
    store_root: str | None = None
    problem: Path = ROOT / "problems" / "churn.yaml"
    start: date = date(2026, 1, 1)

    @property
    def drift_day(self) -> int:
        return self.history_days + self.onset

    def monitored_day(self, index: int) -> datetime:
        first = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return first + timedelta(days=self.history_days + index)


@dataclass
class Window:
    """What one window's report said: each check's status, the report's, and the figures
    behind them (text for the trace, numbers for the margins)."""

    checks: dict[str, str]
    status: str
    figures: dict[str, str]
    values: dict[str, float]


@dataclass
class ScenarioRun:
    seed: int
    scenario: str
    windows: list[Window]
    stage_s: dict[str, float] = field(default_factory=dict)


# --- one seed ------------------------------------------------------------------------------


def run_seed(seed: int, config: RunConfig) -> tuple[list[ScenarioRun], float]:
    """Every scenario of one seed, and the seconds spent training its champion."""
    from components.core.problem import load_problem
    from components.core.store import LocalStore
    from components.data import datagen

    spec = load_problem(config.problem)
    frames = {
        s: datagen.generate(_generator(config, seed, s)).frame for s in {"none", *config.scenarios}
    }
    _check_same_history(frames, _generator(config, seed, "none").drift_start)
    with tempfile.TemporaryDirectory(prefix=f"efficacy-{seed}-", dir=config.store_root) as tmp:
        base = Path(tmp) / "base"
        started = time.perf_counter()
        train_champion(LocalStore(base), spec, frames["none"], config, seed)
        train_s = time.perf_counter() - started
        runs = []
        for scenario in config.scenarios:
            folder = Path(tmp) / scenario
            shutil.copytree(base, folder)
            store = cached_store(folder) if config.cached_store else LocalStore(folder)
            runs.append(monitor_scenario(store, spec, frames[scenario], config, seed, scenario))
            shutil.rmtree(folder)
    return runs, train_s


def _generator(config: RunConfig, seed: int, scenario: str):
    from components.data import datagen

    days = config.history_days + config.days
    return datagen.GeneratorConfig(
        rows=config.rows_per_day * days,
        days=days,
        start=config.start,
        seed=seed,
        scenario=scenario,
        drift_day=config.drift_day,
        label_delay_days=config.label_delay,
        quality_fraction=config.quality_fraction,
    )


def _check_same_history(frames: dict, drift_start: datetime) -> None:
    """The champion is shared by the scenarios of a seed: their rows before drift_start
    must be the same (values; the quality scenario's tenure is nullable Int64)."""
    import pandas as pd

    reference = frames["none"]
    before = reference[reference["event_time"] < drift_start]
    for scenario, frame in frames.items():
        mine = frame[frame["event_time"] < drift_start]
        try:
            pd.testing.assert_frame_equal(before, mine, check_dtype=False)
        except AssertionError as exc:
            raise SystemExit(
                f"scenario {scenario}: rows before the drift day differ: {exc}"
            ) from None


def train_champion(store, spec, frame, config: RunConfig, seed: int) -> str:
    """Snapshot the labelled rows available on the first monitored day and train, gate,
    register and promote a model from it, with the components `mlops train` wires."""
    from components.data import datagen, profiling
    from components.data.snapshot import write_snapshot
    from components.data.validation import validate_frame
    from components.model import assessment, gate, registration, training
    from components.model.registry import Registry

    rows = datagen.training_rows(frame, config.monitored_day(0))
    valid = validate_frame(rows, spec, source=f"generated seed {seed}").valid
    manifest = write_snapshot(
        store,
        spec,
        valid,
        source=f"generated seed {seed}",
        profile=profiling.profile_frame(valid[list(spec.features)]),
        quarantined_rows=len(rows) - len(valid),
        quarantine_key=None,
        validation_key=None,
    )
    parts = training.split_by_time(valid, spec)
    params = training.TrainParams()
    model = training.train_model(
        parts.train, parts.validation, spec, params, seed=seed, nthread=config.threads
    )
    result = assessment.evaluate_candidate(parts, spec, model)
    decision = gate.decide_promotion(spec, result.metrics, result.baseline, None)
    if not decision.passed:
        raise SystemExit(f"seed {seed}: the champion fails the gate: {decision.failures}")
    candidate = registration.Candidate(
        snapshot_id=manifest.snapshot_id,
        parts=parts,
        model=model,
        params=params,
        seed=seed,
        trials=0,
        cv=None,
        evaluation=result,
        champion=None,
    )
    registry = Registry(store, spec.name)
    registered = registration.register_version(
        registry, store, spec, candidate, decision, promote=True
    )
    registry.set_alias("challenger", registered.version, actor="benchmark", reason="gate")
    registry.promote(registered.version, actor="benchmark", reason=decision.reasons[-1])
    return registered.version


def cached_store(root: Path):
    """A LocalStore that also keeps its keys and the bytes it wrote or read in memory.

    Every write still goes to the folder, with LocalStore's semantics (create-only, CAS);
    only reads are served from memory, which is coherent because this process is the
    store's only writer. Without it, `gather_window` spends most of each window listing
    and reading every feedback label stored so far from the folder (one object per label).
    """
    from components.core.store import LocalStore, validate_prefix

    class CachedStore(LocalStore):
        def __init__(self, folder: Path) -> None:
            super().__init__(folder)
            self._keys = super().list()
            self._known = set(self._keys)
            self._bytes: dict[str, bytes] = {}

        def _add(self, key: str, data: bytes | None) -> None:
            if data is None:
                self._bytes.pop(key, None)
            else:
                self._bytes[key] = data
            if key not in self._known:
                self._known.add(key)
                bisect.insort(self._keys, key)

        def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
            super().put_bytes(key, data, create_only=create_only)
            self._add(key, bytes(data))

        def put_file(self, key: str, path, *, create_only: bool = False) -> None:
            super().put_file(key, path, create_only=create_only)
            self._add(key, None)

        def swap_pointer(self, key: str, value: bytes, expected_etag: str | None) -> str:
            etag = super().swap_pointer(key, value, expected_etag)
            self._add(key, bytes(value))
            return etag

        def get_bytes(self, key: str) -> bytes:
            data = self._bytes.get(key)
            if data is None:
                data = self._bytes[key] = super().get_bytes(key)
            return data

        def exists(self, key: str) -> bool:
            return key in self._known

        def list(self, prefix: str = "") -> list[str]:
            validate_prefix(prefix)
            first = bisect.bisect_left(self._keys, prefix)
            last = bisect.bisect_left(self._keys, prefix + "\U0010ffff")
            return self._keys[first:last]

        def delete(self, key: str) -> None:
            super().delete(key)
            self._bytes.pop(key, None)
            if key in self._known:
                self._known.remove(key)
                self._keys.remove(key)

    return CachedStore(root)


# --- one scenario ----------------------------------------------------------------------------


def monitor_scenario(
    store, spec, frame, config: RunConfig, seed: int, scenario: str
) -> ScenarioRun:
    from components.capture.buffer import Capture
    from components.data import datagen
    from components.model import training
    from components.model.registry import Registry
    from components.monitoring.monitor import assess_window, champion_references, gather_window
    from components.monitoring.profile_job import profile_captures
    from components.serving.contract import Predictor, Validator

    registry = Registry(store, spec.name)
    references = champion_references(registry, spec)
    version = references.version
    booster = training.load_model(registry.read_file(version, "model.ubj"), nthread=1)
    threshold = registry.metadata(version).get("threshold")
    predictor = Predictor(spec, booster, version=version, threshold=threshold, flag_unknown=False)
    validator = Validator(spec)
    capture = Capture(store, spec, worker_id="benchmark")
    labels = _Labels()
    seconds = dict.fromkeys(STAGES, 0.0)
    windows = []
    traffic = frame[frame["event_time"] >= config.monitored_day(0)]
    batches = dict(datagen.daily_batches(traffic))
    for index in range(config.days):
        start = config.monitored_day(index)
        end = start + timedelta(days=1)
        with _timed(seconds, "serve"):
            for rows in _requests(batches[start.date()], config.requests_per_day):
                labels.add(serve_request(rows, validator, predictor, capture))
            capture.flush()
        with _timed(seconds, "feedback"):
            labels.record_until(store, spec, end)
        with _timed(seconds, "profile"):
            profile_captures(store, spec, window="1d", since=start, until=end)
        with _timed(seconds, "gather"):
            inputs = gather_window(store, spec, start, profile_window="1d")
        with _timed(seconds, "assess"):
            report = assess_window(spec, references, inputs, now=end)
        windows.append(_window(report))
    capture.close()
    return ScenarioRun(seed, scenario, windows, seconds)


def _requests(day, count: int) -> Iterator:
    """The day's rows (in time order) cut into `count` requests of consecutive rows."""
    for positions in np.array_split(np.arange(len(day)), count):
        if len(positions):
            yield day.iloc[positions]


def serve_request(rows, validator, predictor, capture):
    """One request's traffic through the contract: JSON records validated one by one, the
    refused counted with their reasons, the rest scored and captured. Returns the captured
    rows' prediction ids with their customers' labels and label times."""
    from components.data import datagen

    traffic = datagen.traffic_rows(rows)
    records = json.loads(
        traffic.to_json(orient="records", date_format="iso", date_unit="us", double_precision=15)
    )
    valid, errors = validator.validate_each(records)
    event_times = rows["event_time"].tolist()
    for i in errors:
        capture.record_rejection(1, _reasons(validator, records[i]), received_at=event_times[i])
    kept = [i for i in range(len(records)) if i not in errors]
    if not kept:
        return [], [], []
    scored = predictor.predict_batch(valid)
    capture.record(valid, scored.answers, received_at=event_times[-1])
    churned = rows[datagen.TARGET].to_numpy()[kept].tolist()
    label_times = rows[datagen.LABEL_TIME].iloc[kept].tolist()
    return list(scored.ids), churned, label_times


def _reasons(validator, record: dict) -> list[tuple[str, str]]:
    """(field, check) per error of a refused record, as the service counts a refused
    request's detail (components/serving/online.py)."""
    from pydantic import ValidationError

    try:
        validator.record.model_validate(record)
    except ValidationError as exc:
        return [(".".join(map(str, e["loc"])) or "(record)", e["type"]) for e in exc.errors()]
    return [("(record)", "unknown")]


class _Labels:
    """Labels waiting for their label time, recorded as feedback once it has passed."""

    def __init__(self) -> None:
        self.pending: list[tuple[datetime, str, int]] = []

    def add(self, served: tuple[list, list, list]) -> None:
        ids, churned, label_times = served
        self.pending += list(zip(label_times, ids, churned, strict=True))

    def record_until(self, store, spec, end: datetime) -> None:
        from components.capture.feedback import record_feedback

        self.pending.sort(key=lambda item: item[0])
        due = 0
        while due < len(self.pending) and self.pending[due][0] <= end:
            at, prediction_id, label = self.pending[due]
            record_feedback(store, spec, prediction_id, label, observed_at=at.to_pydatetime())
            due += 1
        del self.pending[:due]


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] += time.perf_counter() - started


def _window(report) -> Window:
    from components.monitoring.verdict import worse

    checks: dict[str, str] = {}
    for finding in report.findings:
        checks[finding["check"]] = worse(checks.get(finding["check"], "ok"), finding["status"])
    return Window(checks, report.status, _figures(report), _values(report))


# (figure, True when a larger value is the stronger signal)
MARGINS = (
    ("max PSI", True),
    ("score shift (abs)", True),
    ("rejection rate", True),
    ("estimated drop", True),
    ("calibration z (abs)", True),
    ("degradation p", False),
)


def _values(report) -> dict[str, float]:
    """The figure each check compares with its threshold, as a number."""
    out = {}
    psi = report.psi()
    if psi:
        out["max PSI"] = max(psi.values())
    for finding in report.findings:
        check, value = finding["check"], finding["value"]
        if check == "prediction_drift" and value is not None:
            out["score shift (abs)"] = abs(value)
        elif check == "rejections":
            out["rejection rate"] = value
        elif check == "estimated_performance" and finding["threshold"] is not None:
            out["estimated drop"] = finding["threshold"] - value
    performance = report.performance
    if "calibration" in performance:
        out["calibration z (abs)"] = abs(performance["calibration"]["z"])
    if "degradation" in performance:
        out["degradation p"] = performance["degradation"]["p_value"]
    return out


def _figures(report) -> dict[str, str]:
    """The figures behind each check, short, for the trace."""
    out = {}
    psi = report.psi()
    if psi:
        name = max(psi, key=psi.get)
        out["psi"] = f"{name} {psi[name]:.3f}"
    for finding in report.findings:
        check, value = finding["check"], finding["value"]
        if check == "prediction_drift" and value is not None:
            p_value = finding["message"].split("(p=")[1].split(")")[0]
            out["scores"] = f"shift {value:+.3f} p={p_value}"
        elif check == "rejections":
            out["rejected"] = f"{value:.2%}"
        elif check == "data_quality" and finding["status"] != "ok" and "quality" not in out:
            out["quality"] = finding["message"][:48]
        elif check == "estimated_performance" and value is not None:
            out["estimated"] = f"{value:.3f}"
    performance = report.performance
    if "calibration" in performance:
        out["calibration z"] = f"{performance['calibration']['z']:+.2f}"
    if "degradation" in performance:
        d = performance["degradation"]
        out["degradation"] = f"auc {d['value']:.3f} p={d['p_value']:.2g}"
    return out


# --- summary ---------------------------------------------------------------------------------


def _at_least(status: str, level: str) -> bool:
    from components.monitoring.verdict import worse

    return worse(status, level) == status


def _status(window: Window, check: str) -> str:
    return window.status if check == ANY else window.checks.get(check, "ok")


def reference_window(scenario: str, config: RunConfig) -> int:
    """Where delays count from: the onset window, or for concept drift the window by whose
    end every label of the onset window has arrived."""
    return config.onset + config.label_delay if scenario == "concept" else config.onset


def first_delay(run: ScenarioRun, check: str, level: str, config: RunConfig) -> int | None:
    for index in range(config.onset, config.days):
        if _at_least(_status(run.windows[index], check), level):
            return index - reference_window(run.scenario, config)
    return None


def false_alarms(run: ScenarioRun, check: str, level: str, config: RunConfig) -> int:
    last = config.days if run.scenario == "none" else config.onset
    return sum(_status(w, check) == level for w in run.windows[:last])


def _delays(values: list[int | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return f"never ({len(values)})"
    text = f"{statistics.median(found):g} / {max(found)}"
    missed = len(values) - len(found)
    return text + (f", never {missed}" if missed else "")


def scenario_table(runs: list[ScenarioRun], scenario: str, config: RunConfig, checks) -> str:
    mine = [r for r in runs if r.scenario == scenario]
    if scenario == "none":
        head = "| check | false warns | false alerts | seeds with any |"
        lines = [head, "|---|---|---|---|"]
    else:
        since = "labels arrive" if scenario == "concept" else "onset"
        head = (
            f"| check | first warn+ after {since} (median / max) | first alert after {since} "
            "(median / max) | false warns | false alerts |"
        )
        lines = [head, "|---|---|---|---|---|"]
    for check in (*checks, ANY):
        warns = sum(false_alarms(r, check, "warn", config) for r in mine)
        alerts = sum(false_alarms(r, check, "alert", config) for r in mine)
        if scenario == "none":
            seeds = sum(
                false_alarms(r, check, "warn", config) + false_alarms(r, check, "alert", config) > 0
                for r in mine
            )
            lines.append(f"| {check} | {warns} | {alerts} | {seeds} of {len(mine)} |")
            continue
        warn = _delays([first_delay(r, check, "warn", config) for r in mine])
        alert = _delays([first_delay(r, check, "alert", config) for r in mine])
        lines.append(f"| {check} | {warn} | {alert} | {warns} | {alerts} |")
    return "\n".join(lines)


def targets(runs: list[ScenarioRun], config: RunConfig) -> list[tuple[str, str, bool, str]]:
    """(scenario, target, met, what was found) for each scenario that ran."""
    out = []
    by = {s: [r for r in runs if r.scenario == s] for s in config.scenarios}
    for scenario in ("covariate", "quality"):
        if by.get(scenario):
            delays = [first_delay(r, ANY, "alert", config) for r in by[scenario]]
            ok = sum(d == 0 for d in delays)
            out.append(
                (
                    scenario,
                    "alert in the first window after onset",
                    ok == len(delays),
                    f"{ok} of {len(delays)} seeds; delays {_list(delays)}",
                )
            )
    if by.get("concept"):
        delays = [first_delay(r, ANY, "alert", config) for r in by["concept"]]
        ok = sum(d is not None and d <= 3 for d in delays)
        out.append(
            (
                "concept",
                "alert within 3 windows after the onset window's labels arrive",
                ok == len(delays),
                f"{ok} of {len(delays)} seeds; delays {_list(delays)}",
            )
        )
    if by.get("none"):
        alarms = [
            false_alarms(r, ANY, "warn", config) + false_alarms(r, ANY, "alert", config)
            for r in by["none"]
        ]
        clean = sum(a == 0 for a in alarms)
        out.append(
            (
                "none",
                f"0 warnings and 0 alerts in {config.days} windows",
                clean == len(alarms),
                f"{clean} of {len(alarms)} seeds clean; alarm windows {_list(alarms)}",
            )
        )
    return out


def margins(runs: list[ScenarioRun], config: RunConfig, spec) -> str:
    """Per figure: its threshold, the worst value in windows without drift (with its seed
    and window relative to onset), and the weakest value over seeds in each drift
    scenario's reference window (onset; for concept the window its labels arrive)."""
    m = spec.monitoring
    limits = {
        "max PSI": f"warn {m.drift.psi_warn:g}, alert {m.drift.psi_alert:g}",
        "score shift (abs)": f"warn {m.prediction.min_mean_shift:g} (and KS p < "
        f"{m.prediction.ks_p_value:g})",
        "rejection rate": f"alert > {m.quality.max_rejection_rate:g}",
        "estimated drop": f"warn {m.performance.estimated_drop_warn:g}",
        "calibration z (abs)": f"alert > {m.performance.calibration_z:g}",
        "degradation p": f"alert < {m.performance.degradation_p_value:g}",
    }
    drifted = [s for s in config.scenarios if s != "none"]
    quiet = [  # (window, seed, index relative to onset)
        (w, r.seed, i - config.onset)
        for r in runs
        for i, w in enumerate(r.windows if r.scenario == "none" else r.windows[: config.onset])
    ]
    names = ["figure", "threshold", "worst without drift"] + [
        f"{s}: weakest at {'labels' if s == 'concept' else 'onset'}" for s in drifted
    ]
    lines = ["| " + " | ".join(names) + " |", "|---" * len(names) + "|"]
    for name, larger in MARGINS:
        pick = max if larger else min
        weakest = min if larger else max
        seen = [(w.values[name], seed, at) for w, seed, at in quiet if name in w.values]
        worst = pick(seen, default=None, key=lambda item: item[0])
        cells = [f"{_number(worst[0])} (seed {worst[1]}, {worst[2]:+d})" if worst else "-"]
        for scenario in drifted:
            at = reference_window(scenario, config)
            found = [
                r.windows[at].values[name]
                for r in runs
                if r.scenario == scenario and at < len(r.windows) and name in r.windows[at].values
            ]
            cells.append(_number(weakest(found, default=None)))
        lines.append(f"| {name} | {limits[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if abs(value) < 0.001 and value != 0 else f"{value:.3f}"


def _list(values) -> str:
    return ",".join("-" if v is None else str(v) for v in values)


def trace(run: ScenarioRun, config: RunConfig) -> str:
    """Window by window, the status and figures of one run (windows relative to onset)."""
    names = ("psi", "scores", "rejected", "quality", "estimated", "calibration z", "degradation")
    lines = [
        f"trace: {run.scenario}, seed {run.seed} (window 0 = onset; calibration and "
        f"degradation judge labelled windows, {config.label_delay} behind)",
        "| window | status | " + " | ".join(names) + " |",
        "|---" * (len(names) + 2) + "|",
    ]
    for index, window in enumerate(run.windows):
        cells = [window.figures.get(n, "") for n in names]
        lines.append(f"| {index - config.onset:+d} | {window.status} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _failing(run: ScenarioRun, config: RunConfig) -> bool:
    delay = first_delay(run, ANY, "alert", config)
    if run.scenario == "none":
        return any(_at_least(w.status, "warn") for w in run.windows)
    if run.scenario == "concept":
        return delay is None or delay > 3
    return delay != 0


# --- main ------------------------------------------------------------------------------------


def _default_root() -> str | None:
    # Every label is one fsynced file: on tmpfs the fsyncs cost nothing, which keeps the
    # run about detection, not about the disk.
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--rows-per-day", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30, help="monitored windows (1 day each)")
    parser.add_argument("--onset", type=int, default=15, help="windows before the drift")
    parser.add_argument("--history-days", type=int, default=60, help="days before monitoring")
    parser.add_argument("--label-delay", type=int, default=7, help="days until a label arrives")
    parser.add_argument("--quality-fraction", type=float, default=0.02)
    parser.add_argument(
        "--requests-per-day", type=int, default=4, help="each captured at its last event time"
    )
    parser.add_argument(
        "--plain-store", action="store_true", help="no in-memory read cache (slow: see above)"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--jobs", type=int, default=1, help="seeds in parallel processes")
    parser.add_argument("--threads", type=int, default=0, help="XGBoost training; 0: all")
    parser.add_argument("--store-root", default=_default_root(), help="temp stores go here")
    parser.add_argument("--trace", action="store_true", help="trace every scenario's seed")
    args = parser.parse_args()

    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if not 0 < args.onset < args.days:
        parser.error(f"--onset {args.onset} must lie between 0 and --days {args.days}")
    config = RunConfig(
        rows_per_day=args.rows_per_day,
        history_days=args.history_days,
        days=args.days,
        onset=args.onset,
        label_delay=args.label_delay,
        quality_fraction=args.quality_fraction,
        requests_per_day=args.requests_per_day,
        cached_store=not args.plain_store,
        scenarios=scenarios,
        threads=args.threads if args.jobs == 1 else 1,
        store_root=args.store_root,
    )
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.perf_counter()
    runs, train_s = collect(seeds, config, args.jobs)
    total_s = time.perf_counter() - started
    report(runs, config, seeds, train_s, total_s, args.trace)


def collect(
    seeds: list[int], config: RunConfig, jobs: int
) -> tuple[list[ScenarioRun], list[float]]:
    runs, train_s = [], []
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = pool.map(run_seed, seeds, [config] * len(seeds))
            for seed, (mine, seconds) in zip(seeds, results, strict=True):
                print(f"seed {seed}: done (champion {seconds:.1f} s)", flush=True)
                runs += mine
                train_s.append(seconds)
        return runs, train_s
    for seed in seeds:
        began = time.perf_counter()
        mine, seconds = run_seed(seed, config)
        print(
            f"seed {seed}: {time.perf_counter() - began:.1f} s (champion {seconds:.1f} s)",
            flush=True,
        )
        runs += mine
        train_s.append(seconds)
    return runs, train_s


def report(runs, config: RunConfig, seeds, train_s, total_s, trace_all: bool) -> None:
    from components.core.problem import load_problem
    from components.monitoring.verdict import CONDITIONS

    checks = list(CONDITIONS)
    print(
        f"\n{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), {config.rows_per_day:,} rows a day, "
        f"{config.history_days} days of history, {config.days} monitored daily windows, drift "
        f"from window {config.onset} (none: no drift), labels {config.label_delay} days late, "
        f"quality fraction {config.quality_fraction:g}\n"
    )
    for scenario in config.scenarios:
        print(f"### {scenario}\n")
        print(scenario_table(runs, scenario, config, checks) + "\n")
    print("### targets\n")
    print("| scenario | target | met | found |\n|---|---|---|---|")
    for scenario, target, met, found in targets(runs, config):
        print(f"| {scenario} | {target} | {'met' if met else 'NOT met'} | {found} |")
    print("\n### margins\n")
    print(margins(runs, config, load_problem(config.problem)) + "\n")
    for scenario in config.scenarios:
        mine = [r for r in runs if r.scenario == scenario]
        shown = mine[:1] if trace_all else [r for r in mine if _failing(r, config)][:1]
        for run in shown:
            print(trace(run, config) + "\n")
    windows = sum(len(r.windows) for r in runs)
    stages = {s: sum(r.stage_s.get(s, 0.0) for r in runs) for s in STAGES}
    per_window = ", ".join(f"{s} {1000 * t / windows:.0f} ms" for s, t in stages.items())
    print(
        f"total {total_s:.1f} s; champions {sum(train_s):.1f} s ({len(train_s)}); "
        f"{windows} windows: {sum(stages.values()) / windows:.2f} s a window ({per_window})"
    )


if __name__ == "__main__":
    main()
