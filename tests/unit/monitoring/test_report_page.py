"""The monitoring report's page: self-contained, escaped, three PNG charts, deterministic,
and it renders whatever data there is (none included)."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from components.core.problem import MonitoringSpec
from components.monitoring.monitor import MonitoringReport
from components.monitoring.report_page import chart_pngs, render_report_html

START = datetime(2026, 1, 10, tzinfo=UTC)
DAY = timedelta(days=1)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def finding(check, subject, status, message, value=None, threshold=None) -> dict:
    return {
        "check": check,
        "subject": subject,
        "status": status,
        "message": message,
        "value": value,
        "threshold": threshold,
    }


def make_report(day: int = 0, *, performance: dict | None = None, **changes) -> MonitoringReport:
    start = START + day * DAY
    fields = {
        "problem": "churn",
        "window_start": start,
        "window_end": start + DAY,
        "champion": "v3",
        "served_versions": {"v3": 2_990},
        "rows": 2_990,
        "rejected": 10,
        "rejection_reasons": [("tenure_months: range", 7), ("plan: category", 3)],
        "unlabelled": 2_500,
        "status": "alert",
        "reasons": [
            "monthly_charges: PSI 0.8000 at or above the alert level 0.25",
            "plan: a <b>new</b> category & more",
        ],
        "conditions": {"drift-detected": ["monthly_charges: PSI 0.8000"]},
        "findings": [
            finding("feature_drift", "monthly_charges", "alert", "monthly_charges PSI", 0.8, 0.25),
            finding("feature_drift", "tenure_months", "warn", "tenure_months PSI", 0.12, 0.10),
            finding("feature_drift", "plan", "ok", "plan PSI", 0.01, 0.10),
            finding("data_quality", "plan", "warn", "plan: a <b>new</b> category & more"),
            finding("rejections", "requests", "ok", "rejections: 10 of 3000", 10 / 3000, 0.005),
        ],
        "performance": {
            "metric": "roc_auc",
            "history": [
                {
                    "window": (START - 2 * DAY).isoformat(),
                    "labelled": 400,
                    "value": 0.81,
                    "low": 0.77,
                    "high": 0.85,
                },
                {"window": (START - DAY).isoformat(), "labelled": 12},
                {
                    "window": START.isoformat(),
                    "labelled": 380,
                    "value": 0.74,
                    "low": 0.70,
                    "high": 0.79,
                },
            ],
            "estimated": 0.78,
        }
        if performance is None
        else performance,
        "created_at": start + DAY + timedelta(minutes=5),
    }
    return MonitoringReport(**(fields | changes))


def history() -> list[MonitoringReport]:
    return [
        make_report(-2, status="ok", reasons=[], rejected=2, performance={"estimated": 0.80}),
        make_report(-1, status="warn", rejected=40),
    ]


def images(page: str) -> dict[str, bytes]:
    return {name: base64.b64decode(data) for name, data in IMAGE.findall(page)}


def assert_png(png: bytes) -> None:
    assert png.startswith(PNG_MAGIC)
    try:
        from PIL import Image
    except ImportError:  # matplotlib reads PNGs itself
        from matplotlib.image import imread

        assert imread(io.BytesIO(png)).size > 0
    else:
        with Image.open(io.BytesIO(png)) as image:
            image.verify()


def assert_self_contained(page: str) -> None:
    lowered = page.lower()
    for forbidden in ("<script", "http://", "https://", 'src="//', "<link", "@import"):
        assert forbidden not in lowered
    assert re.findall(r'src="([^":]+):', page) == ["data"] * len(re.findall(r'src="', page))
    assert re.findall(r"url\(", lowered) == []


def test_the_page_says_the_status_every_reason_and_every_finding_escaped():
    report = make_report()
    page = render_report_html(report, history())
    assert '<span class="badge alert">alert</span>' in page
    assert "churn" in page and "v3" in page
    assert "2026-01-10 00:00 UTC to 2026-01-11 00:00 UTC" in page
    assert "2,990" in page and "2,500" in page and "tenure_months: range (7)" in page
    assert "monthly_charges: PSI 0.8000 at or above the alert level 0.25" in page
    assert "plan: a &lt;b&gt;new&lt;/b&gt; category &amp; more" in page
    assert "<b>new</b>" not in page
    assert page.count("<tr><td>feature_drift</td>") == 3
    assert "<td>rejections</td><td>requests</td>" in page
    assert '<td class="num">0.8000</td><td class="num">0.2500</td>' in page
    assert "drift-detected" in page
    assert "cannot see concept drift" in page


def test_the_page_embeds_three_png_charts_and_fetches_nothing():
    report = make_report()
    page = render_report_html(report, history())
    assert page.count('<img alt="') == 3
    assert page.count('src="data:image/png;base64,') == 3
    embedded = images(page)
    assert sorted(embedded) == ["performance.png", "psi.png", "rejections.png"]
    assert embedded == chart_pngs(report, history())
    for png in embedded.values():
        assert_png(png)
    assert_self_contained(page)


def test_the_same_report_gives_the_same_page_and_charts():
    first = render_report_html(make_report(), history())
    second = render_report_html(make_report(), history())
    assert first == second
    assert b"Software" not in images(first)["psi.png"]


def test_thresholds_change_the_charts_but_the_history_may_hold_the_report_itself():
    report = make_report()
    default = chart_pngs(report, history())
    assert chart_pngs(report, [*history(), report]) == default
    moved = chart_pngs(
        report,
        history(),
        MonitoringSpec(
            drift={"psi_warn": 0.2, "psi_alert": 0.5}, quality={"max_rejection_rate": 0.02}
        ),
    )
    assert moved["psi.png"] != default["psi.png"]
    assert moved["rejections.png"] != default["rejections.png"]
    assert moved["performance.png"] == default["performance.png"]


def test_a_report_without_history_performance_or_findings_still_renders():
    bare = make_report(
        performance={},
        findings=[],
        reasons=[],
        conditions={},
        status="insufficient data",
        rows=0,
        rejected=0,
        rejection_reasons=[],
        served_versions={},
    )
    page = render_report_html(bare, [])
    assert '<span class="badge insufficient-data">insufficient data</span>' in page
    assert "(none: every check passed)" in page and "(no findings)" in page
    charts = images(page)
    assert sorted(charts) == ["performance.png", "psi.png", "rejections.png"]
    for png in charts.values():
        assert_png(png)
    assert_self_contained(page)
    assert render_report_html(bare, []) == page


def test_a_labelled_history_without_values_draws_the_estimate_only():
    report = make_report(
        performance={"metric": "roc_auc", "history": [{"window": START.isoformat(), "labelled": 3}]}
    )
    charts = chart_pngs(report, history())
    assert_png(charts["performance.png"])
    no_estimate = chart_pngs(report, [])
    assert no_estimate["performance.png"] != charts["performance.png"]


@pytest.mark.slow
def test_headless_chromium_draws_the_page_offline(tmp_path, chromium):
    page = tmp_path / "report.html"
    page.write_text(render_report_html(make_report(), history()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    command = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Anything fetched would go to a closed port: the page must need nothing.
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        page.as_uri(),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    Image = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 10, "the screenshot is blank"
