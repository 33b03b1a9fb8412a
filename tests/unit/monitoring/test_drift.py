"""Feature drift (PSI) and prediction drift (KS and mean shift) on small literal profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from monitoring_cases import churn_like, sketches

from components.monitoring.drift import (
    category_shares,
    feature_drift,
    ks_from_sketches,
    numeric_shares,
    prediction_drift,
    psi,
)


@pytest.fixture(scope="module")
def reference():
    return sketches(churn_like(0, rows=10_000))


def test_psi_of_equal_shares_is_zero_and_grows_with_the_shift():
    assert psi(np.full(4, 0.25), np.full(4, 0.25), 1e-4) == 0
    small = psi(np.full(4, 0.25), np.array([0.3, 0.2, 0.25, 0.25]), 1e-4)
    large = psi(np.full(4, 0.25), np.array([0.7, 0.1, 0.1, 0.1]), 1e-4)
    assert 0 < small < 0.1 < 0.25 < large


def test_an_empty_bin_gives_a_large_finite_index():
    assert 1 < psi(np.array([0.5, 0.5]), np.array([1.0, 0.0]), 1e-4) < 10


def test_numeric_bins_are_the_references_deciles(reference):
    window = sketches(churn_like(1))
    expected, actual = numeric_shares(reference["usage_hours"], window["usage_hours"], 10)
    assert len(expected) == 10
    assert expected == pytest.approx(np.full(10, 0.1), abs=0.02)
    assert actual.sum() == pytest.approx(1.0)


def test_category_shares_keep_values_seen_on_one_side_only():
    ref = sketches(pd.DataFrame({"c": ["a"] * 60 + ["b"] * 40}))["c"]
    win = sketches(pd.DataFrame({"c": ["a"] * 50 + ["z"] * 50}))["c"]
    values, expected, actual = category_shares(ref, win)
    assert values == ["a", "b", "z"]
    assert expected[:3] == pytest.approx([0.6, 0.4, 0.0])
    assert actual[:3] == pytest.approx([0.5, 0.0, 0.5])


def test_a_window_like_the_reference_is_ok_on_every_feature(reference, spec):
    findings = feature_drift(reference, sketches(churn_like(2)), spec)
    assert [f.subject for f in findings] == spec.input_features
    assert {f.status for f in findings} == {"ok"}
    assert max(f.value for f in findings) < 0.05


def test_a_price_rise_is_an_alert_on_that_feature_only(reference, spec):
    risen = churn_like(3, monthly_charges=lambda rng, n: rng.gamma(4.0, 16.0, n) * 1.4)
    findings = {f.subject: f for f in feature_drift(reference, sketches(risen), spec)}
    assert findings["monthly_charges"].status == "alert"
    assert findings["monthly_charges"].value >= 0.25
    assert "monthly_charges: PSI" in findings["monthly_charges"].message
    assert {f.status for name, f in findings.items() if name != "monthly_charges"} == {"ok"}


def test_a_shift_in_the_plan_mix_is_a_warning_or_more(reference, spec):
    shifted = churn_like(
        4,
        contract=lambda rng, n: rng.choice(
            ["month-to-month", "one-year", "two-year"], n, p=[0.3, 0.3, 0.4]
        ),
    )
    finding = {f.subject: f for f in feature_drift(reference, sketches(shifted), spec)}["contract"]
    assert finding.status in ("warn", "alert")
    assert finding.value >= 0.10


def test_a_small_window_is_insufficient_data(reference, spec):
    (finding,) = feature_drift(reference, sketches(churn_like(5, rows=499)), spec)
    assert finding.status == "insufficient data"
    assert "499 rows" in finding.message and "500" in finding.message


def test_ks_on_sketches_finds_a_shift_and_not_noise():
    rng = np.random.default_rng(7)
    a = sketches(pd.DataFrame({"s": rng.beta(2, 5, 20_000)}))["s"]
    same = sketches(pd.DataFrame({"s": rng.beta(2, 5, 3_000)}))["s"]
    moved = sketches(pd.DataFrame({"s": rng.beta(2.6, 5, 3_000)}))["s"]
    assert ks_from_sketches(a, same)[1] > 0.01
    d, p = ks_from_sketches(a, moved)
    assert d > 0.05 and p < 1e-6


def _scores(seed: int, a: float, rows: int) -> dict:
    rng = np.random.default_rng(seed)
    return sketches(pd.DataFrame({"probability": rng.beta(a, 5, rows)}))["probability"]


def test_prediction_drift_warns_on_moved_scores_only(spec):
    reference = _scores(1, 2.0, 20_000)
    assert prediction_drift(reference, _scores(2, 2.0, 3_000), spec).status == "ok"
    moved = prediction_drift(reference, _scores(3, 2.8, 3_000), spec)
    assert moved.status == "warn"
    assert moved.value >= 0.02 and "KS D=" in moved.message


def test_a_significant_but_tiny_score_shift_is_not_a_warning(spec):
    # Very many rows make KS significant for a shift too small to matter.
    reference = _scores(4, 2.0, 200_000)
    finding = prediction_drift(reference, _scores(5, 2.06, 200_000), spec)
    assert abs(finding.value) < 0.02
    assert finding.status == "ok"


def test_prediction_drift_without_a_reference_or_rows(spec):
    assert "no score reference" in prediction_drift(None, _scores(6, 2.0, 600), spec).message
    few = prediction_drift(_scores(7, 2.0, 5_000), _scores(8, 2.0, 100), spec)
    assert few.status == "insufficient data"
