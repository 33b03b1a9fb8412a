"""Performance per window: DeLong's AUC and interval, the calibration z, the degradation
test against the champion, bootstrap intervals, and the estimate from scores alone (CBPE).

The statistical checks run on seeded simulations of a calibrated model: a binormal score
(negatives N(0, 1), positives N(d, 1)) mapped to its exact probability, whose population
AUC is Phi(d / sqrt(2)).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score

from components.model.evaluation import classification_metrics
from components.monitoring import performance
from components.monitoring.performance import (
    METRICS,
    Calibration,
    Degradation,
    MetricInterval,
    auc_below,
    calibration_z,
    estimated_metric,
    metric_with_interval,
    roc_auc_with_interval,
)

D = 1.5
TRUE_AUC = float(norm.cdf(D / math.sqrt(2)))


def binormal(rng, n, prevalence=0.3, d=D):
    """Labels and calibrated probabilities: p = P(y = 1 | score) exactly."""
    y = (rng.random(n) < prevalence).astype(float)
    score = rng.normal(d * y, 1.0)
    return y, expit(logit(prevalence) + d * score - d * d / 2)


def logistic(rng, x, slope=2.0):
    """Labels drawn from P(y = 1 | x) = expit(slope * x)."""
    return (rng.random(len(x)) < expit(slope * x)).astype(float)


# --- ROC AUC (DeLong) ---------------------------------------------------------------------


def test_delong_auc_is_sklearns_roc_auc_with_ties():
    rng = np.random.default_rng(0)
    y, p = binormal(rng, 500)
    p = np.round(p, 1)  # many ties
    result = roc_auc_with_interval(y, p)
    assert result.value == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert result.low < result.value < result.high
    assert (result.n, result.positives, result.method) == (500, int(y.sum()), "delong")


def test_delong_on_literal_rows():
    # Positives 0.8, 0.6; negatives 0.6, 0.2: pairs won 1, 1, 0.5 (tie), 1 of 4.
    result = roc_auc_with_interval([1, 1, 0, 0], [0.8, 0.6, 0.6, 0.2])
    assert result.value == pytest.approx(0.875)
    assert 0.0 <= result.low <= result.value <= result.high <= 1.0  # clipped to [0, 1]


def test_delong_variance_agrees_with_the_bootstrap():
    rng = np.random.default_rng(1)
    n, resamples = 2000, 400
    y, p = binormal(rng, n)
    rows = rng.integers(0, n, size=(resamples, n))
    ys, ranks = y[rows], rankdata(p[rows], axis=1)
    m = ys.sum(axis=1)
    aucs = ((ranks * ys).sum(axis=1) - m * (m + 1) / 2) / (m * (n - m))  # Mann-Whitney
    ratio = roc_auc_with_interval(y, p).se ** 2 / aucs.var(ddof=1)
    assert 0.8 < ratio < 1.2


def test_delong_interval_covers_the_true_auc_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(200):
        result = roc_auc_with_interval(*binormal(rng, 400), confidence=0.95)
        covered += result.low <= TRUE_AUC <= result.high
    assert 0.90 <= covered / 200 <= 0.99


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "0 negatives"),
        ([1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], "1 positives"),
        ([1, 0, 1, 0], [0.1, 0.2, 0.3], "y has 4 rows but p has 3"),
        ([1, 0, 1, 0], [0.1, math.nan, 0.3, 0.4], "1 missing or infinite"),
        ([1, 0, 2, 0], [0.1, 0.2, 0.3, 0.4], "only 0 and 1"),
        ([1, 0, 1, 0], [0.1, 0.2, 1.3, 0.4], r"\[0, 1\]"),
        ([], [], "empty"),
    ],
)
def test_roc_auc_refuses_unusable_windows(y, p, message):
    with pytest.raises(ValueError, match=message):
        roc_auc_with_interval(y, p)


def test_roc_auc_refuses_a_confidence_outside_0_1():
    with pytest.raises(ValueError, match="confidence"):
        roc_auc_with_interval([1, 1, 0, 0], [0.8, 0.6, 0.6, 0.2], confidence=95)


# --- calibration --------------------------------------------------------------------------


def test_calibration_z_on_literal_rows():
    result = calibration_z([1, 0, 1, 1], [0.5, 0.5, 0.5, 0.5])
    assert result == Calibration(z=1.0, observed=3, expected=2.0, n=4)


def test_calibration_z_is_standard_normal_for_a_calibrated_model():
    rng = np.random.default_rng(3)
    zs = np.array([calibration_z(*binormal(rng, 1000)).z for _ in range(500)])
    assert np.abs(zs).max() < 3.9
    assert abs(zs.mean()) < 0.15
    assert 0.85 < zs.std() < 1.15


def test_calibration_z_is_large_when_scores_are_shifted_up():
    y, p = binormal(np.random.default_rng(4), 2000)
    result = calibration_z(y, np.clip(p + 0.1, 0.0, 1.0))
    assert result.z < -5  # the model now expects far more positives than arrive
    assert result.expected > result.observed


def test_calibration_z_with_certain_scores_is_infinite_only_when_wrong():
    assert calibration_z([1, 0], [1.0, 0.0]).z == 0.0
    assert calibration_z([1, 1], [1.0, 0.0]).z == math.inf


# --- degradation against the champion -----------------------------------------------------


def test_auc_below_flags_a_clearly_worse_model():
    rng = np.random.default_rng(5)
    y, p = binormal(rng, 3000)
    shuffled = rng.choice(3000, size=900, replace=False)  # 30% of rows
    p[shuffled] = rng.permutation(p[shuffled])
    result = auc_below(y, p, reference_auc=TRUE_AUC)
    assert result.value < TRUE_AUC
    assert result.z < 0
    assert result.p_value < 1e-3


def test_auc_below_does_not_flag_the_reference_model():
    y, p = binormal(np.random.default_rng(6), 3000)
    result = auc_below(y, p, reference_auc=TRUE_AUC)
    assert result.p_value > 0.01
    assert result.p_value == pytest.approx(norm.cdf(result.z))
    assert result.z == pytest.approx((result.value - TRUE_AUC) / result.se)


def test_auc_below_on_pooled_windows_records_how_many():
    rng = np.random.default_rng(7)
    windows = [binormal(rng, 400) for _ in range(3)]
    y = np.concatenate([w[0] for w in windows])
    p = np.concatenate([w[1] for w in windows])
    result = auc_below(y, p, reference_auc=TRUE_AUC, windows=3)
    assert (result.n, result.windows, result.metric) == (1200, 3, "roc_auc")
    assert result.se < auc_below(*windows[0], reference_auc=TRUE_AUC).se


@pytest.mark.parametrize(("reference", "windows"), [(1.2, 1), (-0.1, 1), (0.8, 0)])
def test_auc_below_refuses_a_bad_reference_or_window_count(reference, windows):
    with pytest.raises(ValueError, match=r"reference_auc|windows"):
        auc_below([1, 1, 0, 0], [0.8, 0.6, 0.6, 0.2], reference, windows=windows)


def test_auc_below_with_every_score_tied_is_certainly_below():
    result = auc_below([1, 1, 0, 0], [0.5] * 4, reference_auc=0.8)
    assert (result.value, result.se, result.z, result.p_value) == (0.5, 0.0, -math.inf, 0.0)


# --- other metrics: bootstrap intervals ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(METRICS) - {"roc_auc"}))
def test_bootstrap_interval_is_around_evaluations_value_and_seeded(name):
    y, p = binormal(np.random.default_rng(8), 500)
    result = metric_with_interval(name, y, p, threshold=0.4, seed=1)
    assert result.value == classification_metrics(y, p, 0.4)[name]
    assert result.low <= result.value <= result.high
    assert (result.method, result.n) == ("bootstrap", 500)
    assert metric_with_interval(name, y, p, threshold=0.4, seed=1) == result
    assert metric_with_interval(name, y, p, threshold=0.4, seed=2) != result


def test_bootstrap_se_of_the_brier_score_matches_its_analytic_value():
    y, p = binormal(np.random.default_rng(9), 2000)
    result = metric_with_interval("brier", y, p, seed=0, resamples=400)
    analytic = np.std((y - p) ** 2, ddof=1) / math.sqrt(len(y))
    assert result.se == pytest.approx(analytic, rel=0.2)


def test_roc_auc_dispatches_to_delong():
    y, p = binormal(np.random.default_rng(10), 300)
    assert metric_with_interval("roc_auc", y, p) == roc_auc_with_interval(y, p)


def test_a_metric_undefined_on_the_window_has_no_interval():
    result = metric_with_interval("pr_auc", [0, 0, 0], [0.2, 0.4, 0.6])
    assert math.isnan(result.value) and math.isnan(result.low) and math.isnan(result.high)


def test_unknown_metrics_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown metric 'auc'.*roc_auc"):
        metric_with_interval("auc", [1, 0], [0.9, 0.1])
    with pytest.raises(ValueError, match="unknown metric 'rmse'"):
        estimated_metric("rmse", [0.9, 0.1])


def test_results_serialise_to_json():
    y, p = binormal(np.random.default_rng(11), 300)
    results = [
        metric_with_interval("f1", y, p),
        roc_auc_with_interval(y, p),
        calibration_z(y, p),
        auc_below(y, p, TRUE_AUC),
    ]
    assert [type(r) for r in results] == [MetricInterval, MetricInterval, Calibration, Degradation]
    for result in results:
        assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


@pytest.mark.parametrize("name", METRICS)
def test_the_weighted_engine_with_label_weights_is_evaluations_metric(name):
    # The bootstrap and the estimate share one weighted implementation of each metric;
    # with weights (y, 1 - y) it must reproduce evaluation's definitions, ties included.
    y, p = binormal(np.random.default_rng(12), 500)
    p = np.round(p, 1)
    engine = performance._weighted_metric(name, p, y[None, :], 1.0 - y[None, :], 0.5)
    assert engine[0] == pytest.approx(classification_metrics(y, p, 0.5)[name], abs=1e-12)


# --- estimated from the scores (CBPE) -----------------------------------------------------


def test_estimated_metrics_on_literal_rows():
    p = [0.9, 0.6, 0.4, 0.1]  # E[TP] = 1.5, E[FP] = 0.5, E[FN] = 0.5, E[TN] = 1.5
    for name in ("precision", "recall", "f1", "accuracy"):
        assert estimated_metric(name, p, threshold=0.5) == pytest.approx(0.75)
    assert estimated_metric("brier", p) == pytest.approx(0.165)
    # Weighted pairs: (0.36 + 0.9 + 1.71 + ties 0.33) / (2 * 2).
    assert estimated_metric("roc_auc", p) == pytest.approx(0.825)
    entropy = -np.mean([q * math.log(q) + (1 - q) * math.log(1 - q) for q in p])
    assert estimated_metric("log_loss", p) == pytest.approx(entropy)


def test_certain_scores_estimate_their_own_labels():
    p = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    for name in METRICS:
        expected = classification_metrics(p, p, 0.5)[name]
        assert estimated_metric(name, p) == pytest.approx(expected, abs=1e-12), name


def test_estimated_metrics_are_nan_where_undefined():
    assert math.isnan(estimated_metric("precision", [0.1, 0.2], threshold=0.5))
    assert math.isnan(estimated_metric("roc_auc", [0.0, 0.0]))


@pytest.mark.parametrize(("name", "tolerance"), [("roc_auc", 0.02), ("pr_auc", 0.03)])
def test_estimated_ranking_metrics_match_the_realised_on_calibrated_data(name, tolerance):
    y, p = binormal(np.random.default_rng(13), 5000)
    realised = classification_metrics(y, p, 0.5)[name]
    assert estimated_metric(name, p) == pytest.approx(realised, abs=tolerance)


def test_estimated_auc_follows_covariate_shift():
    # Same P(y | x), a narrower mix of x: the realised AUC falls and the estimate with it.
    rng = np.random.default_rng(14)
    before, after = rng.normal(0.0, 1.0, 5000), rng.normal(0.5, 0.4, 5000)
    realised = [roc_auc_score(logistic(rng, x), expit(2.0 * x)) for x in (before, after)]
    estimated = [estimated_metric("roc_auc", expit(2.0 * x)) for x in (before, after)]
    assert realised[0] - realised[1] > 0.05
    assert estimated == pytest.approx(realised, abs=0.02)


def test_estimated_auc_is_blind_to_concept_drift():
    # Same x and scores, labels from a weaker P(y | x): the realised AUC falls, and the
    # estimate cannot move, since it sees only the scores. Labels must catch this.
    rng = np.random.default_rng(15)
    x = rng.normal(0.0, 1.0, 5000)
    p = expit(2.0 * x)
    drifted = roc_auc_score(logistic(rng, x, slope=0.5), p)
    assert estimated_metric("roc_auc", p) - drifted > 0.1
    assert estimated_metric("roc_auc", p) == pytest.approx(
        roc_auc_score(logistic(rng, x), p), abs=0.02
    )


def test_estimated_metric_refuses_unusable_scores():
    with pytest.raises(ValueError, match="missing or infinite"):
        estimated_metric("f1", [0.2, math.nan])
    with pytest.raises(ValueError, match="empty"):
        estimated_metric("f1", [])
