"""Evaluation: metrics against hand-computed values, threshold choice, baseline, slices."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.problem import ThresholdPolicy, load_problem, parse_problem
from components.model.evaluation import (
    baseline_scores,
    choose_threshold,
    classification_metrics,
    compare,
    metrics_for,
    regression_metrics,
    slice_metrics,
)

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"

# Scores in decreasing order with their labels: 3 positives, 5 negatives.
#   threshold   0.9  0.8  0.7  0.6  0.5  0.4  0.3  0.2
#   F1          .40  .80  .67  .57  .50  .67  .60  .55   -> best 0.8
#   cost 1:5     10    5    6    7    8    3    4    5   -> best 0.4
CRAFTED_Y = np.array([1, 1, 0, 0, 0, 1, 0, 0])
CRAFTED_P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
F1 = ThresholdPolicy(strategy="f1")
COST = ThresholdPolicy(strategy="cost", false_positive_cost=1, false_negative_cost=5)


@pytest.fixture(scope="module")
def churn():
    return load_problem(CHURN)


def _spec_with(churn, **changes):
    raw = churn.model_dump(exclude_none=True)
    for key, value in changes.items():
        raw[key] = value
    return parse_problem(raw)


@pytest.fixture(scope="module")
def regression(churn):
    raw = churn.model_dump(exclude_none=True)
    raw["task"] = "regression"
    raw["target"] = "monthly_charges"
    raw["metric"] = {"primary": "rmse"}
    return parse_problem(raw)


# --- threshold ---------------------------------------------------------------------------


def test_cost_and_f1_choose_different_thresholds():
    assert choose_threshold(CRAFTED_Y, CRAFTED_P, F1) == 0.8
    assert choose_threshold(CRAFTED_Y, CRAFTED_P, COST) == 0.4


def test_threshold_does_not_depend_on_row_order():
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(CRAFTED_Y))
        assert choose_threshold(CRAFTED_Y[order], CRAFTED_P[order], F1) == 0.8
        assert choose_threshold(CRAFTED_Y[order], CRAFTED_P[order], COST) == 0.4


def test_equally_good_thresholds_resolve_to_the_smallest():
    # F1 is 2/3 at 0.8, 0.5 and 0.2: the smallest wins.
    y = [1, 1, 0, 0, 1, 0, 0, 1]
    p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    assert choose_threshold(y, p, F1) == 0.2


def test_tied_scores_are_admitted_together():
    # The two rows scored 0.5 (one of each class) can only be flagged together.
    y = [1, 0, 1, 0, 0]
    p = [0.9, 0.5, 0.5, 0.1, 0.1]
    assert choose_threshold(y, p, F1) == 0.5  # tp 2, fp 1: F1 0.8 beats 0.667 at 0.9
    expensive_fp = ThresholdPolicy(strategy="cost", false_positive_cost=10, false_negative_cost=1)
    assert choose_threshold(y, p, expensive_fp) == 0.9


def test_predicting_nothing_can_be_cheapest():
    # Every positive scores below every negative: with costly false positives, flag no one.
    t = choose_threshold(
        [0, 0, 1], [0.6, 0.5, 0.2], ThresholdPolicy(strategy="cost", false_positive_cost=5)
    )
    assert 0.6 < t <= 1.0
    assert classification_metrics([0, 0, 1], [0.6, 0.5, 0.2], t)["positive_rate"] == 0.0


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [1, 1, 1], []])
def test_one_class_gives_the_default_threshold(labels):
    scores = np.linspace(0.1, 0.9, len(labels))
    assert choose_threshold(labels, scores, COST) == 0.5
    assert choose_threshold(labels, scores, F1) == 0.5


def test_threshold_is_a_float_in_the_unit_interval():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 10_000), rng.random(10_000)
    for policy in (F1, COST):
        t = choose_threshold(y, p, policy)
        assert type(t) is float and 0.0 <= t <= 1.0


def test_bad_labels_and_misaligned_inputs_are_named():
    with pytest.raises(ValueError, match="only 0 and 1"):
        choose_threshold([0, 2, 1], [0.1, 0.2, 0.3], F1)
    with pytest.raises(ValueError, match="3 rows but y_prob has 2"):
        classification_metrics([0, 1, 1], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        classification_metrics([0, 1], [0.1, 1.2], 0.5)
    with pytest.raises(ValueError, match="1 missing or infinite"):
        regression_metrics([1.0, 2.0], [1.0, math.nan])


# --- metrics -----------------------------------------------------------------------------


def test_classification_metrics_match_hand_computed_values():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    before = p.copy()
    m = classification_metrics(y, p, threshold=0.5)
    # Predicted positive: only 0.8 -> tp 1, fp 0, fn 1, tn 2.
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered
    assert m["pr_auc"] == pytest.approx((1.0 + 2 / 3) / 2)  # precision 1 at 0.8, 2/3 at 0.35
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["precision"] == 1.0
    assert m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == 0.75
    assert m["positive_rate"] == 0.25
    assert m["prevalence"] == 0.5
    assert m["n"] == 4
    assert (p == before).all()
    assert all(type(v) in (float, int) for v in m.values())
    json.dumps(m)


def test_threshold_is_inclusive():
    assert classification_metrics([0, 1], [0.3, 0.5], threshold=0.5)["recall"] == 1.0


def test_log_loss_is_finite_for_confident_mistakes():
    m = classification_metrics([0, 1], [1.0, 0.0], 0.5)
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 30


def test_one_class_gives_nan_auc_without_raising():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics([0, 0, 0], [0.1, 0.6, 0.3], 0.5)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert math.isnan(m["recall"])  # no positives
    assert m["precision"] == 0.0 and m["f1"] == 0.0  # one false positive
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7])))


def test_no_rows_gives_nan_metrics():
    m = classification_metrics([], [], 0.5)
    assert m["n"] == 0 and math.isnan(m["roc_auc"]) and math.isnan(m["accuracy"])
    assert regression_metrics([], [])["n"] == 0


def test_regression_metrics_match_hand_computed_values():
    m = regression_metrics([1, 2, 3, 4], [1, 2, 3, 6])
    assert m["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 4 / 5)  # SS_res 4, SS_tot 5
    assert m["n"] == 4
    assert math.isnan(regression_metrics([2, 2], [1, 3])["r2"])


def test_metrics_for_dispatches_on_the_task(churn, regression):
    assert "roc_auc" in metrics_for(churn, [0, 1], [0.2, 0.7], None)
    assert metrics_for(churn, [0, 1], [0.2, 0.7], None)["accuracy"] == 1.0  # None means 0.5
    assert set(metrics_for(regression, [1.0, 2.0], [1.5, 2.5], None)) == {"rmse", "mae", "r2", "n"}


def test_baseline_is_the_training_prior_or_mean(churn, regression):
    prior = baseline_scores(churn, np.array([0, 1, 0, 0]), 3)
    assert prior.tolist() == [0.25, 0.25, 0.25]
    assert baseline_scores(regression, [10.0, 20.0, 60.0], 2).tolist() == [30.0, 30.0]
    m = metrics_for(churn, [0, 1, 0, 1], baseline_scores(churn, [0, 1], 4), 0.5)
    assert m["roc_auc"] == 0.5
    with pytest.raises(ValueError, match="y_train is empty"):
        baseline_scores(churn, [], 3)


def test_compare_is_positive_when_the_first_is_better(churn, regression):
    assert compare(churn, {"roc_auc": 0.80}, {"roc_auc": 0.75}) == pytest.approx(0.05)
    assert compare(churn, {"roc_auc": 0.70}, {"roc_auc": 0.75}) == pytest.approx(-0.05)
    log_loss = _spec_with(churn, metric={"primary": "log_loss"})
    assert compare(log_loss, {"log_loss": 0.30}, {"log_loss": 0.40}) == pytest.approx(0.10)
    assert compare(regression, {"rmse": 5.0}, {"rmse": 4.0}) == pytest.approx(-1.0)
    assert math.isnan(compare(churn, {"roc_auc": math.nan}, {"roc_auc": 0.7}))


# --- slices ------------------------------------------------------------------------------


@pytest.fixture()
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "contract": ["two-year", "month-to-month", "one-year", "month-to-month"] * 2,
            "region": ["north", "south", "north", "east", "south", "north", None, "north"],
            "tenure_months": [0, 5, 6, 23, 24, 119, 120, 130],  # the last bin holds 120
        },
        index=[10, 11, 12, 13, 14, 15, 16, 17],  # not 0..n-1: rows align by position
    )


Y = np.array([0, 1, 0, 1, 0, 1, 1, 0])
P = np.array([0.1, 0.8, 0.3, 0.6, 0.2, 0.4, 0.9, 0.7])


def test_slice_groups_and_counts(churn, frame):
    before = frame.copy()
    table = slice_metrics(churn, frame, Y, P, 0.5)
    assert list(table.columns[:4]) == ["slice", "group", "n", "positives"]
    got = [(r.slice, r.group, r.n, r.positives) for r in table.itertuples()]
    assert got == [
        ("contract", "month-to-month", 4, 3),
        ("contract", "one-year", 2, 1),
        ("contract", "two-year", 2, 0),
        ("region", "north", 4, 1),
        ("region", "south", 2, 1),
        ("region", "east", 1, 1),
        ("region", "west", 0, 0),
        ("region", "central", 0, 0),
        ("region", "missing", 1, 1),
        ("tenure_band", "[0, 6)", 2, 1),
        ("tenure_band", "[6, 24)", 2, 1),
        ("tenure_band", "[24, 120]", 3, 2),
        ("tenure_band", "outside bins", 1, 0),
    ]
    pd.testing.assert_frame_equal(frame, before)


def test_slice_metrics_are_the_metrics_of_the_group(churn, frame):
    table = slice_metrics(churn, frame, Y, P, 0.5).set_index(["slice", "group"])
    month = table.loc[("contract", "month-to-month")]
    expected = classification_metrics([1, 1, 1, 0], [0.8, 0.6, 0.4, 0.7], 0.5)
    for key in ("roc_auc", "log_loss", "precision", "recall", "accuracy"):
        assert month[key] == pytest.approx(expected[key])
    assert math.isnan(table.loc[("region", "west"), "accuracy"])  # no rows
    records = slice_metrics(churn, frame, Y, P, 0.5).to_dict("records")
    json.dumps(records)


def test_regression_slices_have_no_positives(regression, frame):
    y = np.arange(8, dtype=float)
    table = slice_metrics(regression, frame, y, y + 1, None)
    assert list(table.columns) == ["slice", "group", "n", "rmse", "mae", "r2"]
    assert table["rmse"].dropna().tolist() == [1.0] * 11


def test_slice_input_errors_are_named(churn, frame):
    with pytest.raises(ValueError, match="frame has 8 rows but y_true has 2"):
        slice_metrics(churn, frame, [0, 1], [0.1, 0.2], 0.5)
    with pytest.raises(KeyError, match="region"):
        slice_metrics(churn, frame.drop(columns="region"), Y, P, 0.5)
