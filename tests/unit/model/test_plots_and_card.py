"""Plots are valid PNGs for both tasks and for degenerate labels; the model card shows
every section, escapes text and is one self-contained HTML file."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.problem import load_problem, parse_problem
from components.model.evaluation import slice_metrics
from components.model.model_card import ModelCard, format_value, render_html, render_markdown
from components.model.plots import render_plots

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
PNG = b"\x89PNG\r\n\x1a\n"
IMPORTANCE = {"tenure_months": 12.5, "contract": 30.0, "support_calls": 7.25}
CLASSIFICATION_PLOTS = {
    "roc.png",
    "precision_recall.png",
    "calibration.png",
    "confusion_matrix.png",
    "feature_importance.png",
}


@pytest.fixture(scope="module")
def churn():
    return load_problem(CHURN)


@pytest.fixture(scope="module")
def regression(churn):
    raw = churn.model_dump(exclude_none=True)
    raw.update(task="regression", target="monthly_charges", metric={"primary": "rmse"})
    return parse_problem(raw)


def _size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])  # IHDR width and height


def _assert_pngs(plots: dict[str, bytes]) -> None:
    for name, png in plots.items():
        assert png.startswith(PNG), name
        width, height = _size(png)
        assert 300 <= width <= 600 and 300 <= height <= 500, (name, width, height)


# --- plots -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classification_plots(churn):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    return render_plots(churn, y, p, 0.4, IMPORTANCE)


def test_classification_plots_are_pngs(classification_plots):
    assert set(classification_plots) == CLASSIFICATION_PLOTS
    _assert_pngs(classification_plots)


def test_plots_are_deterministic(churn, classification_plots):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    assert render_plots(churn, y, p, 0.4, IMPORTANCE) == classification_plots


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_labels_still_plot(churn, label):
    plots = render_plots(churn, np.full(6, label), np.linspace(0.1, 0.9, 6), None, {})
    assert set(plots) == CLASSIFICATION_PLOTS
    _assert_pngs(plots)


def test_constant_scores_still_plot(churn):
    _assert_pngs(render_plots(churn, [0, 1, 0, 1], [0.5] * 4, 0.5, IMPORTANCE))


def test_regression_plots_are_pngs(regression):
    y = np.array([10.0, 20.0, 30.0, 40.0, 55.0, 61.0])
    plots = render_plots(regression, y, y * 1.1 - 2, None, IMPORTANCE)
    assert set(plots) == {"predicted_vs_actual.png", "residuals.png", "feature_importance.png"}
    _assert_pngs(plots)


def test_plots_reject_misaligned_inputs(churn):
    with pytest.raises(ValueError, match="3 rows but y_score has 2"):
        render_plots(churn, [0, 1, 0], [0.1, 0.2], 0.5, {})


# --- model card --------------------------------------------------------------------------


def _card(churn, **changes) -> ModelCard:
    frame = pd.DataFrame(
        {
            "contract": ["month-to-month", "one-year", "two-year", "month-to-month"],
            "region": ["north", "south", "east", "west"],
            "tenure_months": [1, 10, 30, 130],
        }
    )
    slices = slice_metrics(churn, frame, [1, 0, 0, 1], [0.9, 0.2, 0.1, 0.6], 0.5)
    fields = {
        "problem": "churn",
        "description": "Predict <b>churn</b> & act",
        "task": "binary_classification",
        "version": "v7",
        "status": "challenger",
        "created_at": "2024-05-01T00:00:00+00:00",
        "code_version": "abc1234",
        "snapshot_id": "0123456789abcdef",
        "rows": {"train": 7000, "validation": 1500, "test": 1500},
        "params": {"max_depth": 4, "eta": 0.05, "alpha": 1e-5, "objective": "binary:logistic"},
        "metrics": {"roc_auc": 0.81234, "pr_auc": 0.5, "log_loss": 0.4, "n": 1500},
        "cv": {"metric": "roc_auc", "mean": 0.8, "std": 0.01, "folds": 5, "scores": [0.8] * 5},
        "baseline": {"roc_auc": 0.5, "pr_auc": 0.2, "log_loss": 0.5, "n": 1500},
        "champion": {"roc_auc": 0.8, "pr_auc": float("nan"), "log_loss": 0.41, "n": 1500},
        "threshold": 0.3125,
        "slices": slices.to_dict("records"),
        "gate_passed": False,
        "gate_reasons": ["roc_auc 0.8123 >= floor 0.75", "pr_auc 0.5000 < champion | margin"],
        "intended_use": "Rank customers for retention offers.",
        "limitations": ["Trained on generated data.", "Labels arrive 30 days late."],
        "primary_metric": "roc_auc",
    }
    fields.update(changes)
    return ModelCard(**fields)


def test_number_formatting():
    assert format_value(0.123456) == "0.1235"
    assert format_value(float("nan")) == "n/a"
    assert format_value(None) == "n/a"
    assert format_value(1500.0, "n") == "1,500"
    assert format_value(3) == "3"


def test_markdown_has_every_section_metric_and_reason(churn):
    card = _card(churn)
    md = render_markdown(card, ["roc.png", "calibration.png"])
    assert md.startswith("# Model card: churn, version v7 (challenger)")
    for heading in (
        "Problem",
        "Data",
        "Parameters",
        "Test metrics",
        "Cross-validation",
        "Decision threshold",
        "Slices",
        "Gate decision",
        "Plots",
        "Intended use",
        "Limitations",
    ):
        assert f"## {heading}\n" in md
    for reason in card.gate_reasons:
        assert reason.replace("|", "\\|") in md or reason in md
    assert "- roc_auc 0.8123 >= floor 0.75" in md
    assert "**FAILED**" in md
    for metric in card.metrics:
        assert f"| {metric}" in md
    assert "| roc_auc (primary) | 0.8123 | 0.5000 | 0.8000 |" in md
    assert "| pr_auc | 0.5000 | 0.2000 | n/a |" in md  # champion's NaN
    assert "| n | 1,500 | 1,500 | 1,500 |" in md
    assert "roc_auc vs baseline: +0.3123" in md
    assert "roc_auc vs champion: +0.0123" in md
    assert "roc_auc: 0.8000 ± 0.0100 over 5 folds" in md
    assert "0.3125" in md
    assert "| alpha | 1e-05 |" in md
    assert "| test rows | 1,500 |" in md
    assert "0123456789abcdef" in md
    assert "| tenure_band | outside bins | 1 | 1 |" in md
    assert "![roc.png](plots/roc.png)" in md and "![calibration.png](plots/calibration.png)" in md
    for limitation in card.limitations:
        assert f"- {limitation}" in md


def test_delta_respects_lower_is_better(churn):
    card = _card(
        churn,
        primary_metric="log_loss",
        metrics={"log_loss": 0.40},
        baseline={"log_loss": 0.50},
        champion={"log_loss": 0.30},
    )
    md = render_markdown(card, [])
    assert "log_loss vs baseline: +0.1000" in md
    assert "log_loss vs champion: -0.1000" in md


def test_markdown_without_champion_cv_or_threshold(churn):
    card = _card(churn, champion=None, cv=None, threshold=None, gate_passed=True, gate_reasons=[])
    md = render_markdown(card, [])
    assert "vs champion" not in md and "| champion" not in md
    assert "not run" in md and "**PASSED**" in md
    assert "n/a (no decision threshold" in md


def test_html_is_self_contained_and_escaped(churn, classification_plots):
    card = _card(churn)
    page = render_html(card, classification_plots)
    assert page.startswith("<!DOCTYPE html>")
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert forbidden not in page.lower()
    for png in classification_plots.values():
        assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
    assert "Predict &lt;b&gt;churn&lt;/b&gt; &amp; act" in page
    assert "<b>churn" not in page
    for reason in card.gate_reasons:
        assert reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page
    for metric in card.metrics:
        assert f"<td>{metric}" in page
    assert "FAILED" in page and "0.8123" in page and "n/a" in page


def test_html_escapes_every_text_field(churn):
    evil = "<i>x</i>"
    card = _card(
        churn,
        problem=evil,
        version=evil,
        status=evil,
        snapshot_id=evil,
        params={evil: evil},
        gate_reasons=[evil],
        intended_use=evil,
        limitations=[evil],
    )
    page = render_html(card, {evil: PNG})
    assert "<i>" not in page
    assert page.count("&lt;i&gt;x&lt;/i&gt;") >= 9
