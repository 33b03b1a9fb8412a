"""How a trained model does on the held-out rows of its split, next to the naive baseline,
and how the current champion does on the very same rows (lifecycle stage 4).

The decision threshold is chosen on the validation rows; every metric is measured on the
test rows, which never chose anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from components.core.problem import ProblemSpec
from components.model import evaluation, training
from components.model.registry import Registry


@dataclass(frozen=True)
class Evaluation:
    """The candidate on the test rows. ``threshold`` is None for regression; ``slices`` are
    the rows of ``evaluation.slice_metrics``; ``test_scores`` align with the test rows."""

    threshold: float | None
    metrics: dict[str, float]
    baseline: dict[str, float]
    slices: list[dict[str, Any]]
    test_scores: np.ndarray


@dataclass(frozen=True)
class ChampionEvaluation:
    """The current champion's metrics on the candidate's test rows, at its own threshold."""

    version: str
    metrics: dict[str, float]


def evaluate_candidate(
    parts: training.Split,
    spec: ProblemSpec,
    model: training.TrainedModel,
    *,
    chosen_by: training.TrainedModel | None = None,
) -> Evaluation:
    """Threshold from validation; metrics of the model and the baseline on test; slices.
    ``chosen_by``: the model whose validation scores choose the threshold, when ``model``
    was refitted on the validation rows too (by default ``model`` itself)."""
    threshold = None
    if spec.is_classification:
        scores = training.predict((chosen_by or model).booster, parts.validation, spec)
        threshold = evaluation.choose_threshold(
            training.target(parts.validation, spec), scores, spec.metric.threshold
        )
    y_test = training.target(parts.test, spec)
    test_scores = training.predict(model.booster, parts.test, spec)
    baseline = evaluation.baseline_scores(spec, training.target(parts.train, spec), len(y_test))
    slices = evaluation.slice_metrics(spec, parts.test, y_test, test_scores, threshold)
    return Evaluation(
        threshold=threshold,
        metrics=evaluation.metrics_for(spec, y_test, test_scores, threshold),
        baseline=evaluation.metrics_for(spec, y_test, baseline, threshold),
        slices=slices.to_dict("records"),
        test_scores=test_scores,
    )


def evaluate_champion(
    registry: Registry, parts: training.Split, spec: ProblemSpec, version: str | None = None
) -> ChampionEvaluation | None:
    """The current champion (or ``version``) on the same test rows, or None when there is
    no champion."""
    champion = version or registry.alias("champion")
    if champion is None:
        return None
    booster = training.load_model(registry.read_file(champion, "model.ubj"))
    threshold = registry.metadata(champion).get("threshold")
    scores = training.predict(booster, parts.test, spec)
    metrics = evaluation.metrics_for(spec, training.target(parts.test, spec), scores, threshold)
    return ChampionEvaluation(version=champion, metrics=metrics)
