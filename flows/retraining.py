"""Retraining as a Prefect flow (lifecycle stages 7 and 8): wiring only, the work is in
components/retraining/.

`retrain` asks the policy whether to retrain (and prints why); if so, it builds the
retraining snapshot from the labelled production rows (holding out the most recent labelled
windows), trains a challenger with the same tuning as `mlops train`, compares it with the
champion on the held-out rows through the gate and the shadow check, registers it, and on
a pass promotes it (only if the champion is still the one it beat), then redeploys; on a
fail the champion stays and an alert carries the reasons.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import flow, get_run_logger
from prefect.events import emit_event
from pydantic import BaseModel, Field

from components.alerts.build import with_settings_channels
from components.alerts.dispatch import dispatch_alerts
from components.capture.readers import read_captures
from components.capture.windows import parse_window
from components.core import keys
from components.core.problem import ProblemSpec, load_problem
from components.core.settings import Settings
from components.core.store import Store, store_from_settings
from components.data.snapshot import read_snapshot
from components.model import assessment, gate, registration, training
from components.model.registry import ChampionChangedError, Registry
from components.monitoring.monitor import require_champion
from components.retraining import challenger, history, policy, shadow
from components.retraining.dataset import RetrainingData, build_snapshot
from components.retraining.notify import refused_alert
from flows.alerting import build_channels
from flows.limits import exclusive, promotion_limit
from flows.monitoring import alert_state_path
from flows.tasks import task
from flows.training import TrainingParams, publish, register, train_final, tune

EVENT_PROMOTED = "mlops.model.promoted"
EVENT_REFUSED = "mlops.model.promotion-refused"


class RetrainingParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    reason: str | None = Field(
        None, description="Retrain by hand, for this reason (skips the cooldown and the cap)"
    )
    trials: int = Field(20, ge=0, description="Tuning trials, as for `mlops train`")
    timeout_s: float | None = Field(None, gt=0, description="Stop starting trials after this")
    concurrency: int = Field(2, ge=1, description="Trials running at once")
    trial_threads: int = Field(1, ge=0)
    threads: int = Field(0, ge=0, description="XGBoost threads for the final model; 0 = all")
    seed: int = 42
    deploy: Literal["none", "local"] = Field(
        "none", description="Where to redeploy a promoted challenger"
    )
    workers: int = Field(2, ge=1, description="local: serving workers")
    state_file: Path | None = Field(None, description="local: the server's state file")
    store: str | None = None
    now: datetime | None = Field(None, description="The clock of a simulation; None: now")
    event: dict[str, Any] | None = Field(
        None, description="The monitoring event that started this run (deployment triggers)"
    )
    actor: str = "retraining-flow"


class RetrainingResult(BaseModel):
    problem: str
    decision: str  # the policy's decision in one line
    retrain: bool
    reasons: list[str]
    blocked: list[str]
    run: str | None = None  # the run's record in the store
    snapshot_id: str | None = None
    version: str | None = None
    gate_passed: bool | None = None
    gate_reasons: list[str] = Field(default_factory=list)
    promoted: bool = False
    outcome: str | None = None  # promoted, refused or superseded (None: no retraining)
    champion_before: str | None = None
    champion_after: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    shadow: dict[str, Any] | None = None
    deployed: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = Field(default_factory=list)


@task
def ask_policy(
    store: Store, registry: Registry, spec: ProblemSpec, champion: str, now: datetime, reason
) -> policy.Decision:
    inputs = history.policy_inputs(store, registry, spec, champion)
    decision = policy.decide(
        spec.retraining,
        inputs.signals,
        trained_at=inputs.trained_at,
        retrainings=inputs.retrainings,
        new_labelled_rows=inputs.new_labelled_rows,
        now=now,
        requested=reason,
    )
    get_run_logger().info("policy for %s: %s", spec.name, decision.summary())
    return decision


@task
def training_data(
    store: Store, registry: Registry, spec: ProblemSpec, champion: str, now: datetime
) -> RetrainingData:
    parent = registry.metadata(champion)["snapshot_id"]
    data = build_snapshot(store, spec, parent, as_of=now)
    get_run_logger().info(
        "retraining snapshot %s from %s: %s",
        data.manifest.snapshot_id,
        parent,
        data.manifest.lineage["rows"],
    )
    return data


@task
def split(store: Store, spec: ProblemSpec, data: RetrainingData, now: datetime) -> training.Split:
    frame = read_snapshot(store, spec.name, data.manifest.snapshot_id)
    return challenger.retraining_split(frame, data.holdout, spec, as_of=pd.Timestamp(now))


@task
def refit(
    parts: training.Split,
    spec: ProblemSpec,
    best: training.TrainParams,
    early: training.TrainedModel,
    params: RetrainingParams,
) -> training.TrainedModel:
    return challenger.refit(parts, spec, best, early, seed=params.seed, nthread=params.threads)


@task
def evaluate(
    parts: training.Split,
    spec: ProblemSpec,
    final: training.TrainedModel,
    early: training.TrainedModel,
) -> assessment.Evaluation:
    return assessment.evaluate_candidate(parts, spec, final, chosen_by=early)


@task
def shadow_check(
    store: Store,
    spec: ProblemSpec,
    champion: str,
    model: training.TrainedModel,
    threshold: float | None,
    now: datetime,
) -> shadow.ShadowReport:
    """The challenger on the last closed window's captured traffic."""
    width = parse_window(spec.monitoring.window)
    end = pd.Timestamp(now).floor(width).to_pydatetime()
    traffic = read_captures(store, spec.name, end - width, end)
    report = shadow.shadow_compare(spec, traffic, champion, model.booster, threshold)
    for reason in report.to_dict()["reasons"]:
        get_run_logger().info("%s", reason)
    return report


@task
def promote(
    registry: Registry,
    version: str,
    decision: gate.Decision,
    beaten: assessment.ChampionEvaluation | None,
    params: RetrainingParams,
) -> str:
    """Promote ``version`` if it passed, and only over the champion it was compared with:
    "promoted", "refused" (by the gate or the shadow check) or "superseded" (the champion
    changed meanwhile, e.g. another run promoted its challenger).

    The registry's compare-and-swap already makes the champion change itself safe; the
    problem's strict global concurrency limit (one slot) also keeps two promote steps of
    one model from interleaving their challenger alias and champion moves."""
    logger = get_run_logger()
    if not decision.passed:
        logger.warning("%s not promoted: %s", version, "; ".join(decision.failures))
        return "refused"
    against = [r for r in decision.reasons if "vs champion" in r or "no champion yet" in r]
    with exclusive(promotion_limit(registry.problem)):
        registry.set_alias("challenger", version, actor=params.actor, reason="passed the gate")
        try:
            registry.promote(
                version,
                actor=params.actor,
                reason=(against or decision.reasons)[-1],
                replacing=beaten.version if beaten else None,
            )
        except ChampionChangedError as exc:
            logger.warning("%s", exc)
            return "superseded"
    logger.info("%s is the new champion", version)
    return "promoted"


@task
def redeploy(params: RetrainingParams, version: str) -> dict[str, Any]:
    from flows.deployment import DeployParams, deploy

    return deploy(
        DeployParams(
            problem=params.problem,
            target="local",
            action="replace",
            version=version,
            store=params.store,
            workers=params.workers,
            state_file=params.state_file,
        )
    )


@task(timeout_seconds=120)  # dispatch retries each channel itself; a task retry would resend
def alert_refusal(
    store: Store,
    spec: ProblemSpec,
    registered: registration.Registered,
    champion: str | None,
    decision: gate.Decision,
    now: datetime,
) -> list[dict[str, Any]]:
    settings = Settings()
    alert_spec = with_settings_channels(spec.alerts, settings.alert_channels)
    card = store.uri(keys.model_version(spec.name, registered.version, "model_card.html"))
    alert = refused_alert(spec.name, registered.version, champion, decision, at=now, card=card)
    results = dispatch_alerts(
        [alert],
        build_channels(alert_spec, settings),
        alert_spec,
        state_path=alert_state_path(store),
    )
    return [r.as_dict() for r in results]


def _event(name: str, spec: ProblemSpec, payload: dict[str, Any]) -> None:
    emit_event(
        event=name, resource={"prefect.resource.id": f"mlops.model.{spec.name}"}, payload=payload
    )


@flow(name="retraining")
def retrain(params: RetrainingParams | None = None) -> RetrainingResult:
    """Retrain when the policy says so (or by hand), and promote only a fair winner."""
    params = params or RetrainingParams()
    store = store_from_settings(Settings(), params.store)
    spec = load_problem(params.problem)
    now = params.now or datetime.now(UTC)
    registry = Registry(store, spec.name, clock=(lambda: now) if params.now else _utc_now)
    champion = require_champion(registry, spec)
    decision = ask_policy(store, registry, spec, champion, now, params.reason)
    result = RetrainingResult(
        problem=spec.name,
        decision=decision.summary(),
        retrain=decision.retrain,
        reasons=list(decision.reasons),
        blocked=list(decision.blocked),
        champion_before=champion,
        champion_after=champion,
    )
    if not decision.retrain:
        return result
    run_id = uuid.uuid4().hex[:12]
    run = history.record_run(
        store, spec.name, now, run_id, {"reasons": list(decision.reasons), "event": params.event}
    )
    try:
        result = _challenge(store, registry, spec, champion, now, params, result)
    except Exception as exc:
        history.finish_run(store, run, {"outcome": "failed", "error": str(exc)})
        raise
    fields = {"outcome", "version", "snapshot_id", "gate_reasons", "champion_after"}
    history.finish_run(store, run, result.model_dump(mode="json", include=fields))
    return result.model_copy(update={"run": store.uri(run)})


def _challenge(
    store: Store,
    registry: Registry,
    spec: ProblemSpec,
    champion: str,
    now: datetime,
    params: RetrainingParams,
    result: RetrainingResult,
) -> RetrainingResult:
    """Train the challenger, judge it against the champion and act on the judgement."""
    data = training_data(store, registry, spec, champion, now)
    parts = split(store, spec, data, now)
    tparams = _training_params(params)
    best = tune(parts, spec, tparams)
    early = train_final(parts, spec, best, tparams)
    final = refit(parts, spec, best, early, params)
    evaluation = evaluate(parts, spec, final, early)
    # The champion this run was started for: if another run replaced it meanwhile, this
    # one's promotion is refused (superseded), so overlapping runs promote once.
    beaten = assessment.evaluate_champion(registry, parts, spec, champion)
    verdict = gate.decide_promotion(
        spec, evaluation.metrics, evaluation.baseline, beaten.metrics if beaten else None
    )
    report = shadow_check(store, spec, champion, final, evaluation.threshold, now)
    decision = shadow.with_shadow(verdict, report)
    candidate = registration.Candidate(
        snapshot_id=data.manifest.snapshot_id,
        parts=parts,
        model=final,
        params=best,
        seed=params.seed,
        trials=params.trials,
        cv=None,
        evaluation=evaluation,
        champion=beaten,
        evaluated_on=challenger.evaluated_on(parts, spec, data.holdout_windows),
        shadow=report.to_dict(),
    )
    registered = register(registry, store, spec, candidate, decision, tparams)
    publish(spec, registered)
    outcome = promote(registry, registered.version, decision, beaten, params)
    update: dict[str, Any] = {
        "outcome": outcome,
        "snapshot_id": data.manifest.snapshot_id,
        "version": registered.version,
        "gate_passed": decision.passed,
        "gate_reasons": decision.reasons,
        "promoted": outcome == "promoted",
        "champion_after": registry.alias("champion"),
        "metrics": evaluation.metrics,
        "champion_metrics": beaten.metrics if beaten else None,
        "shadow": report.to_dict(),
        **_act(store, spec, params, registered, outcome, decision, beaten, now),
    }
    return result.model_copy(update=update)


def _act(store, spec, params, registered, outcome, decision, beaten, now) -> dict[str, Any]:
    """Announce the outcome; redeploy a promoted challenger, alert on a refused one."""
    champion = beaten.version if beaten else None
    payload = {"version": registered.version, "champion": champion, "reasons": decision.reasons}
    if outcome == "promoted":
        _event(EVENT_PROMOTED, spec, payload)
        if params.deploy == "local":
            return {"deployed": redeploy(params, registered.version)}
    elif outcome == "refused":
        _event(EVENT_REFUSED, spec, payload)
        return {"alerts": alert_refusal(store, spec, registered, champion, decision, now)}
    return {}


def _training_params(params: RetrainingParams) -> TrainingParams:
    """The tuning and training settings of `mlops train`, from the run's (no CV)."""
    return TrainingParams(
        problem=params.problem,
        trials=params.trials,
        timeout_s=params.timeout_s,
        concurrency=params.concurrency,
        trial_threads=params.trial_threads,
        threads=params.threads,
        cv_folds=0,
        seed=params.seed,
        store=params.store,
        actor=params.actor,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)
