"""The model card: what a model version is, how it was made, how well it does and whether
the gate let it through, as Markdown (beside the plots in the registry) and as one
self-contained HTML file (inline CSS, plots as data: URIs, no scripts, nothing fetched).
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from pydantic import BaseModel

from components.model.evaluation import improvement

# Values shown as whole numbers even when they arrive as floats (e.g. 6.0 rows).
_COUNT_KEYS = {"n", "positives", "folds", "train", "validation", "test"}
# Allow data: images and inline styles, nothing else: the page never loads anything.
PAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# The house style of the self-contained pages (this card, the monitoring report).
PAGE_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 64rem;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
.badge { padding: .1rem .5rem; border-radius: .3rem; font-size: .9rem; white-space: nowrap; }
img { max-width: 100%; }
"""
_CSS = (
    PAGE_CSS
    + """.pass { background: #dafbe1; color: #116329; }
.fail { background: #ffebe9; color: #a40e26; }
figure { display: inline-block; margin: .5rem; } figcaption { font-size: .8rem; }
"""
)


class ModelCard(BaseModel):
    """Everything the card shows; built by the training flow, stored with the version."""

    problem: str
    description: str
    task: str
    version: str
    status: str  # "champion", "challenger", "rejected", ...
    created_at: str
    code_version: str | None
    snapshot_id: str
    rows: dict[str, int]  # {"train": ..., "validation": ..., "test": ...}
    params: dict[str, Any]
    metrics: dict[str, float]  # test metrics
    cv: dict[str, Any] | None  # {"metric": "roc_auc", "mean": ..., "std": ..., "folds": k}
    baseline: dict[str, float]
    champion: dict[str, float] | None  # the current champion on the same test data, if any
    threshold: float | None
    slices: list[dict[str, Any]]  # rows of slice_metrics(...).to_dict("records")
    gate_passed: bool
    gate_reasons: list[str]
    intended_use: str
    limitations: list[str]
    primary_metric: str | None = None  # defaults to cv["metric"]; marks the delta row
    # A retrained challenger: what its test rows were (the held-out production window),
    # and the shadow check of its answers on the last window's traffic.
    evaluated_on: str | None = None
    shadow: dict[str, Any] | None = None

    @property
    def primary(self) -> str | None:
        return self.primary_metric or (self.cv or {}).get("metric")


def format_value(value: Any, key: str = "") -> str:
    """4 decimals for numbers, whole numbers for counts, "n/a" for NaN or missing."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        number = float(value)
        if math.isnan(number):
            return "n/a"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        if isinstance(value, int) or (key in _COUNT_KEYS and number.is_integer()):
            return f"{int(number):,}" if key in _COUNT_KEYS else str(int(number))
        return f"{number:.4f}"
    return str(value)


def _signed(value: float) -> str:
    text = format_value(value)
    return text if text == "n/a" or value < 0 else f"+{text}"


# --- the content, shared by both formats ------------------------------------------------


def _title(card: ModelCard) -> str:
    return f"Model card: {card.problem}, version {card.version} ({card.status})"


def _data_rows(card: ModelCard) -> list[list[str]]:
    rows = [["snapshot", card.snapshot_id], ["created at", card.created_at]]
    rows.append(["code version", card.code_version or "n/a"])
    rows += [[f"{split} rows", format_value(n, "n")] for split, n in card.rows.items()]
    return rows


def _metric_table(card: ModelCard) -> tuple[list[str], list[list[str]]]:
    sources = [("this model", card.metrics), ("baseline", card.baseline)]
    if card.champion is not None:
        sources.append(("champion", card.champion))
    names = list(dict.fromkeys(k for _, values in sources for k in values))
    primary = card.primary
    header = ["metric", *(label for label, _ in sources)]
    rows = []
    for name in names:
        label = f"{name} (primary)" if name == primary else name
        rows.append([label, *(format_value(values.get(name), name) for _, values in sources)])
    return header, rows


def _deltas(card: ModelCard) -> list[str]:
    """The primary metric's improvement over the baseline and the champion (+ is better)."""
    primary = card.primary
    if primary is None or primary not in card.metrics:
        return []
    mine = card.metrics[primary]
    lines = []
    for label, other in (("baseline", card.baseline), ("champion", card.champion)):
        if other is not None and primary in other:
            delta = improvement(primary, mine, other[primary])
            lines.append(f"{primary} vs {label}: {_signed(delta)} (positive means better)")
    return lines


def _cv_text(card: ModelCard) -> str:
    if not card.cv:
        return "not run"
    cv = card.cv
    mean, std = format_value(cv.get("mean")), format_value(cv.get("std"))
    folds = format_value(cv.get("folds"), "folds")
    return f"{cv.get('metric', 'primary metric')}: {mean} ± {std} over {folds} folds"


def _threshold_text(card: ModelCard) -> str:
    if card.threshold is None:
        return "n/a (no decision threshold for this task)"
    return f"{format_value(card.threshold)} (a row is predicted positive at or above it)"


def _slice_table(card: ModelCard) -> tuple[list[str], list[list[str]]]:
    header = list(dict.fromkeys(k for row in card.slices for k in row))
    rows = [[format_value(row.get(k), k) for k in header] for row in card.slices]
    return header, rows


def _param_value(value: Any) -> str:
    # Parameters are settings, not measurements: keep small values such as 1e-05 readable.
    if isinstance(value, float) and math.isfinite(value):
        return format(value, ".6g")
    return format_value(value)


def _params_rows(card: ModelCard) -> list[list[str]]:
    return [[str(k), _param_value(v)] for k, v in sorted(card.params.items())]


def _gate_text(card: ModelCard) -> str:
    return "PASSED" if card.gate_passed else "FAILED"


def _shadow_rows(card: ModelCard) -> list[list[str]]:
    """The shadow check's figures (item, value); empty without a shadow check."""
    figures = {k: v for k, v in (card.shadow or {}).items() if k not in ("passed", "reasons")}
    return [[k.replace("_", " "), format_value(v, k)] for k, v in figures.items()]


def _shadow_lines(card: ModelCard) -> list[str]:
    return list((card.shadow or {}).get("reasons", []))


# --- Markdown -----------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not header:
        return ["(none)"]
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
    return lines


def _md_list(items: list[str]) -> list[str]:
    return [f"- {item}" for item in items] if items else ["- (none recorded)"]


def render_markdown(card: ModelCard, plot_names: list[str]) -> str:
    """The card as Markdown; plots are linked as relative files "plots/<name>"."""
    metric_header, metric_rows = _metric_table(card)
    lines = [f"# {_title(card)}", "", "## Problem", "", card.description, ""]
    lines += [f"Task: {card.task}", "", "## Data", ""]
    lines += _md_table(["item", "value"], _data_rows(card))
    lines += ["", "## Parameters", "", *_md_table(["parameter", "value"], _params_rows(card))]
    lines += ["", "## Test metrics", "", *_md_table(metric_header, metric_rows), ""]
    lines += [f"- {line}" for line in _deltas(card)]
    lines += ["", "## Cross-validation", "", _cv_text(card), ""]
    lines += ["## Decision threshold", "", _threshold_text(card), ""]
    lines += ["## Slices", "", *_md_table(*_slice_table(card)), ""]
    if card.evaluated_on:
        lines += ["## Evaluated on", "", card.evaluated_on, ""]
    if card.shadow is not None:
        lines += ["## Shadow check", "", *_md_table(["item", "value"], _shadow_rows(card)), ""]
        lines += [*_md_list(_shadow_lines(card)), ""]
    lines += ["## Gate decision", "", f"**{_gate_text(card)}**", "", *_md_list(card.gate_reasons)]
    lines += ["", "## Plots", ""]
    lines += [f"![{name}](plots/{name})" for name in plot_names] or ["(none)"]
    lines += ["", "## Intended use", "", card.intended_use, ""]
    lines += ["## Limitations", "", *_md_list(card.limitations), ""]
    return "\n".join(lines)


# --- HTML ---------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    if not header:
        return "<p>(none)</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_list(items: list[str]) -> str:
    inner = "".join(f"<li>{_e(i)}</li>" for i in items) or "<li>(none recorded)</li>"
    return f"<ul>{inner}</ul>"


def _html_plots(plots: dict[str, bytes]) -> str:
    if not plots:
        return "<p>(none)</p>"
    figures = []
    for name, png in plots.items():
        data = base64.b64encode(png).decode("ascii")
        figures.append(
            f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(name)}</figcaption></figure>"
        )
    return "".join(figures)


def render_html(card: ModelCard, plots: dict[str, bytes]) -> str:
    """The card as one self-contained HTML page: inline CSS, plots as base64 data: URIs,
    no scripts and no external URLs; every text value is HTML-escaped."""
    badge = "pass" if card.gate_passed else "fail"
    deltas = "".join(f"<p>{_e(line)}</p>" for line in _deltas(card))
    sections = [
        f"<h1>{_e(_title(card))}</h1>",
        f"<h2>Problem</h2><p>{_e(card.description)}</p><p>Task: {_e(card.task)}</p>",
        f"<h2>Data</h2>{_html_table(['item', 'value'], _data_rows(card), numeric_from=2)}",
        f"<h2>Parameters</h2>{_html_table(['parameter', 'value'], _params_rows(card))}",
        f"<h2>Test metrics</h2>{_html_table(*_metric_table(card))}{deltas}",
        f"<h2>Cross-validation</h2><p>{_e(_cv_text(card))}</p>",
        f"<h2>Decision threshold</h2><p>{_e(_threshold_text(card))}</p>",
        f"<h2>Slices</h2>{_html_table(*_slice_table(card), numeric_from=2)}",
        *([f"<h2>Evaluated on</h2><p>{_e(card.evaluated_on)}</p>"] if card.evaluated_on else []),
        *(
            [
                f"<h2>Shadow check</h2>{_html_table(['item', 'value'], _shadow_rows(card))}"
                f"{_html_list(_shadow_lines(card))}"
            ]
            if card.shadow is not None
            else []
        ),
        f'<h2>Gate decision</h2><p><span class="badge {badge}">{_gate_text(card)}</span></p>'
        f"{_html_list(card.gate_reasons)}",
        f"<h2>Plots</h2>{_html_plots(plots)}",
        f"<h2>Intended use</h2><p>{_e(card.intended_use)}</p>",
        f"<h2>Limitations</h2>{_html_list(card.limitations)}",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(_title(card))}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
