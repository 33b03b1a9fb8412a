"""Monitoring windows: parsed and aligned to UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from components.capture.windows import parse_window, window_start


def test_windows_parse_and_align():
    assert parse_window("15m") == timedelta(minutes=15)
    assert parse_window("1h") == timedelta(hours=1)
    assert parse_window("1d") == timedelta(days=1)
    for bad in ("1w", "0h", "h", "1.5h", ""):
        with pytest.raises(ValueError, match="invalid capture window"):
            parse_window(bad)
    moment = datetime(2024, 5, 1, 10, 44, 59, tzinfo=UTC)
    assert window_start(moment, "15m") == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert window_start(moment, "1d") == datetime(2024, 5, 1, tzinfo=UTC)
