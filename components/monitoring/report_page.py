"""The monitoring report as one self-contained HTML page, with its three charts as PNGs.

The page follows the model card's rules (components.model.model_card): inline CSS, charts
as base64 data: URIs, no scripts, nothing fetched, every text value HTML-escaped, so it
opens offline and can be attached to an alert or a Prefect artifact as it is. The charts
are drawn like components.model.plots (a Figure on an Agg canvas, matplotlib imported
inside the functions, PNGs without software or date metadata): the same report and
history give the same bytes. A chart without data is a small PNG saying so, never an error.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from components.core.problem import MonitoringSpec
from components.model.model_card import PAGE_CSP, PAGE_CSS, format_value
from components.monitoring.monitor import MonitoringReport

_DPI = 100
_WIDTH = 8  # inches
_SERIES_SIZE = (_WIDTH, 3.5)
_EMPTY_SIZE = (6, 1.2)
_MAX_FEATURES = 30  # the PSI chart shows the highest ones beyond this
_CSS = (
    PAGE_CSS
    + """.ok { background: #dafbe1; color: #116329; } .warn { background: #fff8c5; color: #7d4e00; }
.alert { background: #ffebe9; color: #a40e26; }
.insufficient-data { background: #eaeef2; color: #424a53; }
.note { font-size: .9rem; color: #59636e; }
"""
)
_PERFORMANCE_NOTE = (
    "The estimated metric is computed from the model's scores alone, taking its predicted "
    "probabilities as true: it can see the inputs move (covariate shift) but cannot see "
    "concept drift, where the same inputs come to mean a different outcome. Only the "
    "labelled windows measure that."
)


def chart_pngs(
    report: MonitoringReport,
    history: list[MonitoringReport],
    thresholds: MonitoringSpec = MonitoringSpec(),
) -> dict[str, bytes]:
    """The page's charts as PNG bytes by file name: psi.png (this window's PSI per feature
    against the warn and alert levels), rejections.png (the refused share of received rows
    per window of ``history`` up to this report's and of this report, against the maximum
    rejection rate) and performance.png (the primary metric per labelled window with its
    interval, and each window's estimate). ``thresholds``: the problem's monitoring section."""
    windows = _windows(report, history)
    drift = thresholds.drift
    return {
        "psi.png": _psi_chart(report.psi(), drift.psi_warn, drift.psi_alert),
        "rejections.png": _rejection_chart(windows, thresholds.quality.max_rejection_rate),
        "performance.png": _performance_chart(report.performance, windows),
    }


def render_report_html(
    report: MonitoringReport,
    history: list[MonitoringReport],
    thresholds: MonitoringSpec = MonitoringSpec(),
) -> str:
    """The report as one self-contained HTML page: the window's header and status, every
    reason, every finding, and the charts of :func:`chart_pngs` as data: URIs; no scripts
    and no external URLs."""
    charts = chart_pngs(report, history, thresholds)
    title = f"Monitoring report: {report.problem}, window of {_when(report.window_start)}"
    reasons = _html_list(report.reasons, "(none: every check passed)")
    metric = report.performance.get("metric")
    sections = [
        f"<h1>{_e(title)}</h1>",
        _header_table(report),
        f"<h2>Reasons</h2>{reasons}",
        f"<h2>Conditions raised</h2>{_html_list(sorted(report.conditions), '(none)')}",
        f"<h2>Findings</h2>{_findings_table(report.findings)}",
        f"<h2>Feature drift (PSI)</h2>{_img('psi.png', charts)}",
        f"<h2>Rejections</h2>{_img('rejections.png', charts)}",
        f"<h2>Performance{_e(f': {metric}' if metric else '')}</h2>"
        f'{_img("performance.png", charts)}<p class="note">{_e(_PERFORMANCE_NOTE)}</p>',
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


# --- HTML ---------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _utc(moment: datetime) -> datetime:
    """Naive UTC, so that windows from JSON and from code plot on one axis."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _when(moment: datetime) -> str:
    return f"{_utc(moment):%Y-%m-%d %H:%M} UTC"


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status.replace(" ", "-"))}">{_e(status)}</span>'


def _header_table(report: MonitoringReport) -> str:
    served = ", ".join(f"{v}: {n:,}" for v, n in sorted(report.served_versions.items()))
    refused = f"{report.rejected:,}"
    if report.rejection_reasons:
        top = ", ".join(f"{why} ({n:,})" for why, n in report.rejection_reasons[:3])
        refused += f" (mostly {top})"
    rows = [
        ("window", _e(f"{_when(report.window_start)} to {_when(report.window_end)}")),
        ("status", _badge(report.status)),
        ("champion", _e(report.champion)),
        ("served versions", _e(served or "none")),
        ("rows answered", _e(f"{report.rows:,}")),
        ("rows refused", _e(refused)),
        ("predictions without a label", _e(f"{report.unlabelled:,}")),
        ("report made", _e(_when(report.created_at))),
    ]
    body = "".join(f"<tr><th>{label}</th><td>{cell}</td></tr>" for label, cell in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _findings_table(findings: list[dict]) -> str:
    if not findings:
        return "<p>(no findings)</p>"
    head = "".join(
        f"<th>{h}</th>" for h in ("check", "subject", "status", "value", "threshold", "message")
    )
    body = "".join(
        f"<tr><td>{_e(f.get('check'))}</td><td>{_e(f.get('subject'))}</td>"
        f"<td>{_badge(str(f.get('status')))}</td>"
        f'<td class="num">{_e(format_value(f.get("value")))}</td>'
        f'<td class="num">{_e(format_value(f.get("threshold")))}</td>'
        f"<td>{_e(f.get('message'))}</td></tr>"
        for f in findings
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_list(items: list[str], empty: str) -> str:
    inner = "".join(f"<li>{_e(i)}</li>" for i in items) or f"<li>{_e(empty)}</li>"
    return f"<ul>{inner}</ul>"


def _img(name: str, charts: dict[str, bytes]) -> str:
    data = base64.b64encode(charts[name]).decode("ascii")
    return f'<p><img alt="{_e(name)}" src="data:image/png;base64,{data}"></p>'


# --- charts -------------------------------------------------------------------------------


def _windows(report: MonitoringReport, history: list[MonitoringReport]) -> list[MonitoringReport]:
    """One report per window up to this one, oldest first; this report wins over a stored
    copy of itself (``history`` may or may not include it)."""
    by_start = {_utc(r.window_start): r for r in history if r.problem == report.problem}
    by_start[_utc(report.window_start)] = report
    return [r for s, r in sorted(by_start.items()) if s <= _utc(report.window_start)]


def _png(draw, size: tuple[float, float]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(fig)
    draw(fig.add_subplot())
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _empty(text: str) -> bytes:
    def draw(ax) -> None:
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", color="#59636e")

    return _png(draw, _EMPTY_SIZE)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _time_axis(ax, times: list[datetime], width: timedelta) -> None:
    """Dates on x, half a window of margin either side (one point alone has a range)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    pad = max(width, timedelta(minutes=1)) / 2
    ax.set_xlim(min(times) - pad, max(times) + pad)
    locator = AutoDateLocator(minticks=2, maxticks=8)  # the default 5 fails on a few days
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)


def _psi_chart(psi: dict[str, float], warn: float, alert: float) -> bytes:
    values = {name: float(v) for name, v in psi.items() if _finite(v)}
    if not values:
        return _empty("no data yet: no feature's PSI in this window")
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:_MAX_FEATURES]
    names = [name for name, _ in reversed(ranked)]  # the highest at the top
    shown = [value for _, value in reversed(ranked)]
    colours = [
        "tab:red" if v >= alert else "tab:orange" if v >= warn else "tab:blue" for v in shown
    ]

    def draw(ax) -> None:
        ax.barh(names, shown, color=colours)
        ax.axvline(warn, ls="--", lw=1, color="tab:orange", label=f"warn {warn:g}")
        ax.axvline(alert, ls="--", lw=1, color="tab:red", label=f"alert {alert:g}")
        ax.set_xlim(0, max(*shown, alert, 0.01) * 1.1)
        extra = f" (highest {len(ranked)} of {len(values)})" if len(values) > len(ranked) else ""
        ax.set(xlabel="PSI", title=f"PSI per feature against the champion's training data{extra}")
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(loc="lower right", fontsize=8)

    return _png(draw, (_WIDTH, 1.5 + 0.28 * len(names)))


def _rejection_chart(windows: list[MonitoringReport], limit: float) -> bytes:
    points = [
        (_utc(r.window_start), r.rejected / (r.rows + r.rejected))
        for r in windows
        if r.rows + r.rejected > 0
    ]
    if not points:
        return _empty("no data yet: no window received a row")

    def draw(ax) -> None:
        from matplotlib.ticker import PercentFormatter

        ax.plot([t for t, _ in points], [v for _, v in points], marker="o", lw=1.5, label="refused")
        ax.axhline(limit, ls="--", lw=1, color="tab:red", label=f"max {limit:.2%}")
        ax.set_ylim(0, max(*(v for _, v in points), limit, 0.001) * 1.15)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set(ylabel="refused share of received rows", title="Rejection rate per window")
        _time_axis(ax, [t for t, _ in points], windows[-1].window_end - windows[-1].window_start)
        ax.legend(loc="upper left", fontsize=8)

    return _png(draw, _SERIES_SIZE)


def _spread(entry: dict) -> tuple[float, float]:
    """How far the interval reaches below and above the value (0 where it is missing)."""
    value = float(entry["value"])
    low, high = entry.get("low"), entry.get("high")
    below = value - float(low) if _finite(low) else 0.0
    above = float(high) - value if _finite(high) else 0.0
    return max(below, 0.0), max(above, 0.0)


def _performance_chart(performance: dict, windows: list[MonitoringReport]) -> bytes:
    metric = performance.get("metric") or "primary metric"
    realised = [
        (_utc(datetime.fromisoformat(h["window"])), h)
        for h in performance.get("history", [])
        if h.get("window") and _finite(h.get("value"))
    ]
    estimated = [
        (_utc(r.window_start), float(r.performance["estimated"]))
        for r in windows
        if _finite(r.performance.get("estimated"))
    ]
    if not realised and not estimated:
        return _empty(f"no data yet: no labelled window and no estimate of {metric}")

    def draw(ax) -> None:
        if realised:
            x = [t for t, _ in realised]
            y = [float(h["value"]) for _, h in realised]
            spread = [_spread(h) for _, h in realised]
            yerr = [[below for below, _ in spread], [above for _, above in spread]]
            ax.errorbar(x, y, yerr=yerr, marker="o", lw=1.5, capsize=3, label="labelled")
        if estimated:
            ax.plot(
                [t for t, _ in estimated],
                [v for _, v in estimated],
                marker="s",
                ls=":",
                color="tab:purple",
                label="estimated from scores",
            )
        ax.set(ylabel=metric, title=f"{metric} per window (bars: interval)")
        width = windows[-1].window_end - windows[-1].window_start
        _time_axis(ax, [t for t, _ in realised + estimated], width)
        ax.legend(loc="lower left", fontsize=8)

    return _png(draw, _SERIES_SIZE)
