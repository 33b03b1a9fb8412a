"""Registering a candidate (lifecycle stage 4): the immutable registry version of a trained
model, its model card, plots, reference profile and metadata, whatever the gate said.

`build_registration` assembles what is written and reads nothing; `register_version` reads
the snapshot's reference profile, writes the version and returns its id with its card. The
card names its version, so it is rendered only once the registry has reserved the id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from components.core import keys, provenance
from components.core.problem import ProblemSpec
from components.core.store import Store
from components.data import profiling
from components.model import plots, training
from components.model.assessment import ChampionEvaluation, Evaluation
from components.model.gate import Decision
from components.model.model_card import ModelCard, render_html, render_markdown
from components.model.registry import Registry
from components.monitoring.performance import estimated_metric

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
# The file of a version holding its score reference.
SCORE_PROFILE = "score_profile.bin"
# The cross-validation summary the card shows; the metadata keeps every fold.
_CV_CARD_KEYS = ("metric", "mean", "std", "folds")


@dataclass(frozen=True)
class Candidate:
    """A trained model, how it was made and how it did: everything a version records.
    ``params`` are the tuned hyperparameters, ``trials`` how many tuning trials ran and
    ``champion`` the current champion on the same test rows (None without a champion)."""

    snapshot_id: str
    parts: training.Split
    model: training.TrainedModel
    params: training.TrainParams
    seed: int
    trials: int
    cv: dict[str, Any] | None
    evaluation: Evaluation
    champion: ChampionEvaluation | None
    # A retrained challenger: what its test rows are, and its shadow check (figures and
    # reasons); both go on the card and in the metadata.
    evaluated_on: str | None = None
    shadow: dict[str, Any] | None = None


@dataclass(frozen=True)
class Registration:
    """What registering writes: the card (version still "pending"), every file except the
    card's (``card_files`` renders those once the version is known), the metadata and the
    plots by name."""

    card: ModelCard
    files: dict[str, bytes]
    metadata: dict[str, Any]
    figures: dict[str, bytes]


@dataclass(frozen=True)
class Registered:
    """The version written, its card (naming that version) and its plots by name."""

    version: str
    card: ModelCard
    figures: dict[str, bytes]


def score_profile(spec: ProblemSpec, candidate: Candidate) -> bytes:
    """The profile of the model's scores on its validation and test rows: the baseline of
    prediction drift (the same column name the service captures)."""
    validation = training.predict(candidate.model.booster, candidate.parts.validation, spec)
    scores = np.concatenate([validation, candidate.evaluation.test_scores])
    return profiling.profile_frame(pd.DataFrame({score_column(spec): scores}))


def estimated_metrics(spec: ProblemSpec, result: Evaluation) -> dict[str, float]:
    """The primary metric as monitoring estimates it from scores alone, on the test scores:
    the baseline that a window's estimate is compared with (the estimate's own bias, where
    the model is not perfectly calibrated, cancels out)."""
    if not spec.is_classification:
        return {}
    threshold = result.threshold if result.threshold is not None else 0.5
    primary = spec.metric.primary
    return {primary: estimated_metric(primary, result.test_scores, threshold)}


def score_column(spec: ProblemSpec) -> str:
    return "probability" if spec.is_classification else "value"


def card_status(decision: Decision, promote: bool) -> str:
    """champion when the gate passed and promotion is on, challenger when it passed without
    promotion, rejected when it failed."""
    if not decision.passed:
        return "rejected"
    return "champion" if promote else "challenger"


def build_registration(
    spec: ProblemSpec,
    candidate: Candidate,
    decision: Decision,
    *,
    profile: bytes,
    promote: bool,
    now: datetime,
) -> Registration:
    """The card, files and metadata of ``candidate``; ``profile`` is the reference profile
    of its snapshot and ``now`` its creation time."""
    importance = training.feature_importance(candidate.model.booster, spec)
    result = candidate.evaluation
    y_test = training.target(candidate.parts.test, spec)
    figures = plots.render_plots(spec, y_test, result.test_scores, result.threshold, importance)
    card = _card(spec, candidate, decision, card_status(decision, promote), now)
    files = {
        "model.ubj": training.model_bytes(candidate.model.booster),
        "problem.json": spec.model_dump_json(indent=2).encode(),
        "reference_profile.bin": profile,
        SCORE_PROFILE: score_profile(spec, candidate),
        **{f"plots/{name}": png for name, png in figures.items()},
    }
    metadata = _metadata(spec, candidate, decision, importance, card.code_version)
    return Registration(card=card, files=files, metadata=metadata, figures=figures)


def register_version(
    registry: Registry,
    store: Store,
    spec: ProblemSpec,
    candidate: Candidate,
    decision: Decision,
    *,
    promote: bool,
    clock: Callable[[], datetime] | None = None,
) -> Registered:
    """Write ``candidate`` as a new version: registered when the gate passed, rejected
    otherwise (with the failures as the reason). Moving aliases is the caller's next step.
    The card's time is ``clock``'s, by default the registry's."""
    profile = store.get_bytes(keys.snapshot(spec.name, candidate.snapshot_id, "profile.bin"))
    built = build_registration(
        spec, candidate, decision, profile=profile, promote=promote, now=(clock or registry.now)()
    )

    def with_card(version: str) -> dict[str, bytes]:
        named = built.card.model_copy(update={"version": version})
        return {**built.files, **card_files(named, built.figures)}

    version = registry.register(
        with_card,
        built.metadata,
        rejected=not decision.passed,
        reason="; ".join(decision.failures) or "passed the gate",
    )
    card = built.card.model_copy(update={"version": version})
    return Registered(version=version, card=card, figures=built.figures)


def card_files(card: ModelCard, figures: dict[str, bytes]) -> dict[str, bytes]:
    """The card as model_card.md (linking the plots) and self-contained model_card.html."""
    return {
        "model_card.md": render_markdown(card, sorted(figures)).encode(),
        "model_card.html": render_html(card, figures).encode(),
    }


def split_times(parts: training.Split, spec: ProblemSpec) -> dict[str, list[str]]:
    """The first and last event time (ISO 8601) of each part of the split."""
    column = spec.event_time_column
    return {
        name: [frame[column].min().isoformat(), frame[column].max().isoformat()]
        for name, frame in (
            ("train", parts.train),
            ("validation", parts.validation),
            ("test", parts.test),
        )
    }


def _card(
    spec: ProblemSpec, candidate: Candidate, decision: Decision, status: str, now: datetime
) -> ModelCard:
    result, cv, model = candidate.evaluation, candidate.cv, candidate.model
    return ModelCard(
        problem=spec.name,
        description=spec.description,
        task=spec.task,
        primary_metric=spec.metric.primary,
        version="pending",
        status=status,
        created_at=now.isoformat(),
        code_version=provenance.code_version(),
        snapshot_id=candidate.snapshot_id,
        rows=candidate.parts.sizes,
        params={
            **candidate.params.model_dump(),
            "best_iteration": model.best_iteration,
            "seed": candidate.seed,
        },
        metrics=result.metrics,
        cv=cv and {k: cv[k] for k in _CV_CARD_KEYS},
        baseline=result.baseline,
        champion=candidate.champion.metrics if candidate.champion else None,
        threshold=result.threshold,
        slices=result.slices,
        gate_passed=decision.passed,
        gate_reasons=decision.reasons,
        intended_use=INTENDED_USE,
        limitations=LIMITATIONS,
        evaluated_on=candidate.evaluated_on,
        shadow=candidate.shadow,
    )


def _metadata(
    spec: ProblemSpec,
    candidate: Candidate,
    decision: Decision,
    importance: dict[str, float],
    code_version: str | None,
) -> dict[str, Any]:
    result, champion = candidate.evaluation, candidate.champion
    return {
        "snapshot_id": candidate.snapshot_id,
        "split": candidate.parts.sizes,
        "split_times": split_times(candidate.parts, spec),
        "params": candidate.params.model_dump(),
        "xgboost_params": training.xgb_params(
            spec, candidate.params, seed=candidate.seed, nthread=0
        ),
        "best_iteration": candidate.model.best_iteration,
        "threshold": result.threshold,
        "metrics": result.metrics,
        "estimated_metrics": estimated_metrics(spec, result),
        "baseline": result.baseline,
        "champion": {
            "version": champion.version if champion else None,
            "metrics": champion.metrics if champion else None,
        },
        "cv": candidate.cv,
        "slices": result.slices,
        "feature_importance": importance,
        "features": spec.input_features,
        "gate": {"passed": decision.passed, "reasons": decision.reasons},
        "code_version": code_version,
        "packages": provenance.package_versions(),
        "trials": candidate.trials,
        "evaluated_on": candidate.evaluated_on,
        "shadow": candidate.shadow,
    }
