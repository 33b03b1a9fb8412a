"""Evaluation plots as PNG bytes, for the model card and the registry.

Drawn with matplotlib's object-oriented API (a Figure on an Agg canvas): no pyplot, no
global state, no backend chosen at import, so it runs in flows, threads and tests alike.
PNGs carry no software or date metadata, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from components.core.problem import ProblemSpec
from components.model.evaluation import DEFAULT_THRESHOLD

_SIZE = (5, 4)  # inches
_DPI = 100
_MAX_POINTS = 5000  # scatter plots show a fixed random sample beyond this
_MAX_FEATURES = 20
_CALIBRATION_BINS = 10


def render_plots(
    spec: ProblemSpec, y_true, y_score, threshold: float | None, importance: dict[str, float]
) -> dict[str, bytes]:
    """PNG bytes by file name. Classification: roc, precision_recall, calibration,
    confusion_matrix (at the threshold; None means 0.5) and feature_importance.
    Regression: predicted_vs_actual, residuals and feature_importance."""
    y = np.asarray(y_true, dtype=float).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} rows but y_score has {len(s)}: they must align")
    if spec.is_classification:
        t = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        drawers = {
            "roc.png": lambda ax: _roc(ax, y, s),
            "precision_recall.png": lambda ax: _precision_recall(ax, y, s),
            "calibration.png": lambda ax: _calibration(ax, y, s),
            "confusion_matrix.png": lambda ax: _confusion(ax, y, s, t),
        }
    else:
        drawers = {
            "predicted_vs_actual.png": lambda ax: _predicted_vs_actual(ax, y, s),
            "residuals.png": lambda ax: _residuals(ax, y, s),
        }
    drawers["feature_importance.png"] = lambda ax: _importance(ax, importance)
    return {name: _png(draw, spec.name) for name, draw in drawers.items()}


def _png(draw, problem: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SIZE, dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax)
    ax.set_title(f"{problem}: {ax.get_title()}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _both_classes(y: np.ndarray) -> bool:
    return 0 < y.sum() < len(y)


def _roc(ax, y: np.ndarray, s: np.ndarray) -> None:
    ax.set_title("ROC curve")
    if not _both_classes(y):
        _note(ax, "ROC undefined: the labels hold one class only")
        return
    fpr, tpr, _ = roc_curve(y, s)
    ax.plot(fpr, tpr, lw=1.5, label="model")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)


def _precision_recall(ax, y: np.ndarray, s: np.ndarray) -> None:
    ax.set_title("Precision-recall curve")
    if not _both_classes(y):
        _note(ax, "Precision-recall undefined: the labels hold one class only")
        return
    precision, recall, _ = precision_recall_curve(y, s)
    ax.plot(recall, precision, lw=1.5, label="model")
    ax.axhline(y.mean(), ls="--", lw=1, color="grey", label="prevalence")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)


def _calibration(ax, y: np.ndarray, s: np.ndarray) -> None:
    """Reliability diagram: mean prediction against observed rate in quantile bins."""
    ax.set_title("Calibration (10 quantile bins)")
    if len(y) == 0:
        _note(ax, "no rows to plot")
        return
    edges = np.unique(np.quantile(s, np.linspace(0, 1, _CALIBRATION_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(bins)
    used = counts > 0
    predicted = np.bincount(bins, weights=s)[used] / counts[used]
    observed = np.bincount(bins, weights=y)[used] / counts[used]
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", lw=1.5, label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)


def _confusion(ax, y: np.ndarray, s: np.ndarray, threshold: float) -> None:
    predicted = s >= threshold
    actual = y == 1
    counts = np.array(
        [
            [np.sum(~actual & ~predicted), np.sum(~actual & predicted)],
            [np.sum(actual & ~predicted), np.sum(actual & predicted)],
        ]
    )
    ax.imshow(counts, cmap="Blues")
    high = counts.max() / 2 if counts.max() else 1
    for (i, j), count in np.ndenumerate(counts):
        colour = "white" if count > high else "black"
        ax.text(j, i, f"{count:,}", ha="center", va="center", color=colour, fontsize=12)
    ax.set_xticks([0, 1], labels=["predicted 0", "predicted 1"])
    ax.set_yticks([0, 1], labels=["actual 0", "actual 1"])
    ax.set_title(f"Confusion matrix at threshold {threshold:.4f}")


def _importance(ax, importance: dict[str, float]) -> None:
    ax.set_title("Feature importance (gain)")
    if not importance:
        _note(ax, "no feature importance recorded")
        return
    ranked = sorted(importance.items(), key=lambda kv: (-float(kv[1]), kv[0]))[:_MAX_FEATURES]
    names = [name for name, _ in reversed(ranked)]  # largest at the top
    values = [float(value) for _, value in reversed(ranked)]
    ax.barh(names, values, color="tab:blue")
    ax.set_xlabel("gain")
    ax.tick_params(axis="y", labelsize=8)


def _sample(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(y) <= _MAX_POINTS:
        return y, s
    keep = np.sort(np.random.default_rng(0).choice(len(y), _MAX_POINTS, replace=False))
    return y[keep], s[keep]


def _predicted_vs_actual(ax, y: np.ndarray, s: np.ndarray) -> None:
    ax.set_title("Predicted vs actual")
    if len(y) == 0:
        _note(ax, "no rows to plot")
        return
    ys, ss = _sample(y, s)
    ax.scatter(ys, ss, s=6, alpha=0.5)
    low, high = float(min(y.min(), s.min())), float(max(y.max(), s.max()))
    ax.plot([low, high], [low, high], ls="--", lw=1, color="grey", label="perfect")
    ax.set(xlabel="actual", ylabel="predicted")
    ax.legend(loc="upper left", fontsize=8)


def _residuals(ax, y: np.ndarray, s: np.ndarray) -> None:
    ax.set_title("Residuals (actual - predicted)")
    if len(y) == 0:
        _note(ax, "no rows to plot")
        return
    ys, ss = _sample(y, s)
    ax.scatter(ss, ys - ss, s=6, alpha=0.5)
    ax.axhline(0, ls="--", lw=1, color="grey")
    ax.set(xlabel="predicted", ylabel="residual")
