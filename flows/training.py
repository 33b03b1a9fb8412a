"""Training, evaluation, the gate and registration as Prefect flows (stages 3 and 4).

`training` reads a snapshot, splits it by event time, tunes on validation (`tune` runs each
trial as a Prefect task on the flow's task runner), trains the final model, cross-validates
it on the training rows, evaluates it on the test rows next to the baseline and the current
champion, asks the gate, and registers the version: rejected, or promoted to champion.
The test rows are never used to choose hyperparameters, thresholds or boosting rounds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field

from components.core import keys
from components.core.problem import ProblemSpec, load_problem
from components.core.settings import Settings
from components.core.store import Store, store_from_settings
from components.data.snapshot import NoSnapshotError, latest_snapshot_id, read_snapshot
from components.model import assessment, gate, registration, training, tuning
from components.model.model_card import render_markdown
from components.model.registry import Registry
from flows.progress import report_progress
from flows.tasks import task


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
        where = store.uri(keys.snapshots_prefix(spec.name))
        raise NoSnapshotError(
            f"{where}: no snapshot for problem '{spec.name}' yet; run `mlops data prep` first"
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
        number,
        parts.train,
        parts.validation,
        spec,
        params,
        seed=seed,
        nthread=nthread,
        weights=parts.train_weights(),
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
        parts.train,
        parts.validation,
        spec,
        best,
        seed=params.seed,
        nthread=params.threads,
        weights=parts.train_weights(),
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
def evaluate(
    parts: training.Split, spec: ProblemSpec, model: training.TrainedModel
) -> assessment.Evaluation:
    return assessment.evaluate_candidate(parts, spec, model)


@task
def evaluate_champion(
    registry: Registry, parts: training.Split, spec: ProblemSpec
) -> assessment.ChampionEvaluation | None:
    return assessment.evaluate_champion(registry, parts, spec)


@task
def decide(
    spec: ProblemSpec,
    result: assessment.Evaluation,
    champion: assessment.ChampionEvaluation | None,
) -> gate.Decision:
    decision = gate.decide_promotion(
        spec, result.metrics, result.baseline, champion.metrics if champion else None
    )
    logger = get_run_logger()
    for reason in decision.reasons:
        logger.info("gate %s", reason)
    return decision


@task
def register(
    registry: Registry,
    store: Store,
    spec: ProblemSpec,
    candidate: registration.Candidate,
    decision: gate.Decision,
    params: TrainingParams,
) -> registration.Registered:
    """Write the immutable version (model, card, plots, profile, metadata), then its status."""
    return registration.register_version(
        registry, store, spec, candidate, decision, promote=params.promote
    )


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
def publish(spec: ProblemSpec, registered: registration.Registered) -> None:
    card, version = registered.card, registered.version
    create_markdown_artifact(
        markdown=render_markdown(card, sorted(registered.figures)),
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
    decision = decide(spec, result, champion)
    candidate = registration.Candidate(
        snapshot_id=snapshot_id,
        parts=parts,
        model=model,
        params=best,
        seed=params.seed,
        trials=params.trials,
        cv=cv,
        evaluation=result,
        champion=champion,
    )
    registered = register(registry, store, spec, candidate, decision, params)
    promoted = promote(registry, registered.version, decision, params)
    publish(spec, registered)
    return TrainingResult(
        version=registered.version,
        snapshot_id=snapshot_id,
        promoted=promoted,
        gate_passed=decision.passed,
        gate_reasons=decision.reasons,
        metrics=result.metrics,
        champion_before=champion.version if champion else None,
    )
