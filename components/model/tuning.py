"""Hyperparameter search with Optuna's TPE sampler, driven by ask/tell.

Why Optuna: TPE is a strong default for ~10-100 trials of gradient boosting, it is seeded
and reproducible, and its ask/tell interface leaves the running of trials to the caller, so
each trial can be a Prefect task on whatever task runner the flow has (threads here, a Dask
cluster later). `constant_liar` keeps trials asked in the same batch from piling onto one
point. The study lives in memory: trials are recorded by Prefect and in the model metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from components.core.problem import ProblemSpec
from components.model.evaluation import metrics_for
from components.model.training import TrainParams, predict, target, train_model


@dataclass(frozen=True)
class TrialResult:
    number: int
    params: TrainParams
    score: float  # the primary metric on the validation rows
    best_iteration: int


def make_study(spec: ProblemSpec, seed: int, startup_trials: int = 8) -> optuna.Study:
    """A seeded TPE study that maximises or minimises the problem's primary metric."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials, multivariate=True, constant_liar=True
    )
    direction = "maximize" if spec.metric.higher_is_better else "minimize"
    return optuna.create_study(direction=direction, sampler=sampler)


def suggest_params(trial: optuna.Trial, base: TrainParams) -> TrainParams:
    """The search space; what it does not cover keeps the value of `base`."""
    return base.model_copy(
        update={
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 10),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10, log=True),
            "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10, log=True),
            "gamma": trial.suggest_float("gamma", 0.0, 2.0),
        }
    )


def best_params(study: optuna.Study, base: TrainParams) -> TrainParams:
    """The best trial's parameters (the search space names TrainParams fields)."""
    return base.model_copy(update=study.best_params)


def run_trial(
    number: int,
    train,
    validation,
    spec: ProblemSpec,
    params: TrainParams,
    *,
    seed: int,
    nthread: int,
    weights=None,
) -> TrialResult:
    """Train with these parameters (``weights`` weigh the train rows) and score the primary
    metric on the validation rows."""
    model = train_model(
        train, validation, spec, params, seed=seed, nthread=nthread, weights=weights
    )
    scores = metrics_for(
        spec, target(validation, spec), predict(model.booster, validation, spec), 0.5
    )
    return TrialResult(
        number=number,
        params=params,
        score=float(scores[spec.metric.primary]),
        best_iteration=model.best_iteration,
    )
