"""Store keys: the layout every writer and reader shares."""

from __future__ import annotations

from components.core import keys


def test_scores_keys_are_a_run_folder_under_the_output_prefix():
    assert keys.scores("scores", "churn", "v3", "abc123") == "scores/churn/v3/abc123"
    assert (
        keys.scores("scores", "churn", "v3", "abc123", "summary.json")
        == "scores/churn/v3/abc123/summary.json"
    )
    assert keys.scores("/team/scores/", "churn", "v3", "abc123") == "team/scores/churn/v3/abc123"


def test_rejection_counts_are_partitioned_by_hour_beside_the_captures():
    from datetime import UTC, datetime, timedelta, timezone

    at = datetime(2024, 5, 1, 12, 45, tzinfo=timezone(timedelta(hours=2)))  # 10:45 UTC
    key = keys.rejection_counts("churn", at, "w1-000001-abcdef12")
    assert key == "rejections/churn/date=2024-05-01/hour=10/w1-000001-abcdef12.json"
    assert key.startswith(keys.rejections_prefix("churn"))
    assert keys.rejection_folder("churn", at) == "rejections/churn/date=2024-05-01/hour=10"
    assert keys.rejection_hour(key) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    chunk = keys.capture_chunk("churn", at, "w1-000001-abcdef12")
    assert keys.rejection_hour(chunk) is None
    assert keys.capture_hour(key) is None
    assert keys.rejection_hour("rejections/churn/date=2024-05-01/hour=10/x.tmp") is None


def test_the_monitoring_page_sits_beside_its_report_and_is_not_read_as_one():
    from datetime import UTC, datetime, timedelta, timezone

    at = datetime(2026, 1, 2, 1, tzinfo=timezone(timedelta(hours=1)))  # 00:00 UTC
    report = keys.monitoring_report("churn", at)
    page = keys.monitoring_page("churn", at)
    assert report == "monitoring/churn/reports/window=20260102T000000Z.json"
    assert page == "monitoring/churn/reports/window=20260102T000000Z.html"
    assert page.startswith(keys.monitoring_prefix("churn"))
    assert keys.monitoring_report_start(report) == datetime(2026, 1, 2, tzinfo=UTC)
    assert keys.monitoring_report_start(page) is None


def test_retraining_run_keys_round_trip():
    from datetime import UTC, datetime

    from components.core import keys

    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    key = keys.retraining_run("churn", at, "abc123")
    assert key.startswith(keys.retraining_runs_prefix("churn"))
    assert keys.retraining_run_start(key) == at
    assert keys.retraining_run_start("retraining/churn/runs/notes.txt") is None
