"""Time windows shared by capture and the profile job: UTC times, windows aligned on the
Unix epoch."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_WINDOW = re.compile(r"^(\d+)([mhd])$")
_WINDOW_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Aware datetimes converted to UTC; naive ones are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_window(window: str) -> timedelta:
    """``"15m"``, ``"1h"``, ``"1d"`` as a timedelta; ValueError for anything else."""
    match = _WINDOW.match(window)
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"invalid capture window {window!r}: use a positive number followed by m, h or d "
            "(e.g. '15m', '1h', '1d')"
        )
    return timedelta(**{_WINDOW_UNITS[match.group(2)]: int(match.group(1))})


def window_start(moment: datetime, window: str | timedelta) -> datetime:
    """The start of the window holding ``moment``: windows are aligned on the Unix epoch
    (so ``1h`` starts on the hour and ``1d`` at midnight UTC)."""
    width = parse_window(window) if isinstance(window, str) else window
    seconds = int(width.total_seconds())
    epoch = int(as_utc(moment).timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)
