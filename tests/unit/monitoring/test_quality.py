"""Data-quality checks of a window against the spec and the reference, and the rejection
rate, on small literal profiles: one passing and one failing case each."""

from __future__ import annotations

import numpy as np
import pandas as pd
from monitoring_cases import churn_like, sketches

from components.monitoring.quality import data_quality, rejection_rate


def test_a_clean_window_has_one_ok_finding(spec):
    (finding,) = data_quality(sketches(churn_like(1)), sketches(churn_like(0)), spec)
    assert finding.status == "ok"


def test_a_null_in_a_non_nullable_column_is_an_alert(spec):
    window = churn_like(2)
    window.loc[:2, "usage_hours"] = np.nan
    findings = data_quality(sketches(window), sketches(churn_like(0)), spec)
    assert [(f.subject, f.status) for f in findings] == [("usage_hours", "alert")]
    assert "3 nulls in a column that allows none" in findings[0].message


def test_null_rate_of_a_nullable_column_against_the_reference(spec):
    reference = churn_like(0)
    reference.loc[: len(reference) // 50, "total_charges"] = np.nan  # 2% in the reference
    a_few_more = churn_like(3)
    a_few_more.loc[: len(a_few_more) // 30, "total_charges"] = np.nan  # 3.3%: not 2x
    assert data_quality(sketches(a_few_more), sketches(reference), spec)[0].status == "ok"
    many = churn_like(4)
    many.loc[: len(many) // 10, "total_charges"] = np.nan  # 10%
    (finding,) = data_quality(sketches(many), sketches(reference), spec)
    assert finding.subject == "total_charges" and finding.status == "alert"
    assert "above 2x the reference's" in finding.message and "binomial p=" in finding.message


def test_values_outside_the_declared_range_are_alerts(spec):
    window = churn_like(5)
    window.loc[0, "monthly_charges"] = 6_250.0  # cents, not dollars
    window.loc[1, "discount_pct"] = -1.0
    findings = data_quality(sketches(window), sketches(churn_like(0)), spec)
    messages = sorted(f.message for f in findings)
    assert messages == [
        "discount_pct: minimum -1 below the declared 0",
        "monthly_charges: maximum 6250 above the declared 500",
    ]


def test_undeclared_categories_are_an_alert_naming_them(spec):
    window = churn_like(6)
    window.loc[:9, "region"] = "atlantis"
    (finding,) = data_quality(sketches(window), sketches(churn_like(0)), spec)
    assert finding.subject == "region"
    assert finding.message == "region: 10 rows with undeclared categories 'atlantis'"


def test_a_column_missing_from_the_window_is_an_alert(spec):
    window = churn_like(7).drop(columns=["plan"])
    findings = data_quality(sketches(window), sketches(churn_like(0)), spec)
    assert [f.message for f in findings] == ["plan: missing from the window's profile"]


def test_rejection_rate_against_the_limit(spec):
    ok = rejection_rate(4, 1_996, [], spec)  # 0.2%
    assert ok.status == "ok" and ok.value == 0.002
    bad = rejection_rate(60, 1_940, [("usage_hours: missing", 40), ("region: enum", 20)], spec)
    assert bad.status == "alert"
    assert bad.message == (
        "rejections: 60 of 2000 rows refused (3.00%), mostly usage_hours: missing (40), "
        "region: enum (20); above 0.50%"
    )
    assert rejection_rate(0, 0, [], spec).status == "ok"


def test_categorical_columns_with_nulls_profile_like_plain_ones():
    # Captured chunks read dictionary columns back as pandas categoricals.
    values = ["a", "b", None, "a"]
    plain = sketches(pd.DataFrame({"c": values}))["c"]
    categorical = sketches(pd.DataFrame({"c": pd.Categorical(values)}))["c"]
    assert (categorical.count, categorical.nulls, categorical.frequent) == (
        plain.count,
        plain.nulls,
        plain.frequent,
    )
