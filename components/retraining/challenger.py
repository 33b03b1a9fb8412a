"""A fair challenger (lifecycle stage 7): trained on the retraining snapshot, compared with
the champion on the same held-out recent production window.

The split: train and validation from the snapshot by event time (validation the newest
15%); the test rows are the held-out window, which neither model has seen. When no window
could be held out, the snapshot's own newest 15% are the test rows, as for `mlops train`.
Tuning and early stopping use train and validation; the final model is then refitted on
train and validation together with the rounds early stopping chose, so that the newest rows,
often the ones a drift is about, are trained on and not only validated on. The threshold is
chosen on the validation rows with the early-stopped model, before the refit saw them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.core.problem import ProblemSpec
from components.model import training

VALIDATION = 0.15


def retraining_split(
    frame: pd.DataFrame, holdout: pd.DataFrame, spec: ProblemSpec, *, as_of: pd.Timestamp
) -> training.Split:
    """Train and validation by time from ``frame``; test: ``holdout`` (snapshot columns),
    or the newest rows of ``frame`` when it is empty. Weighted by recency when the problem
    says so, at ``as_of``."""
    half_life = spec.retraining.training_data.recency_half_life_days
    weighting = None
    if half_life is not None:
        weighting = training.RecencyWeighting(
            spec.event_time_column, half_life, pd.Timestamp(as_of)
        )
    if holdout.empty:
        parts = training.split_by_time(frame, spec, validation=VALIDATION, test=VALIDATION)
        return training.Split(parts.train, parts.validation, parts.test, weighting)
    # A sliver of test is cut and added back to validation: split_by_time needs all three.
    parts = training.split_by_time(frame, spec, validation=VALIDATION, test=0.01)
    validation = pd.concat([parts.validation, parts.test], ignore_index=True)
    test = holdout[list(frame.columns)].reset_index(drop=True)
    return training.Split(parts.train, validation, test, weighting)


def refit(
    parts: training.Split,
    spec: ProblemSpec,
    params: training.TrainParams,
    early: training.TrainedModel,
    *,
    seed: int,
    nthread: int = 0,
) -> training.TrainedModel:
    """The early-stopped model's parameters and rounds, trained on train and validation."""
    rows = pd.concat([parts.train, parts.validation], ignore_index=True)
    weights = parts.weighting.weights(rows) if parts.weighting else None
    booster = training.train_rounds(
        rows, spec, params, early.best_iteration + 1, seed=seed, nthread=nthread, weights=weights
    )
    return training.TrainedModel(
        booster=booster,
        best_iteration=early.best_iteration,
        validation_score=early.validation_score,
    )


def evaluated_on(parts: training.Split, spec: ProblemSpec, windows: list) -> str:
    """What the test rows are, in a sentence for the card."""
    times = parts.test[spec.event_time_column]
    span = f"{times.min():%Y-%m-%d %H:%M} to {times.max():%Y-%m-%d %H:%M}"
    if not windows:
        return (
            f"no labelled production window held enough rows to hold out: the snapshot's "
            f"newest {len(parts.test):,} rows ({span}), as for `mlops train`"
        )
    starts = ", ".join(f"{w:%Y-%m-%d %H:%M}" for w in windows)
    return (
        f"{len(parts.test):,} labelled production rows held out from retraining (capture "
        f"windows starting {starts}; event times {span}); champion and challenger on the "
        "same rows"
    )


def weight_summary(parts: training.Split) -> dict[str, float] | None:
    """The train weights' effective share of rows (Kish), for the lineage; None unweighted."""
    weights = parts.train_weights()
    if weights is None or not len(weights):
        return None
    effective = weights.sum() ** 2 / np.square(weights).sum()
    return {"effective_rows": float(effective), "rows": float(len(weights))}
