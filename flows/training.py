"""Training, evaluation, the gate and registration as Prefect flows (stages 3 and 4).

`training` reads a snapshot, splits it by event time, tunes on validation (`tune` runs each
trial as a Prefect task on the flow's task runner), trains the final model, cross-validates
it on the training rows, evaluates it on the test rows next to the baseline and the current
champion, asks the gate, and registers the version: rejected, or promoted to champion.
The test rows are never used to choose hyperparameters, thresholds or boosting rounds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field

from components.core import keys, provenance
from components.core.problem import ProblemSpec, load_problem
from components.core.settings import Settings
from components.core.store import Store, store_from_settings
from components.data.snapshot import NoSnapshotError, latest_snapshot_id, read_snapshot
from components.model import evaluation, gate, plots, training, tuning
from components.model.model_card import ModelCard, render_html, render_markdown
from components.model.registry import Registry
from flows.progress import report_progress
from flows.tasks import task

INTENDED_USE = (
    "Rank customers of this subscription business by their risk of the outcome in the "
    "problem definition, so that a person or a campaign can act on the riskiest first."
)
LIMITATIONS = [
    "Trained on one snapshot; its quality degrades as customers, prices or products drift: "
    "monitor it and retrain.",
    "Probabilities are calibrated only as well as the calibration plot shows.",
    "Slices with few rows have wide uncertainty; do not read small differences there.",
]


class TrainingParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    snapshot_id: str | None = Field(None, description="None: the newest snapshot")
    trials: int = Field(20, ge=0, description="Tuning trials; 0 trains the defaults only")
    timeout_s: float | None = Field(None, gt=0, description="Stop starting trials after this")
    concurrency: int = Field(2, ge=1, description="Trials running at once")
    trial_threads: int = Field(1, ge=0, description="XGBoost threads per trial")
    threads: int = Field(0, ge=0, description="XGBoost threads for the final model; 0 = all")
    cv_folds: int = Field(5, ge=0, description="0 skips cross-validation")
    seed: int = 42
    promote: bool = Field(True, description="Promote to champion when the gate passes")
    store: str | None = None
    actor: str = "training-flow"


class TrainingResult(BaseModel):
    version: str
    snapshot_id: str
    promoted: bool
    gate_passed: bool
    gate_reasons: list[str]
    metrics: dict[str, float]
    champion_before: str | None


@task
def load_spec(path: Path) -> ProblemSpec:
    return load_problem(path)


@task
def resolve_snapshot(store: Store, spec: ProblemSpec, snapshot_id: str | None) -> str:
    chosen = snapshot_id or latest_snapshot_id(store, spec.name)
    if chosen is None:
        raise NoSnapshotError(
            f"{store.uri('snapshots/' + spec.name)}: no snapshot for problem '{spec.name}' yet; "
            "run `mlops data prep` first"
        )
    return chosen


@task
def split(store: Store, spec: ProblemSpec, snapshot_id: str) -> training.Split:
    frame = read_snapshot(store, spec.name, snapshot_id)
    parts = training.split_by_time(frame, spec)
    get_run_logger().info("snapshot %s split by time: %s", snapshot_id, parts.sizes)
    return parts


@task
def run_trial(
    number: int,
    parts: training.Split,
    spec: ProblemSpec,
    params: training.TrainParams,
    seed: int,
    nthread: int,
) -> tuning.TrialResult:
    result = tuning.run_trial(
        number, parts.train, parts.validation, spec, params, seed=seed, nthread=nthread
    )
    get_run_logger().info(
        "trial %d: %s = %.4f on validation (%d rounds)",
        number,
        spec.metric.primary,
        result.score,
        result.best_iteration + 1,
    )
    return result


def tune(parts: training.Split, spec: ProblemSpec, params: TrainingParams) -> training.TrainParams:
    """TPE search over XGBoost's parameters, scored on the validation rows. Each trial is a
    task submitted to the flow's task runner, so trials run concurrently there (threads by
    default; a DaskTaskRunner fans them out on a cluster). Not a subflow: a subflow's
    parameters are sent to the API, and these include the data."""
    base = training.TrainParams()
    if params.trials == 0:
        return base
    study = tuning.make_study(spec, params.seed)
    deadline = time.monotonic() + params.timeout_s if params.timeout_s else None
    done = 0
    while done < params.trials and (deadline is None or time.monotonic() < deadline):
        batch = [study.ask() for _ in range(min(params.concurrency, params.trials - done))]
        futures = [
            run_trial.submit(
                t.number,
                quote(parts),
                spec,
                tuning.suggest_params(t, base),
                params.seed,
                params.trial_threads,
            )
            for t in batch
        ]
        for trial, future in zip(batch, futures, strict=True):
            study.tell(trial, future.result().score)
            done += 1
            report_progress("tuning", done, params.trials, study.best_value)
    get_run_logger().info(
        "best of %d trials: %s = %.4f", done, spec.metric.primary, study.best_value
    )
    return tuning.best_params(study, base)


@task
def train_final(
    parts: training.Split, spec: ProblemSpec, best: training.TrainParams, params: TrainingParams
) -> training.TrainedModel:
    model = training.train_model(
        parts.train, parts.validation, spec, best, seed=params.seed, nthread=params.threads
    )
    get_run_logger().info("final model: %d rounds", model.best_iteration + 1)
    return model


@task
def cross_validate(
    parts: training.Split,
    spec: ProblemSpec,
    best: training.TrainParams,
    rounds: int,
    params: TrainingParams,
) -> dict | None:
    if params.cv_folds == 0:
        return None
    return training.cross_validate(
        parts.train,
        spec,
        best,
        rounds,
        folds=params.cv_folds,
        seed=params.seed,
        nthread=params.threads,
    )


@task
def evaluate(parts: training.Split, spec: ProblemSpec, model: training.TrainedModel) -> dict:
    """Threshold from validation; metrics of model and baseline on test; slices."""
    threshold = None
    if spec.is_classification:
        scores = training.predict(model.booster, parts.validation, spec)
        threshold = evaluation.choose_threshold(
            training.target(parts.validation, spec), scores, spec.metric.threshold
        )
    y_test = training.target(parts.test, spec)
    test_scores = training.predict(model.booster, parts.test, spec)
    baseline = evaluation.baseline_scores(spec, training.target(parts.train, spec), len(y_test))
    return {
        "threshold": threshold,
        "metrics": evaluation.metrics_for(spec, y_test, test_scores, threshold),
        "baseline": evaluation.metrics_for(spec, y_test, baseline, threshold),
        "slices": evaluation.slice_metrics(
            spec, parts.test, y_test, test_scores, threshold
        ).to_dict("records"),
        "test_scores": test_scores,
    }


@task
def evaluate_champion(
    registry: Registry, parts: training.Split, spec: ProblemSpec
) -> tuple[str | None, dict | None]:
    """The current champion's metrics on the same test rows, or (None, None)."""
    champion = registry.alias("champion")
    if champion is None:
        return None, None
    booster = training.load_model(registry.read_file(champion, "model.ubj"))
    threshold = registry.metadata(champion).get("threshold")
    scores = training.predict(booster, parts.test, spec)
    return champion, evaluation.metrics_for(
        spec, training.target(parts.test, spec), scores, threshold
    )


@task
def decide(spec: ProblemSpec, result: dict, champion_metrics: dict | None) -> gate.Decision:
    decision = gate.decide_promotion(spec, result["metrics"], result["baseline"], champion_metrics)
    logger = get_run_logger()
    for reason in decision.reasons:
        logger.info("gate %s", reason)
    return decision


@task
def register(
    registry: Registry,
    store: Store,
    spec: ProblemSpec,
    snapshot_id: str,
    parts: training.Split,
    model: training.TrainedModel,
    best: training.TrainParams,
    cv: dict | None,
    result: dict,
    champion: tuple[str | None, dict | None],
    decision: gate.Decision,
    params: TrainingParams,
) -> tuple[str, ModelCard, dict[str, bytes]]:
    """Write the immutable version (model, card, plots, profile, metadata), then its status."""
    importance = training.feature_importance(model.booster, spec)
    y_test = training.target(parts.test, spec)
    figures = plots.render_plots(
        spec, y_test, result["test_scores"], result["threshold"], importance
    )
    card = ModelCard(
        problem=spec.name,
        description=spec.description,
        task=spec.task,
        primary_metric=spec.metric.primary,
        version="pending",
        status="champion"
        if decision.passed and params.promote
        else ("challenger" if decision.passed else "rejected"),
        created_at=datetime.now(UTC).isoformat(),
        code_version=provenance.code_version(),
        snapshot_id=snapshot_id,
        rows=parts.sizes,
        params={**best.model_dump(), "best_iteration": model.best_iteration, "seed": params.seed},
        metrics=result["metrics"],
        cv=cv and {k: cv[k] for k in ("metric", "mean", "std", "folds")},
        baseline=result["baseline"],
        champion=champion[1],
        threshold=result["threshold"],
        slices=result["slices"],
        gate_passed=decision.passed,
        gate_reasons=decision.reasons,
        intended_use=INTENDED_USE,
        limitations=LIMITATIONS,
    )
    profile_key = keys.snapshot(spec.name, snapshot_id, "profile.bin")
    files = {
        "model.ubj": training.model_bytes(model.booster),
        "problem.json": spec.model_dump_json(indent=2).encode(),
        "reference_profile.bin": store.get_bytes(profile_key),
        **{f"plots/{name}": png for name, png in figures.items()},
    }
    metadata = {
        "snapshot_id": snapshot_id,
        "split": parts.sizes,
        "split_times": _split_times(parts, spec),
        "params": best.model_dump(),
        "xgboost_params": training.xgb_params(spec, best, seed=params.seed, nthread=0),
        "best_iteration": model.best_iteration,
        "threshold": result["threshold"],
        "metrics": result["metrics"],
        "baseline": result["baseline"],
        "champion": {"version": champion[0], "metrics": champion[1]},
        "cv": cv,
        "slices": result["slices"],
        "feature_importance": importance,
        "features": spec.input_features,
        "gate": {"passed": decision.passed, "reasons": decision.reasons},
        "code_version": card.code_version,
        "packages": provenance.package_versions(),
        "trials": params.trials,
    }

    # The card names its version, so it is rendered once the registry has reserved the id.
    def with_card(version: str) -> dict[str, bytes]:
        named = card.model_copy(update={"version": version})
        return {**files, **_card_files(named, figures)}

    version = registry.register(
        with_card,
        metadata,
        rejected=not decision.passed,
        reason="; ".join(decision.failures) or "passed the gate",
    )
    return version, card.model_copy(update={"version": version}), figures


def _card_files(card: ModelCard, figures: dict[str, bytes]) -> dict[str, bytes]:
    return {
        "model_card.md": render_markdown(card, sorted(figures)).encode(),
        "model_card.html": render_html(card, figures).encode(),
    }


def _split_times(parts: training.Split, spec: ProblemSpec) -> dict[str, list[str]]:
    column = spec.event_time_column
    return {
        name: [frame[column].min().isoformat(), frame[column].max().isoformat()]
        for name, frame in (
            ("train", parts.train),
            ("validation", parts.validation),
            ("test", parts.test),
        )
    }


@task
def promote(
    registry: Registry, version: str, decision: gate.Decision, params: TrainingParams
) -> bool:
    if not decision.passed:
        get_run_logger().warning(
            "%s rejected by the gate: %s", version, "; ".join(decision.failures)
        )
        return False
    registry.set_alias("challenger", version, actor=params.actor, reason="passed the gate")
    if not params.promote:
        return False
    # The last reason is the comparison with the champion (or the note that there was none).
    registry.promote(version, actor=params.actor, reason=decision.reasons[-1])
    get_run_logger().info("%s is the new champion", version)
    return True


@task
def publish(spec: ProblemSpec, version: str, card: ModelCard, figures: dict[str, bytes]) -> None:
    create_markdown_artifact(
        markdown=render_markdown(card, sorted(figures)),
        key=f"model-card-{spec.name}",
        description=f"Model card of {spec.name} {version}",
    )
    rows = [{"model": "candidate", **card.metrics}, {"model": "baseline", **card.baseline}]
    if card.champion:
        rows.append({"model": "champion", **card.champion})
    create_table_artifact(
        table=pd.DataFrame(rows).round(4).to_dict("records"),
        key=f"metrics-{spec.name}",
        description=f"Test metrics of {spec.name} {version}",
    )


@flow(name="training")
def train(params: TrainingParams | None = None) -> TrainingResult:
    """Train, evaluate, gate and register a model for the problem's newest snapshot."""
    params = params or TrainingParams()
    store = store_from_settings(Settings(), params.store)
    spec = load_spec(params.problem)
    registry = Registry(store, spec.name)
    snapshot_id = resolve_snapshot(store, spec, params.snapshot_id)
    parts = split(store, spec, snapshot_id)
    best = tune(parts, spec, params)
    model = train_final(parts, spec, best, params)
    cv = cross_validate(parts, spec, best, model.best_iteration + 1, params)
    result = evaluate(parts, spec, model)
    champion = evaluate_champion(registry, parts, spec)
    decision = decide(spec, result, champion[1])
    version, card, figures = register(
        registry,
        store,
        spec,
        snapshot_id,
        parts,
        model,
        best,
        cv,
        result,
        champion,
        decision,
        params,
    )
    promoted = promote(registry, version, decision, params)
    publish(spec, version, card, figures)
    return TrainingResult(
        version=version,
        snapshot_id=snapshot_id,
        promoted=promoted,
        gate_passed=decision.passed,
        gate_reasons=decision.reasons,
        metrics=result["metrics"],
        champion_before=champion[0],
    )
