"""The churn generator: shape and contract of the data, and that each drift scenario changes
what it claims and nothing else."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from components.data.datagen import (
    SCENARIOS,
    GeneratorConfig,
    daily_batches,
    generate,
    label_rows,
    traffic_rows,
    training_rows,
    true_churn_probability,
)

PROBLEM = Path(__file__).resolve().parents[3] / "problems" / "churn.yaml"
ROWS = 100_000  # post-drift rows: about a third of these
SEED = 7
CATEGORY_COLUMNS = ("contract", "plan", "payment_method", "region")


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(PROBLEM.read_text())


@pytest.fixture(scope="module")
def features(spec) -> list[str]:
    """Input features in file order (the target is declared last among them)."""
    return [name for name in spec["features"] if name != spec["target"]]


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[GeneratorConfig, object]]:
    runs = {}
    for scenario in SCENARIOS:
        config = GeneratorConfig(rows=ROWS, seed=SEED, scenario=scenario)
        runs[scenario] = (config, generate(config))
    return runs


@pytest.fixture(scope="module")
def none(runs) -> pd.DataFrame:
    return runs["none"][1].frame


@pytest.fixture(scope="module")
def post(runs, none) -> np.ndarray:
    config = runs["none"][0]
    return (none["event_time"] >= pd.Timestamp(config.drift_start)).to_numpy()


def _z(observed: np.ndarray, probability: np.ndarray) -> float:
    """Standardised difference between observed labels and their Bernoulli probabilities."""
    return (observed.sum() - probability.sum()) / math.sqrt((probability * (1 - probability)).sum())


def _out_of_contract(value, feature: dict) -> bool:
    if pd.isna(value):
        return not feature.get("nullable", False)
    if feature["type"] == "category":
        return value not in feature["categories"]
    return not feature["min"] <= value <= feature["max"]


# --- shape and contract ---------------------------------------------------------------------


def test_same_config_gives_the_same_data_and_another_seed_does_not():
    config = GeneratorConfig(rows=5_000, days=10, drift_day=5, scenario="quality", seed=3)
    first, second = generate(config), generate(config)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    pd.testing.assert_frame_equal(first.corruptions, second.corruptions)
    other = generate(GeneratorConfig(rows=5_000, days=10, drift_day=5, scenario="quality", seed=4))
    assert not other.frame["monthly_charges"].equals(first.frame["monthly_charges"])
    assert not other.frame["churned"].equals(first.frame["churned"])


def test_columns_and_dtypes_follow_the_problem_file(spec, none):
    assert list(none.columns) == [
        spec["id_column"],
        spec["event_time_column"],
        *spec["features"],
        "label_time",
    ]
    for name, feature in spec["features"].items():
        dtype = none[name].dtype
        if feature["type"] == "category":
            assert pd.api.types.is_string_dtype(dtype), name
            assert not isinstance(dtype, pd.CategoricalDtype), name
        else:
            expected = {"int": np.dtype("int64"), "float": np.dtype("float64")}[feature["type"]]
            assert dtype == expected, name
    assert pd.api.types.is_string_dtype(none["customer_id"].dtype)
    for column in ("event_time", "label_time"):
        assert isinstance(none[column].dtype, pd.DatetimeTZDtype)
        assert str(none[column].dt.tz) == "UTC"


@pytest.mark.parametrize("scenario", ["none", "covariate", "concept"])
def test_clean_scenarios_respect_ranges_categories_and_nullability(spec, runs, scenario):
    frame = runs[scenario][1].frame
    for name, feature in spec["features"].items():
        values = frame[name]
        if not feature.get("nullable", False):
            assert values.notna().all(), name
        values = values.dropna()
        if "categories" in feature:
            assert set(values.unique()) <= set(feature["categories"]), name
        if "min" in feature:
            assert values.min() >= feature["min"], name
            assert values.max() <= feature["max"], name
    # total_charges is null exactly for first-month customers
    assert (frame["total_charges"].isna() == (frame["tenure_months"] == 0)).all()
    assert frame["monthly_charges"].min() >= 15  # so that x100 always leaves the range


def test_every_category_and_the_tenure_extremes_occur(spec, none):
    for name in CATEGORY_COLUMNS:
        assert set(none[name].unique()) == set(spec["features"][name]["categories"]), name
    assert (none["tenure_months"] == 0).any()
    assert none["support_calls"].nunique() > 5


def test_ids_times_days_and_label_delay(runs, none):
    config = runs["none"][0]
    assert none["customer_id"].is_unique
    assert none["customer_id"].iloc[0] == "C00000001"
    assert none["event_time"].is_monotonic_increasing
    days = none["event_time"].dt.floor("D").dt.date
    expected = [config.start + timedelta(days=i) for i in range(config.days)]
    assert sorted(days.unique()) == expected
    delay = pd.Timedelta(days=config.label_delay_days)
    assert (none["label_time"] - none["event_time"] == delay).all()
    assert config.drift_start == datetime(2026, 3, 2, tzinfo=config.drift_start.tzinfo)


def test_every_day_has_rows_even_when_rows_equal_days():
    frame = generate(GeneratorConfig(rows=7, days=7, drift_day=3)).frame
    assert frame["event_time"].dt.floor("D").nunique() == 7


def test_weekends_are_quieter_and_volume_is_deterministic(none):
    per_day = none.groupby(none["event_time"].dt.floor("D")).size()
    weekend = per_day.index.day_of_week >= 5
    assert per_day[weekend].mean() < 0.9 * per_day[~weekend].mean()


def test_churn_rate_is_realistic_and_matches_the_true_probability(none):
    rate = none["churned"].mean()
    assert 0.15 <= rate <= 0.30
    p = true_churn_probability(none)
    assert abs(_z(none["churned"].to_numpy(), p)) < 4


def test_daily_batches_split_by_day_in_order():
    config = GeneratorConfig(rows=3_000, days=10, drift_day=5)
    frame = generate(config).frame
    batches = list(daily_batches(frame))
    assert [day for day, _ in batches] == [config.start + timedelta(days=i) for i in range(10)]
    for day, batch in batches:
        assert (batch["event_time"].dt.date == day).all()
    pd.testing.assert_frame_equal(pd.concat([b for _, b in batches]), frame)


# --- what each consumer sees ----------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return generate(GeneratorConfig(rows=2_000, days=40, drift_day=20)).frame


def test_training_and_label_rows_include_the_as_of_boundary(small):
    boundary = small["label_time"].iloc[1_000]
    as_of = boundary.to_pydatetime()
    train = training_rows(small, as_of)
    labels = label_rows(small, as_of)
    assert len(train) == len(labels) == int((small["label_time"] <= boundary).sum())
    assert small["customer_id"].iloc[1_000] in set(train["customer_id"])
    assert "label_time" not in train.columns
    assert list(train.columns) == [c for c in small.columns if c != "label_time"]
    assert list(labels.columns) == ["customer_id", "churned", "label_time"]
    assert (labels["label_time"] <= boundary).all()
    just_before = as_of - timedelta(microseconds=1)
    assert len(training_rows(small, just_before)) == len(train) - 1
    assert len(label_rows(small, just_before)) == len(labels) - 1


def test_a_naive_as_of_is_read_as_utc(small):
    aware = small["label_time"].iloc[500].to_pydatetime()
    naive = aware.replace(tzinfo=None)
    pd.testing.assert_frame_equal(training_rows(small, naive), training_rows(small, aware))
    pd.testing.assert_frame_equal(label_rows(small, naive), label_rows(small, aware))


def test_nothing_is_labelled_before_the_delay(small):
    first = small["event_time"].min().to_pydatetime()
    assert training_rows(small, first + timedelta(days=29)).empty


def test_traffic_rows_hold_features_only(small, features):
    traffic = traffic_rows(small)
    assert list(traffic.columns) == ["customer_id", "event_time", *features]
    assert len(traffic) == len(small)


# --- the true probability -------------------------------------------------------------------


def _customer(**overrides) -> dict:
    row = {
        "tenure_months": 120,
        "contract": "two-year",
        "plan": "basic",
        "monthly_charges": 20.0,
        "total_charges": 2400.0,
        "payment_method": "credit-card",
        "region": "north",
        "support_calls": 0,
        "usage_hours": 744.0,
        "tickets_open": 0,
        "discount_pct": 0.0,
    }
    return row | overrides


def test_true_probability_of_a_loyal_customer_is_the_documented_value():
    p = true_churn_probability(pd.DataFrame([_customer()]))
    eta = -3.4 + 2.4 * math.exp(-12) - 1.7 + 2.0 * math.exp(-744 / 20)
    assert p[0] == pytest.approx(0.02 + 0.96 / (1 + math.exp(-eta)), rel=1e-12)


def test_true_probability_rises_strictly_with_support_calls():
    for base in (
        _customer(),
        _customer(contract="month-to-month", tenure_months=2, monthly_charges=110.0),
    ):
        frame = pd.DataFrame([base | {"support_calls": calls} for calls in range(51)])
        for concept in (False, True):
            assert np.all(np.diff(true_churn_probability(frame, concept=concept)) > 0)


def test_true_probability_is_nan_for_unknown_categories_and_nulls():
    frame = pd.DataFrame(
        [_customer(payment_method="crypto"), _customer(monthly_charges=np.nan), _customer()]
    )
    p = true_churn_probability(frame)
    assert np.isnan(p[:2]).all()
    assert 0 < p[2] < 1


def test_concept_function_targets_long_tenure_two_year_customers():
    frame = pd.DataFrame([_customer(), _customer(contract="month-to-month", tenure_months=3)])
    base, concept = true_churn_probability(frame), true_churn_probability(frame, concept=True)
    assert concept[0] > 3 * base[0]  # targeted by the competitor
    assert 1 < concept[1] / base[1] < 1.5  # only the small general shift


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("rows", {"rows": 0}),
        ("rows", {"rows": 10, "days": 20}),
        ("days", {"days": 0}),
        ("seed", {"seed": -1}),
        ("start", {"start": datetime(2026, 1, 1)}),
        ("drift_day", {"drift_day": -1}),
        ("drift_day", {"scenario": "covariate", "days": 30, "drift_day": 30}),
        ("label_delay_days", {"label_delay_days": -1}),
        ("quality_fraction", {"quality_fraction": 1.5}),
        ("quality_fraction", {"quality_fraction": -0.1}),
    ],
)
def test_invalid_config_names_the_field(field, overrides):
    with pytest.raises(ValueError, match=field):
        GeneratorConfig(**overrides)


def test_unknown_scenario_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="scenario") as error:
        GeneratorConfig(scenario="chaos")
    for allowed in SCENARIOS:
        assert allowed in str(error.value)


def test_the_defaults_are_valid():
    config = GeneratorConfig()
    assert (config.rows, config.days, config.drift_day, config.scenario) == (
        100_000,
        90,
        60,
        "none",
    )
    assert config.start == date(2026, 1, 1)


# --- scenarios ------------------------------------------------------------------------------


def test_no_drift_across_the_drift_day_without_a_scenario(none, post):
    for column in ("monthly_charges", "usage_hours", "tenure_months", "support_calls"):
        pvalue = stats.ks_2samp(none.loc[~post, column], none.loc[post, column]).pvalue
        assert pvalue > 1e-3, column
    table = pd.crosstab(post, none["plan"])
    assert stats.chi2_contingency(table).pvalue > 1e-3
    assert abs(_z(none.loc[post, "churned"].to_numpy(), true_churn_probability(none[post]))) < 4


@pytest.mark.parametrize("scenario", ["covariate", "concept", "quality"])
def test_pre_drift_rows_are_identical_to_none(runs, none, post, scenario):
    frame = runs[scenario][1].frame
    pd.testing.assert_frame_equal(frame[~post], none[~post], check_dtype=False)


def test_covariate_raises_prices_and_shifts_the_plan_mix(runs, none, post):
    drifted = runs["covariate"][1].frame
    before, after = none.loc[post], drifted.loc[post]
    assert stats.ks_2samp(after["monthly_charges"], before["monthly_charges"]).pvalue < 1e-6
    assert after["monthly_charges"].mean() > 1.2 * before["monthly_charges"].mean()
    premium_before = (before["plan"] == "premium").mean()
    assert (after["plan"] == "premium").mean() > premium_before + 0.1
    # where the plan stayed, the bill is the same bill times 1.2 (cents rounding aside)
    same = (after["plan"] == before["plan"]) & (before["monthly_charges"] >= 20)
    ratio = after.loc[same, "monthly_charges"] / before.loc[same, "monthly_charges"]
    assert ratio.between(1.2 - 0.001, 1.2 + 0.001).all()
    # total_charges follows monthly_charges with the same tenure and billing noise
    billed = before["total_charges"].notna() & (before["total_charges"] > 100)
    months_before = before.loc[billed, "total_charges"] / before.loc[billed, "monthly_charges"]
    months_after = after.loc[billed, "total_charges"] / after.loc[billed, "monthly_charges"]
    np.testing.assert_allclose(months_after, months_before, rtol=2e-3)


def test_covariate_changes_only_plan_and_charges(runs, none, features):
    drifted = runs["covariate"][1].frame
    untouched = [c for c in features if c not in ("plan", "monthly_charges", "total_charges")]
    pd.testing.assert_frame_equal(drifted[untouched], none[untouched])
    pd.testing.assert_frame_equal(
        drifted[["customer_id", "event_time", "label_time"]],
        none[["customer_id", "event_time", "label_time"]],
    )


def test_covariate_keeps_p_churn_given_x(runs, post):
    after = runs["covariate"][1].frame.loc[post]
    y, p = after["churned"].to_numpy(), true_churn_probability(after)
    assert abs(_z(y, p)) < 4
    deciles = pd.qcut(p, 10, labels=False)
    for decile in range(10):
        in_bin = deciles == decile
        assert abs(_z(y[in_bin], p[in_bin])) < 4, decile


def test_concept_keeps_every_feature_and_changes_labels_after_drift(runs, none, post):
    drifted = runs["concept"][1].frame
    pd.testing.assert_frame_equal(traffic_rows(drifted), traffic_rows(none))
    assert drifted.loc[~post, "churned"].equals(none.loc[~post, "churned"])
    after = drifted.loc[post]
    y = after["churned"].to_numpy()
    baseline, concept = true_churn_probability(after), true_churn_probability(after, concept=True)
    assert _z(y, baseline) > 10  # far from the old P(churn | x)
    assert abs(_z(y, concept)) < 4  # and consistent with the new one
    targeted = ((after["contract"] == "two-year") & (after["tenure_months"] >= 48)).to_numpy()
    assert targeted.sum() > 300
    assert y[targeted].mean() > 3 * baseline[targeted].mean()
    assert _z(y[targeted], baseline[targeted]) > 10
    assert abs(_z(y[targeted], concept[targeted])) < 4


@pytest.fixture(scope="module")
def quality(runs):
    config, generated = runs["quality"]
    return config, generated.frame, generated.corruptions


def test_quality_corrupts_the_declared_share_of_post_drift_rows(quality, post):
    config, frame, corruptions = quality
    assert list(corruptions.columns) == ["customer_id", "column", "kind"]
    assert abs(len(corruptions) - config.quality_fraction * post.sum()) <= 1
    assert corruptions["customer_id"].is_unique  # one corruption per corrupted row
    assert set(corruptions["kind"]) == {"null", "out_of_range", "unit_change", "unseen_category"}
    assert corruptions["kind"].value_counts().max() - corruptions["kind"].value_counts().min() <= 1
    post_ids = set(frame.loc[post, "customer_id"])
    assert set(corruptions["customer_id"]) <= post_ids  # nothing before drift_day
    assert frame["tenure_months"].dtype == "Int64"


def test_every_corrupted_cell_breaks_the_contract(spec, quality, none):
    _, frame, corruptions = quality
    position = pd.Series(np.arange(len(frame)), index=frame["customer_id"])
    for (column, kind), cells in corruptions.groupby(["column", "kind"]):
        rows = position[cells["customer_id"]].to_numpy()
        values = frame[column].iloc[rows]
        feature = spec["features"][column]
        assert all(_out_of_contract(v, feature) for v in values), (column, kind)
        if kind == "null":
            assert values.isna().all()
        if kind == "unit_change":
            np.testing.assert_allclose(values, none[column].iloc[rows] * 100)


def test_every_other_cell_and_every_label_equals_none(quality, none):
    _, frame, corruptions = quality
    pd.testing.assert_series_equal(frame["churned"], none["churned"])
    corrupted = set(zip(corruptions["customer_id"], corruptions["column"], strict=True))
    for column in frame.columns:
        hit = frame["customer_id"].isin({cid for cid, col in corrupted if col == column})
        pd.testing.assert_series_equal(
            frame.loc[~hit, column], none.loc[~hit, column], check_dtype=False
        )


def test_other_scenarios_record_no_corruptions(runs):
    for scenario in ("none", "covariate", "concept"):
        corruptions = runs[scenario][1].corruptions
        assert corruptions.empty
        assert list(corruptions.columns) == ["customer_id", "column", "kind"]


def test_a_zero_quality_fraction_corrupts_nothing():
    config = GeneratorConfig(rows=2_000, days=10, drift_day=5, scenario="quality")
    clean = generate(GeneratorConfig(rows=2_000, days=10, drift_day=5)).frame
    generated = generate(GeneratorConfig(**{**config.__dict__, "quality_fraction": 0.0}))
    assert generated.corruptions.empty
    pd.testing.assert_frame_equal(generated.frame, clean, check_dtype=False)


# --- scale ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_million_rows_generate_with_compact_dtypes():
    frame = generate(GeneratorConfig(rows=1_000_000, scenario="covariate")).frame
    assert len(frame) == 1_000_000
    assert frame["customer_id"].is_unique
    assert not any(pd.api.types.is_object_dtype(dtype) for dtype in frame.dtypes)
    assert frame.memory_usage(deep=True).sum() < 300 * 1_000_000  # bytes: ~165 per row
