"""The gate, case by case: every reason is reported, and only a real improvement promotes."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from components.core.problem import load_problem, parse_problem
from components.model.gate import decide_promotion

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
GOOD = {"roc_auc": 0.84, "pr_auc": 0.60, "log_loss": 0.40}
BASELINE = {"roc_auc": 0.50, "pr_auc": 0.22, "log_loss": 0.52}


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)  # floors roc_auc 0.75, pr_auc 0.40; margin 0.002


def test_no_champion_yet_passes_with_every_reason(spec):
    decision = decide_promotion(spec, GOOD, BASELINE, champion=None)
    assert decision.passed
    assert decision.failures == []
    assert decision.reasons == [
        "pass: roc_auc = 0.8400, floor: at least 0.7500",
        "pass: pr_auc = 0.6000, floor: at least 0.4000",
        "pass: roc_auc 0.8400 vs baseline 0.5000 (improvement +0.3400)",
        "pass: no champion yet: the first model that clears the floors becomes champion",
    ]


def test_tie_with_champion_does_not_promote(spec):
    decision = decide_promotion(spec, GOOD, BASELINE, champion=dict(GOOD))
    assert not decision.passed
    assert decision.failures == [
        "roc_auc 0.8400 vs champion 0.8400 on the same test rows: tie by +0.0000, "
        "required margin > 0 and >= 0.0020"
    ]


def test_better_but_within_margin_does_not_promote(spec):
    decision = decide_promotion(spec, {**GOOD, "roc_auc": 0.841}, BASELINE, champion=GOOD)
    assert not decision.passed
    assert "better by +0.0010" in decision.failures[0]


def test_better_by_the_margin_promotes(spec):
    decision = decide_promotion(spec, {**GOOD, "roc_auc": 0.8425}, BASELINE, champion=GOOD)
    assert decision.passed
    assert "better by +0.0025" in decision.reasons[-1]


def test_worse_than_champion_fails(spec):
    decision = decide_promotion(spec, GOOD, BASELINE, champion={**GOOD, "roc_auc": 0.86})
    assert not decision.passed
    assert "worse by -0.0200" in decision.failures[0]


def test_below_a_floor_fails_and_every_failure_is_listed(spec):
    weak = {"roc_auc": 0.70, "pr_auc": 0.30}
    decision = decide_promotion(spec, weak, BASELINE, champion={"roc_auc": 0.80})
    assert not decision.passed
    assert decision.failures == [
        "roc_auc = 0.7000, floor: at least 0.7500",
        "pr_auc = 0.3000, floor: at least 0.4000",
        "roc_auc 0.7000 vs champion 0.8000 on the same test rows: worse by -0.1000, "
        "required margin > 0 and >= 0.0020",
    ]


def test_exactly_at_the_floor_passes(spec):
    decision = decide_promotion(spec, {"roc_auc": 0.75, "pr_auc": 0.40}, BASELINE, None)
    assert decision.passed


def test_not_better_than_baseline_fails(spec):
    decision = decide_promotion(spec, GOOD, {**BASELINE, "roc_auc": 0.84}, None)
    assert not decision.passed
    assert decision.failures == ["roc_auc 0.8400 vs baseline 0.8400 (improvement +0.0000)"]


def test_missing_metric_fails_clearly(spec):
    decision = decide_promotion(spec, {"roc_auc": math.nan, "pr_auc": 0.5}, BASELINE, None)
    assert not decision.passed
    assert "roc_auc is not available; the floor requires at least 0.75" in decision.failures


def _regression_spec():
    raw = yaml.safe_load(CHURN.read_text())
    raw = copy.deepcopy(raw)
    raw.update(task="regression", target="monthly_charges", slices=[])
    raw["metric"] = {"primary": "rmse", "floors": {"rmse": 10.0, "r2": 0.5}, "champion_margin": 0.1}
    return parse_problem(raw)


def test_regression_lower_rmse_is_better():
    spec = _regression_spec()
    baseline = {"rmse": 30.0, "r2": 0.0}
    champion = {"rmse": 8.0, "r2": 0.7}
    better = decide_promotion(spec, {"rmse": 7.5, "r2": 0.75}, baseline, champion)
    assert better.passed
    assert "rmse = 7.5000, floor: at most 10.0000" in better.reasons[0]
    assert "better by +0.5000" in better.reasons[-1]
    worse = decide_promotion(spec, {"rmse": 8.05, "r2": 0.7}, baseline, champion)
    assert not worse.passed
    above_floor = decide_promotion(spec, {"rmse": 12.0, "r2": 0.6}, baseline, None)
    assert above_floor.failures == ["rmse = 12.0000, floor: at most 10.0000"]
