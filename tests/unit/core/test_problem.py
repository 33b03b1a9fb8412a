"""The problem file: the default loads, and each kind of mistake is named with its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from components.core.problem import ProblemSpecError, load_problem, parse_problem

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CHURN.read_text())


def _errors(raw: dict, change) -> list[str]:
    doc = copy.deepcopy(raw)
    change(doc)
    with pytest.raises(ProblemSpecError) as info:
        parse_problem(doc, source="problems/bad.yaml")
    assert str(info.value).startswith("invalid problem file problems/bad.yaml:")
    return info.value.problems


def test_default_problem_loads():
    spec = load_problem(CHURN)
    assert spec.name == "churn"
    assert spec.is_classification
    assert spec.target == "churned"
    assert spec.target not in spec.input_features
    assert len(spec.input_features) == 11
    assert spec.categorical_features == ["contract", "plan", "payment_method", "region"]
    assert spec.metric.floors["roc_auc"] == 0.75
    assert spec.metric.higher_is_better
    assert spec.data_quality.max_quarantined_fraction == 0.05
    # Channels that need a secret or an address are examples in comments, so that the
    # default problem monitors out of the box.
    assert [c.type for c in spec.alerts.channels] == ["log", "jsonl"]
    assert spec.features["support_calls"].monotone == "increasing"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(colour="blue"), "colour: unknown key"),
        (lambda d: d["features"]["plan"].update(colour="x"), "features.plan.colour: unknown key"),
        (lambda d: d.pop("target"), "target: required key is missing"),
        (lambda d: d.update(task="classification"), "task: Input should be"),
        (
            lambda d: d["features"]["tenure_months"].update(max="lots"),
            "features.tenure_months.max: Input should be a valid number",
        ),
        (lambda d: d.update(label_delay_days=-1), "label_delay_days: Input should be greater"),
        (
            lambda d: d.update(target="cancelled"),
            "target: 'cancelled' is not declared under features",
        ),
        (
            lambda d: d["features"]["plan"].update(categories=[]),
            "features.plan: categories is empty",
        ),
        (
            lambda d: d["features"]["plan"].update(categories=["a", "a"]),
            "features.plan: categories has duplicates",
        ),
        (
            lambda d: d["features"]["plan"].pop("categories"),
            "features.plan: a category feature needs 'categories'",
        ),
        (
            lambda d: d["features"]["tenure_months"].update(min=10, max=5),
            "features.tenure_months: min (10.0) is greater than max (5.0)",
        ),
        (
            lambda d: d["metric"]["floors"].update(roc_auc=1.5),
            "metric.floors.roc_auc: 1.5 is outside [0, 1]",
        ),
        (
            lambda d: d["metric"]["floors"].update(pr_auc=-0.1),
            "metric.floors.pr_auc: -0.1 is outside [0, 1]",
        ),
        (lambda d: d["metric"]["floors"].update(rmse=3), "metric.floors.rmse: not a metric of"),
        (lambda d: d["metric"].update(primary="accuracy"), "metric.primary: 'accuracy' does not"),
        (lambda d: d["metric"].update(champion_margin=-0.1), "metric.champion_margin: Input"),
        (
            lambda d: d["features"]["churned"].update(nullable=True),
            "features.churned.nullable: the target must not be nullable",
        ),
        (
            lambda d: d["features"]["churned"].update(categories=[0, 1, 2]),
            "features.churned: the target of a binary_classification task",
        ),
        (
            lambda d: d.update(id_column="region"),
            "id_column: 'region' must not also be declared under features",
        ),
        (lambda d: d["slices"].append({"column": "nope"}), "slices.3.column: 'nope' is not"),
        (
            lambda d: d["slices"].append({"column": "usage_hours"}),
            "slices.3.bins: a slice on numeric column 'usage_hours' needs bins",
        ),
        (
            lambda d: d["data_quality"].update(max_quarantined_fraction=2),
            "data_quality.max_quarantined_fraction: Input should be less than or equal to 1",
        ),
        (
            lambda d: d["monitoring"]["drift"].update(psi_warn=0.5),
            "monitoring.drift: psi_warn (0.5) is above psi_alert",
        ),
        (
            lambda d: d.update(drift=d.pop("monitoring")),
            "drift: this section is now monitoring",
        ),
        (
            lambda d: d["alerts"]["channels"].append({"type": "prefect"}),
            "alerts.channels.2.prefect.block: required key is missing",
        ),
        (
            lambda d: d["alerts"]["channels"].append({"type": "pager"}),
            "alerts.channels.2: Input tag 'pager' found using 'type' does not match",
        ),
        (
            lambda d: d["alerts"]["channels"].append({"type": "slack"}),
            "alerts.channels.2: give exactly one of webhook_url or webhook_url_env",
        ),
        (
            lambda d: d["features"]["contract"].update(min=0),
            "features.contract: min/max do not apply to a category feature",
        ),
    ],
)
def test_each_mistake_is_named(raw, change, expected):
    problems = _errors(raw, change)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once(raw):
    def two_mistakes(d):
        d.update(colour="blue")
        d["metric"]["floors"]["roc_auc"] = 7

    problems = _errors(raw, two_mistakes)
    assert any(p.startswith("colour:") for p in problems)


def test_regression_task_is_accepted(raw):
    doc = copy.deepcopy(raw)
    doc["task"] = "regression"
    doc["target"] = "monthly_charges"
    doc["metric"] = {"primary": "rmse", "floors": {"r2": 0.2}}
    doc["slices"] = [{"column": "contract"}]
    spec = parse_problem(doc)
    assert not spec.is_classification
    assert not spec.metric.higher_is_better
    assert "monthly_charges" not in spec.input_features


def test_regression_target_must_be_numeric(raw):
    doc = copy.deepcopy(raw)
    doc.update(task="regression", target="plan", metric={"primary": "rmse"}, slices=[])
    with pytest.raises(ProblemSpecError, match=r"features\.plan\.type: the target of a regression"):
        parse_problem(doc)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ProblemSpecError, match=r"nope\.yaml:\n  - file not found"):
        load_problem(tmp_path / "nope.yaml")


def test_invalid_yaml_gives_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: churn\nfeatures: {a: [1, 2}\n")
    with pytest.raises(ProblemSpecError, match=r"bad\.yaml:\n  - line 2, column \d+: not valid"):
        load_problem(bad)


def test_top_level_must_be_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- name\n- task\n")
    with pytest.raises(ProblemSpecError, match="top level must be a mapping"):
        load_problem(bad)
