"""Whether the retraining loop (issue 17) does its job on the generator's drift scenarios,
with the real components and the real Prefect flow, over several seeds.

    .venv/bin/python benchmarks/retraining.py [--seeds 3] [--scenarios concept,quality,none]

Per seed: generate `history-days + days + eval-days` days of churn rows for each scenario
(the rows before the drift day are identical, which is checked), train a champion (v1) as
`mlops train --trials 0` does on the rows labelled by the first monitored day, registered
and promoted at that simulated time, and copy that store once per scenario. The problem
file is the repository's with `label_delay_days` set to `--label-delay` and its alerts sent
to a JSONL file in the temp folder (`--set key=value` changes more, e.g.
`--set retraining.min_new_labels=0`).

Then, per scenario, day by day over the `days` monitored days, in a plain LocalStore (the
flow opens its own store on the same folder, so nothing may be cached in this process):
the day's traffic goes through the service's contract (`serve_request` of
monitoring_efficacy.py) scored by the *current* champion's `Predictor`, whose prediction
ids carry the problem's secret so that labels join across versions; capture is flushed;
the labels due by the end of the day are recorded as feedback; the day is profiled and
monitored (`monitor_window`, which stores the report the policy reads); then the real flow
`flows/retraining.py::retrain` runs at the end of the day (`now`), asks the policy and
retrains, gates, shadows and promotes only when told to. The last `eval-days` days are
never served: they are the future traffic on which, for `concept`, three models are scored
(ROC AUC): v1 (before retraining), the final champion (after), and a model trained as
`mlops train` would on the post-drift rows alone that were labelled when the final champion
was promoted.

Targets, each over every seed:

- concept: the final champion's ROC AUC on the future rows within 0.01 of the post-drift-only
  model's, and above v1's;
- quality: no promoted version's snapshot holds a row that the generator corrupted;
- none: no retraining asked by a drift or performance alert (scheduled ones and those on
  new labelled rows are counted by reason).

Printed: one table per scenario (mean and min..max over seeds), the targets met or not,
the day-by-day trace of one seed that missed a target (`--trace`: the first seed of every
scenario) and the run time. Days are counted from the drift onset (day 0 = onset).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from monitoring_efficacy import RunConfig  # noqa: E402  (benchmarks/ is on the path above)

SCENARIOS = ("concept", "quality", "none")
STAGES = ("serve", "feedback", "profile", "monitor", "policy", "retraining")
# (text in a policy reason, short name): how the policy words each reason to retrain
REASONS = (
    ("drift-detected", "drift"),
    ("performance-degraded", "performance"),
    ("scheduled", "schedule"),
    ("new labelled rows", "labels"),
    ("asked by hand", "by hand"),
)
BLOCKERS = (
    ("data-quality incident", "quality"),
    ("cooling down", "cooldown"),
    ("retrainings in the last 7 days", "weekly cap"),
)
AUC_TOLERANCE = 0.01


@dataclass(frozen=True)
class Config(RunConfig):
    eval_days: int = 10
    trials: int = 0
    scenarios: tuple[str, ...] = SCENARIOS
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def generated_days(self) -> int:
        return self.history_days + self.days + self.eval_days


@dataclass
class Day:
    """One simulated day: who served it, what monitoring said, what the flow did."""

    index: int
    served_by: str
    status: str
    conditions: list[str]
    retrain: bool
    reasons: list[str]
    blocked: list[str]
    outcome: str | None
    version: str | None
    gate_reasons: list[str]
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    shadow: dict[str, Any] | None


@dataclass
class Run:
    seed: int
    scenario: str
    days: list[Day]
    figures: dict[str, float | None] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)


# --- one seed ------------------------------------------------------------------------------


def run_seeds(seeds: list[int], config: Config) -> tuple[list[Run], float]:
    """Every seed and scenario in this process, under one temporary Prefect server; and the
    seconds the server took to start."""
    from prefect.testing.utilities import prefect_test_harness

    started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        startup_s = time.perf_counter() - started
        runs = []
        for seed in seeds:
            began = time.perf_counter()
            runs += run_seed(seed, config)
            print(f"seed {seed}: {time.perf_counter() - began:.0f} s", flush=True)
    return runs, startup_s


def run_seed(seed: int, config: Config) -> list[Run]:
    from components.core.store import LocalStore
    from components.data import datagen

    generated = {s: datagen.generate(_generator(config, seed, s)) for s in {"none", *SCENARIOS}}
    _check_same_history(generated, _generator(config, seed, "none").drift_start)
    runs = []
    with tempfile.TemporaryDirectory(prefix=f"retraining-{seed}-", dir=config.store_root) as tmp:
        base = Path(tmp) / "base"
        base_spec = write_problem(base, config)
        train_champion(LocalStore(base / "store"), base_spec, generated["none"].frame, config, seed)
        for scenario in config.scenarios:
            folder = Path(tmp) / scenario
            shutil.copytree(base / "store", folder / "store")
            problem = write_problem(folder, config)
            runs.append(
                Simulation(folder, problem, generated[scenario], config, seed, scenario).run()
            )
            shutil.rmtree(folder)
    return runs


def _generator(config: Config, seed: int, scenario: str):
    from components.data import datagen

    return datagen.GeneratorConfig(
        rows=config.rows_per_day * config.generated_days,
        days=config.generated_days,
        start=config.start,
        seed=seed,
        scenario=scenario,
        drift_day=config.drift_day,
        label_delay_days=config.label_delay,
        quality_fraction=config.quality_fraction,
    )


def _check_same_history(generated: dict, drift_start: datetime) -> None:
    from monitoring_efficacy import _check_same_history as check

    check({s: g.frame for s, g in generated.items()}, drift_start)


def write_problem(folder: Path, config: Config) -> Path:
    """The repository's problem file with the benchmark's label delay, alerts to a JSONL
    file in ``folder`` and the ``--set`` overrides; returns its path."""
    import yaml

    from components.core.problem import load_problem

    doc = json.loads(load_problem(config.problem).model_dump_json())
    doc["label_delay_days"] = config.label_delay
    doc["alerts"]["channels"] = [{"type": "jsonl", "path": str(folder / "alerts.jsonl")}]
    for dotted, value in config.overrides:
        *parents, name = dotted.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[name] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "problem.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    load_problem(path)  # an override the spec refuses fails here, before any work
    return path


def train_champion(store, problem: Path, frame, config: Config, seed: int) -> str:
    """v1: the rows labelled by the first monitored day, snapshotted, trained with the
    defaults, gated, registered and promoted, all at that simulated time (the policy's
    schedule and label count start from it)."""
    from components.core.problem import load_problem
    from components.data import datagen, profiling
    from components.data.snapshot import write_snapshot
    from components.data.validation import validate_frame
    from components.model import assessment, gate, registration, training
    from components.model.registry import Registry

    spec = load_problem(problem)
    now = config.monitored_day(0)
    valid = validate_frame(datagen.training_rows(frame, now), spec).valid
    manifest = write_snapshot(
        store,
        spec,
        valid,
        source=f"generated seed {seed}",
        profile=profiling.profile_frame(valid[list(spec.features)]),
        quarantined_rows=0,
        quarantine_key=None,
        validation_key=None,
        now=now,
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
        manifest.snapshot_id, parts, model, params, seed, 0, None, result, None
    )
    registry = Registry(store, spec.name, clock=lambda: now)
    version = registration.register_version(
        registry, store, spec, candidate, decision, promote=True, clock=lambda: now
    ).version
    registry.set_alias("challenger", version, actor="benchmark", reason="gate")
    registry.promote(version, actor="benchmark", reason=decision.reasons[-1])
    return version


# --- one scenario ----------------------------------------------------------------------------


class Simulation:
    """One scenario of one seed, day by day, in a plain LocalStore on ``folder/store``: the
    flow opens its own LocalStore there, so this process caches nothing it reads."""

    def __init__(self, folder: Path, problem: Path, generated, config: Config, seed, scenario):
        from monitoring_efficacy import _Labels

        from components.capture.buffer import Capture
        from components.core.problem import load_problem
        from components.core.store import LocalStore
        from components.model.registry import Registry
        from components.serving.contract import Validator
        from components.serving.ids import PredictionIds, problem_secret

        self.folder, self.problem, self.generated = folder, problem, generated
        self.config, self.seed, self.scenario = config, seed, scenario
        self.spec = load_problem(problem)
        self.store = LocalStore(folder / "store")
        self.now = config.monitored_day(0)
        self.registry = Registry(self.store, self.spec.name, clock=lambda: self.now)
        self.new_ids = PredictionIds(problem_secret(self.store, self.spec.name)).new_many
        self.validator = Validator(self.spec)
        self.capture = Capture(self.store, self.spec, worker_id="benchmark")
        self.labels = _Labels()
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.predictor = None

    def run(self) -> Run:
        from components.data import datagen

        batches = dict(datagen.daily_batches(self.generated.frame))
        days = []
        for index in range(self.config.days):
            start = self.config.monitored_day(index)
            self.now = start
            champion = self.registry.alias("champion")
            with _timed(self.seconds, "serve"):
                self.serve_day(batches[start.date()], champion)
            self.now = start + timedelta(days=1)
            report, result = self.close_day(start)
            days.append(_day(index - self.config.onset, champion, report, result))
        self.capture.close()
        run = Run(self.seed, self.scenario, days, stage_s=self.seconds)
        run.figures = outcomes(run, self)
        return run

    def serve_day(self, day, champion: str) -> None:
        """The day's requests through the contract, scored by ``champion`` (reloaded when it
        changed), captured and flushed; their labels queued."""
        from monitoring_efficacy import _requests, serve_request

        if self.predictor is None or self.predictor.version != champion:
            self.predictor = self.load_predictor(champion)
        for rows in _requests(day, self.config.requests_per_day):
            self.labels.add(serve_request(rows, self.validator, self.predictor, self.capture))
        self.capture.flush()

    def load_predictor(self, version: str):
        from components.model import training
        from components.serving.contract import Predictor

        booster = training.load_model(self.registry.read_file(version, "model.ubj"), nthread=1)
        return Predictor(
            self.spec,
            booster,
            version=version,
            threshold=self.registry.metadata(version).get("threshold"),
            new_ids=self.new_ids,
            flag_unknown=False,
        )

    def close_day(self, start: datetime):
        """At the end of the day (``self.now``): the due labels recorded, the day profiled
        and monitored (its report stored), then the retraining flow at that time."""
        from components.monitoring.monitor import champion_references, monitor_window
        from components.monitoring.profile_job import profile_captures
        from flows.retraining import RetrainingParams, retrain

        end = self.now
        with _timed(self.seconds, "feedback"):
            self.labels.record_until(self.store, self.spec, end)
        with _timed(self.seconds, "profile"):
            profile_captures(self.store, self.spec, window="1d", since=start, until=end)
        with _timed(self.seconds, "monitor"):
            references = champion_references(self.registry, self.spec)
            report, _ = monitor_window(self.store, references, self.spec, start, clock=self.clock)
        began = time.perf_counter()
        params = RetrainingParams(
            problem=self.problem,
            store=str(self.folder / "store"),
            trials=self.config.trials,
            threads=self.config.threads,
            now=end,
            seed=self.seed,
        )
        result = retrain(params)
        self.seconds["retraining" if result.retrain else "policy"] += time.perf_counter() - began
        return report, result

    def clock(self) -> datetime:
        return self.now


def _timed(seconds: dict[str, float], stage: str):
    from monitoring_efficacy import _timed as timed

    return timed(seconds, stage)


def _day(index: int, served_by: str, report, result) -> Day:
    return Day(
        index=index,
        served_by=served_by,
        status=report.status,
        conditions=sorted(report.conditions),
        retrain=result.retrain,
        reasons=list(result.reasons),
        blocked=list(result.blocked),
        outcome=result.outcome,
        version=result.version,
        gate_reasons=list(result.gate_reasons),
        metrics=dict(result.metrics),
        champion_metrics=result.champion_metrics,
        shadow=result.shadow,
    )


# --- what a run achieved -----------------------------------------------------------------------


def kinds(texts: list[str], table=REASONS) -> list[str]:
    """The short names of the reasons (or blockers) among ``texts``."""
    return [short for phrase, short in table if any(phrase in text for text in texts)]


ALERTS = {"drift-detected", "performance-degraded"}


def outcomes(run: Run, sim: Simulation) -> dict[str, float | None]:
    """The run's figures: retrainings by reason, outcomes, blocked days, first days; and
    the scenario's own (concept: ROC AUC on the future rows; quality: corrupted rows)."""
    days = run.days
    retrained = [d for d in days if d.retrain]
    out: dict[str, float | None] = {"retrainings": len(retrained)}
    for _, kind in REASONS[:4]:
        out[f"- asked on {kind}"] = sum(kind in kinds(d.reasons) for d in retrained)
    out["- before onset"] = sum(d.index < 0 for d in retrained)
    for outcome in ("promoted", "refused", "superseded"):
        out[outcome] = sum(d.outcome == outcome for d in days)
    for _, kind in BLOCKERS:
        out[f"days waiting: {kind}"] = sum(kind in kinds(d.blocked, BLOCKERS) for d in days)
    out["alert days before onset (drift/perf.)"] = sum(
        bool(ALERTS & set(d.conditions)) for d in days if d.index < 0
    )
    out["first alert (drift/perf.), day"] = _first(
        d for d in days if d.index >= 0 and ALERTS & set(d.conditions)
    )
    out["first retraining on an alert, day"] = _first(
        d for d in retrained if {"drift", "performance"} & set(kinds(d.reasons))
    )
    out["first promotion from onset, day"] = _first(
        d for d in days if d.index >= 0 and d.outcome == "promoted"
    )
    if run.scenario == "concept":
        out.update(concept_figures(run, sim))
    if run.scenario == "quality":
        out.update(quality_figures(sim))
    return out


def _first(days) -> int | None:
    return next((d.index for d in days), None)


def concept_figures(run: Run, sim: Simulation) -> dict[str, float | None]:
    """ROC AUC on the future (never served) rows of v1, of the final champion and of a
    model trained on the post-drift rows alone that were labelled when the final champion
    was promoted; and of the true P(churn | x), the ceiling."""
    from components.data import datagen

    config, spec, registry = sim.config, sim.spec, sim.registry
    frame = sim.generated.frame
    future = frame[frame[datagen.EVENT_TIME] >= config.monitored_day(config.days)]
    final = registry.alias("champion")
    promoted = [d for d in run.days if d.outcome == "promoted" and d.version == final]
    # The final champion's data was cut at the end of the day it was promoted.
    cut = config.monitored_day(promoted[-1].index + config.onset + 1) if promoted else None
    post_only, rows = post_drift_model(sim, cut or config.monitored_day(config.days))
    before = _auc(spec, future, *_version_model(registry, "v1"))
    after = _auc(spec, future, *_version_model(registry, final))
    reference = _auc(spec, future, post_only, None)
    truth = datagen.true_churn_probability(future, concept=True)
    return {
        "final champion promoted, day": promoted[-1].index if promoted else None,
        "post-drift rows labelled then": rows,
        "AUC before (v1)": before,
        "AUC after (final champion)": after,
        "AUC post-drift rows only": reference,
        "AUC true P(churn | x)": _auc_of(spec, future, truth),
        "after - post-drift only": after - reference,
        "after - before": after - before,
    }


def post_drift_model(sim: Simulation, cut: datetime):
    """What `mlops train --trials 0` makes of the post-drift rows labelled by ``cut``: split
    by time, default parameters, early stopping on validation (test rows unused)."""
    from components.data import datagen
    from components.data.validation import validate_frame
    from components.model import training

    config, spec, frame = sim.config, sim.spec, sim.generated.frame
    drifted = frame[frame[datagen.EVENT_TIME] >= _generator(config, 0, "none").drift_start]
    valid = validate_frame(datagen.training_rows(drifted, cut), spec).valid
    parts = training.split_by_time(valid, spec)
    model = training.train_model(
        parts.train,
        parts.validation,
        spec,
        training.TrainParams(),
        seed=sim.seed,
        nthread=config.threads,
    )
    return model.booster, len(valid)


def _version_model(registry, version: str):
    from components.model import training

    booster = training.load_model(registry.read_file(version, "model.ubj"))
    return booster, registry.metadata(version).get("threshold")


def _auc(spec, rows, booster, threshold) -> float:
    from components.model import training

    return _auc_of(spec, rows, training.predict(booster, rows, spec), threshold)


def _auc_of(spec, rows, scores, threshold=None) -> float:
    from components.model import training
    from components.model.evaluation import metrics_for

    return metrics_for(spec, training.target(rows, spec), scores, threshold)["roc_auc"]


def quality_figures(sim: Simulation) -> dict[str, float | None]:
    """How many rows the generator corrupted end up captured, and in the snapshot of a
    promoted (or any registered) version."""
    from components.capture.readers import read_captures
    from components.data.snapshot import read_snapshot

    spec, store, registry = sim.spec, sim.store, sim.registry
    corrupted = set(sim.generated.corruptions[spec.id_column])
    promoted = {e.to_version for e in registry.history("champion") if e.to_version}
    registered = {v.version for v in registry.versions()}

    def inside(version: str) -> int:
        snapshot = registry.metadata(version)["snapshot_id"]
        return int(read_snapshot(store, spec.name, snapshot)[spec.id_column].isin(corrupted).sum())

    captured = read_captures(store, spec.name, None, None)
    return {
        "corrupted rows (generated)": len(corrupted),
        "corrupted rows captured": int(captured[spec.id_column].isin(corrupted).sum()),
        "versions promoted": len(promoted),
        "corrupted rows in a promoted snapshot": sum(inside(v) for v in promoted),
        "corrupted rows in any version's snapshot": sum(inside(v) for v in registered),
    }


# --- summary ---------------------------------------------------------------------------------


def targets(runs: list[Run], config: Config) -> list[tuple[str, str, bool, str]]:
    """(scenario, target, met, what was found) for each scenario that ran."""
    out = []
    by = {s: [r for r in runs if r.scenario == s] for s in config.scenarios}
    if by.get("concept"):
        gaps = [r.figures["after - post-drift only"] for r in by["concept"]]
        gains = [r.figures["after - before"] for r in by["concept"]]
        ok = [g >= -AUC_TOLERANCE and h > 0 for g, h in zip(gaps, gains, strict=True)]
        out.append(
            (
                "concept",
                f"after within {AUC_TOLERANCE} of post-drift only, and above before",
                all(ok),
                f"{sum(ok)} of {len(ok)} seeds; after - post-drift only {_list(gaps)}; "
                f"after - before {_list(gains)}",
            )
        )
    if by.get("quality"):
        bad = [r.figures["corrupted rows in a promoted snapshot"] for r in by["quality"]]
        waits = [r.figures["days waiting: quality"] for r in by["quality"]]
        out.append(
            (
                "quality",
                "no promoted version trained on a corrupted row",
                not any(bad),
                f"corrupted rows in promoted snapshots {_list(bad)}; days the policy waited "
                f"for clean data {_list(waits)}",
            )
        )
    if by.get("none"):
        alerted = [
            r.figures["- asked on drift"] + r.figures["- asked on performance"] for r in by["none"]
        ]
        counts = ", ".join(
            f"{kind} {_list([r.figures[f'- asked on {kind}'] for r in by['none']])}"
            for _, kind in REASONS[:4]
        )
        out.append(
            (
                "none",
                "no retraining asked by a drift or performance alert",
                not any(alerted),
                f"retrainings asked on {counts}",
            )
        )
    return out


def scenario_table(runs: list[Run], scenario: str) -> str:
    mine = [r for r in runs if r.scenario == scenario]
    seeds = ", ".join(str(r.seed) for r in mine)
    lines = [f"| figure | mean | min..max | seeds {seeds} |", "|---|---|---|---|"]
    for name in mine[0].figures:
        values = [r.figures[name] for r in mine]
        found = [v for v in values if v is not None]
        if found:
            spread = f"{_number(min(found))}..{_number(max(found))}"
            mean = _number(statistics.fmean(found))
            if len(found) < len(values):
                mean += f" ({len(values) - len(found)} never)"
        else:
            spread, mean = "-", "never"
        lines.append(f"| {name} | {mean} | {spread} | {_list(values)} |")
    return "\n".join(lines)


def _number(value) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{value:g}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"


def _list(values) -> str:
    return ", ".join(_number(v) for v in values)


def trace(run: Run) -> str:
    """Day by day (day 0 = onset): who served, what monitoring raised, what the flow did."""
    lines = [
        f"trace: {run.scenario}, seed {run.seed}",
        "| day | served by | status | alerts | policy | asked on | waiting for | outcome | "
        "AUC challenger / champion | shadow |",
        "|---" * 10 + "|",
    ]
    for d in run.days:
        policy = "retrain" if d.retrain else ("wait" if d.blocked else "-")
        auc = ""
        if d.metrics:
            champion = (d.champion_metrics or {}).get("roc_auc")
            auc = f"{d.metrics['roc_auc']:.4f} / {_number(champion)}"
        shadow = ""
        if d.shadow and d.shadow.get("changed_labels") is not None:
            shadow = f"{d.shadow['changed_labels']:.1%} labels change"
        outcome = f"{d.version} {d.outcome}" if d.outcome else ""
        if d.outcome == "refused":
            failed = [r.removeprefix("FAIL: ") for r in d.gate_reasons if r.startswith("FAIL")]
            outcome += f" ({'; '.join(failed)[:160]})" if failed else ""
        cells = [
            f"{d.index:+d}",
            d.served_by,
            d.status,
            ", ".join(d.conditions),
            policy,
            ", ".join(kinds(d.reasons)),
            ", ".join(kinds(d.blocked, BLOCKERS)),
            outcome,
            auc,
            shadow,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _missed(run: Run) -> bool:
    f = run.figures
    if run.scenario == "concept":
        return f["after - post-drift only"] < -AUC_TOLERANCE or f["after - before"] <= 0
    if run.scenario == "quality":
        return bool(f["corrupted rows in a promoted snapshot"])
    return bool(f["- asked on drift"] or f["- asked on performance"])


# --- main ------------------------------------------------------------------------------------


def _default_root() -> str | None:
    from monitoring_efficacy import _default_root as default

    return default()


def _override(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected key.path=value")
    return key.strip(), yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--rows-per-day", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30, help="monitored days")
    parser.add_argument("--onset", type=int, default=15, help="days before the drift")
    parser.add_argument("--history-days", type=int, default=60, help="days before monitoring")
    parser.add_argument("--eval-days", type=int, default=10, help="future days, never served")
    parser.add_argument("--label-delay", type=int, default=7, help="days until a label arrives")
    parser.add_argument("--quality-fraction", type=float, default=0.02)
    parser.add_argument("--trials", type=int, default=0, help="the flow's tuning trials")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--set", dest="overrides", type=_override, action="append", default=[],
        help="change the problem file: key.path=value (YAML value), e.g. "
        "retraining.min_new_labels=0",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="processes, each its own server")
    parser.add_argument("--threads", type=int, default=0, help="XGBoost threads; 0: all")
    parser.add_argument("--store-root", default=_default_root(), help="temp stores go here")
    parser.add_argument("--trace", action="store_true", help="trace every scenario's seed")
    args = parser.parse_args()

    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if not 0 < args.onset < args.days:
        parser.error(f"--onset {args.onset} must lie between 0 and --days {args.days}")
    config = Config(
        rows_per_day=args.rows_per_day,
        history_days=args.history_days,
        days=args.days,
        onset=args.onset,
        label_delay=args.label_delay,
        quality_fraction=args.quality_fraction,
        scenarios=scenarios,
        threads=args.threads if args.jobs == 1 else 1,
        store_root=args.store_root,
        eval_days=args.eval_days,
        trials=args.trials,
        overrides=tuple(args.overrides),
    )
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.perf_counter()
    runs, startup_s = collect(seeds, config, args.jobs)
    report(runs, config, seeds, startup_s, time.perf_counter() - started, args.trace)


def collect(seeds: list[int], config: Config, jobs: int) -> tuple[list[Run], list[float]]:
    """The runs of every seed: in this process, or spread over ``jobs`` processes (each
    with its own Prefect server); and each server's start-up seconds."""
    if jobs <= 1:
        runs, startup = run_seeds(seeds, config)
        return runs, [startup]
    groups = [seeds[i::jobs] for i in range(jobs) if seeds[i::jobs]]
    runs, startups = [], []
    with ProcessPoolExecutor(len(groups)) as pool:
        for mine, startup in pool.map(run_seeds, groups, [config] * len(groups)):
            runs += mine
            startups.append(startup)
    return sorted(runs, key=lambda r: (r.seed, config.scenarios.index(r.scenario))), startups


def report(runs, config: Config, seeds, startup_s, total_s, trace_all: bool) -> None:
    from components.core.problem import load_problem

    with tempfile.TemporaryDirectory() as tmp:
        policy = load_problem(write_problem(Path(tmp), config)).retraining
    print(
        f"\n{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), {config.rows_per_day:,} rows a day, "
        f"{config.history_days} days of history, {config.days} monitored days, drift from day "
        f"{config.onset} (none: no drift; day 0 below = onset), labels {config.label_delay} "
        f"days late, {config.eval_days} future days scored, {config.trials} tuning trials\n"
        f"policy: {policy.model_dump_json()}\n"
    )
    for scenario in config.scenarios:
        print(f"### {scenario}\n\n{scenario_table(runs, scenario)}\n")
    print("### targets\n")
    print("| scenario | target | met | found |\n|---|---|---|---|")
    for scenario, target, met, found in targets(runs, config):
        print(f"| {scenario} | {target} | {'met' if met else 'NOT met'} | {found} |")
    print()
    for scenario in config.scenarios:
        mine = [r for r in runs if r.scenario == scenario]
        shown = mine[:1] if trace_all else [r for r in mine if _missed(r)][:1]
        for run in shown:
            print(trace(run) + "\n")
    days = sum(len(r.days) for r in runs)
    stages = {s: sum(r.stage_s.get(s, 0.0) for r in runs) for s in STAGES}
    retrainings = sum(r.figures["retrainings"] for r in runs)
    per_day = ", ".join(f"{s} {t / days:.2f} s" for s, t in stages.items() if s != "retraining")
    print(
        f"total {total_s:.0f} s; Prefect server start {_list(startup_s)} s; {days} days: "
        f"{per_day}; {retrainings:g} retrainings {stages['retraining']:.0f} s "
        f"({stages['retraining'] / max(retrainings, 1):.1f} s each, the policy included)"
    )


if __name__ == "__main__":
    main()
