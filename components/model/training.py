"""Model development (lifecycle stage 3): time-based splits, XGBoost training, cross-validation.

The model is XGBoost with the `hist` tree method and native categorical support: categorical
features become pandas `category` columns whose categories are exactly the problem's, so the
codes the model learns are the same at training and serving time. The objective follows the
problem's task; monotone constraints come from the problem file. Training is seeded and
deterministic: the same rows, parameters and seed give a byte-identical model (also across
thread counts, with `hist`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import KFold, StratifiedKFold

from components.core.problem import ProblemSpec
from components.model.evaluation import metrics_for


class TrainParams(BaseModel):
    """Hyperparameters. The defaults are a sound untuned starting point."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    learning_rate: float = Field(0.1, gt=0, le=1)
    max_depth: int = Field(6, ge=1, le=16)
    min_child_weight: float = Field(1.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    reg_alpha: float = Field(0.0, ge=0)
    gamma: float = Field(0.0, ge=0)
    max_bin: int = Field(256, ge=16, le=1024)
    max_cat_to_onehot: int = Field(4, ge=1)
    num_boost_round: int = Field(1000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)


@dataclass(frozen=True)
class RecencyWeighting:
    """Rows weighted by their age at ``as_of``: a row's weight halves every
    ``half_life_days`` days before it (a row at ``as_of`` or later weighs 1)."""

    column: str
    half_life_days: float
    as_of: pd.Timestamp

    def weights(self, frame: pd.DataFrame) -> np.ndarray:
        age = (self.as_of - frame[self.column]) / pd.Timedelta(days=1)
        return np.power(0.5, np.clip(age.to_numpy(dtype=float), 0, None) / self.half_life_days)


@dataclass(frozen=True)
class Split:
    """Rows split by event time: every train row is older than every validation row, and
    every validation row older than every test row. With ``weighting``, training weighs
    each train row by it (validation and test rows are measured unweighted)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    weighting: RecencyWeighting | None = None

    def train_weights(self) -> np.ndarray | None:
        return self.weighting.weights(self.train) if self.weighting else None

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


@dataclass(frozen=True)
class TrainedModel:
    booster: xgb.Booster  # trimmed to the best iteration
    best_iteration: int
    validation_score: float  # the early-stopping metric on validation at the best iteration


class SplitError(ValueError):
    """Too little data, or too little spread in time, for the requested split."""


def split_by_time(
    frame: pd.DataFrame, spec: ProblemSpec, validation: float = 0.15, test: float = 0.15
) -> Split:
    """Cut at event-time quantiles so that no time instant lands in two parts."""
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise ValueError("validation and test fractions must be in (0, 1) and sum below 1")
    times = frame[spec.event_time_column]
    order = np.argsort(times.to_numpy(), kind="stable")
    ordered = frame.iloc[order].reset_index(drop=True)
    sorted_times = ordered[spec.event_time_column]
    first_validation = sorted_times.iloc[int(len(ordered) * (1 - validation - test))]
    first_test = sorted_times.iloc[int(len(ordered) * (1 - test))]
    parts = Split(
        train=ordered[sorted_times < first_validation].reset_index(drop=True),
        validation=ordered[
            (sorted_times >= first_validation) & (sorted_times < first_test)
        ].reset_index(drop=True),
        test=ordered[sorted_times >= first_test].reset_index(drop=True),
    )
    empty = [name for name, n in parts.sizes.items() if n == 0]
    if empty:
        raise SplitError(
            f"splitting {len(frame):,} rows by {spec.event_time_column} left no rows in "
            f"{', '.join(empty)}: the data needs more rows spread over more distinct times"
        )
    return parts


def features(frame: pd.DataFrame, spec: ProblemSpec) -> pd.DataFrame:
    """The model's input matrix: declared inputs in spec order, categories fixed by the
    spec, nullable integers and booleans as float (null becomes NaN, XGBoost's missing)."""
    columns = {}
    for name in spec.input_features:
        feature = spec.features[name]
        values = frame[name]
        if feature.is_categorical:
            # Validation quarantines unknown categories; should one reach here, it is
            # missing to the model, never a new code.
            known = values.where(values.isin(feature.categories))
            columns[name] = pd.Categorical(known, categories=feature.categories)
        else:
            columns[name] = values.astype("float64")
    return pd.DataFrame(columns, index=frame.index)


def target(frame: pd.DataFrame, spec: ProblemSpec) -> np.ndarray:
    return frame[spec.target].to_numpy(dtype="float64")


def xgb_params(spec: ProblemSpec, params: TrainParams, *, seed: int, nthread: int) -> dict:
    """XGBoost's own parameter dict for these hyperparameters and this problem."""
    monotone = {"increasing": 1, "decreasing": -1}
    constraints = tuple(
        monotone.get(spec.features[name].monotone, 0) for name in spec.input_features
    )
    objective, metric = (
        ("binary:logistic", "logloss") if spec.is_classification else ("reg:squarederror", "rmse")
    )
    out = {
        "objective": objective,
        "eval_metric": metric,
        "tree_method": "hist",
        "eta": params.learning_rate,
        "max_depth": params.max_depth,
        "min_child_weight": params.min_child_weight,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "lambda": params.reg_lambda,
        "alpha": params.reg_alpha,
        "gamma": params.gamma,
        "max_bin": params.max_bin,
        "max_cat_to_onehot": params.max_cat_to_onehot,
        "seed": seed,
        "nthread": nthread,
    }
    if any(constraints):
        out["monotone_constraints"] = "(" + ",".join(map(str, constraints)) + ")"
    return out


def train_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    spec: ProblemSpec,
    params: TrainParams,
    *,
    seed: int = 42,
    nthread: int = 0,
    weights: np.ndarray | None = None,
) -> TrainedModel:
    """Train with early stopping on the validation rows; return the model cut at its best
    iteration. nthread 0 means every core; ``weights`` weigh the train rows."""
    booster_params = xgb_params(spec, params, seed=seed, nthread=nthread)
    dtrain = _matrix(train, spec, params, nthread, weight=weights)
    dvalid = _matrix(validation, spec, params, nthread, ref=dtrain)
    booster = xgb.train(
        booster_params,
        dtrain,
        num_boost_round=params.num_boost_round,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=params.early_stopping_rounds,
        verbose_eval=False,
    )
    best = booster.best_iteration
    trimmed = booster[: best + 1]
    return TrainedModel(
        booster=trimmed, best_iteration=best, validation_score=float(booster.best_score)
    )


def train_rounds(
    train: pd.DataFrame,
    spec: ProblemSpec,
    params: TrainParams,
    rounds: int,
    *,
    seed: int = 42,
    nthread: int = 0,
    weights: np.ndarray | None = None,
) -> xgb.Booster:
    """Train exactly `rounds` boosting rounds, without early stopping."""
    booster_params = xgb_params(spec, params, seed=seed, nthread=nthread)
    matrix = _matrix(train, spec, params, nthread, weight=weights)
    return xgb.train(booster_params, matrix, num_boost_round=rounds)


def _matrix(frame, spec, params, nthread, ref=None, weight=None) -> xgb.QuantileDMatrix:
    return xgb.QuantileDMatrix(
        features(frame, spec),
        target(frame, spec),
        weight=weight,
        enable_categorical=True,
        max_bin=params.max_bin,
        nthread=nthread,
        ref=ref,
    )


def predict(booster: xgb.Booster, frame: pd.DataFrame, spec: ProblemSpec) -> np.ndarray:
    """Probability of the positive class (classification) or the predicted value."""
    matrix = xgb.DMatrix(features(frame, spec), enable_categorical=True)
    return booster.predict(matrix)


def model_bytes(booster: xgb.Booster) -> bytes:
    """The model in XGBoost's own UBJSON format (never pickle)."""
    return bytes(booster.save_raw(raw_format="ubj"))


def load_model(data: bytes, nthread: int = 0) -> xgb.Booster:
    booster = xgb.Booster(params={"nthread": nthread})
    booster.load_model(bytearray(data))
    return booster


def feature_importance(booster: xgb.Booster, spec: ProblemSpec) -> dict[str, float]:
    """Total gain per input feature (0 for features the model never split on)."""
    gain = booster.get_score(importance_type="total_gain")
    return {name: float(gain.get(name, 0.0)) for name in spec.input_features}


def cross_validate(
    train: pd.DataFrame,
    spec: ProblemSpec,
    params: TrainParams,
    rounds: int,
    *,
    folds: int = 5,
    seed: int = 42,
    nthread: int = 0,
) -> dict:
    """k-fold cross-validation on the training rows only: each fold trains `rounds` rounds
    (the final model's, chosen on validation) on k-1 parts and is scored on the held-out part,
    which is never used for early stopping. Returns the primary metric's mean, standard
    deviation and per-fold scores."""
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    y = target(train, spec)
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if spec.is_classification
        else KFold(folds, shuffle=True, random_state=seed)
    )
    metric = spec.metric.primary
    scores = []
    for fit_rows, held_rows in splitter.split(np.zeros(len(y)), y):
        fit, held = train.iloc[fit_rows], train.iloc[held_rows]
        booster = train_rounds(fit, spec, params, rounds, seed=seed, nthread=nthread)
        scored = metrics_for(spec, target(held, spec), predict(booster, held, spec), 0.5)
        scores.append(scored[metric])
    return {
        "metric": metric,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "folds": folds,
        "scores": [float(s) for s in scores],
    }
