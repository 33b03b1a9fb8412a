"""The dedupe state: when each condition was last sent to each channel, in a JSON file.

The file is ``{"version": 1, "sent": {"<channel>|<problem>|<condition>|<severity>":
"<ISO 8601 time>"}}``. It is replaced atomically (a temporary file beside it, then
``os.replace``), so a reader sees the old state or the new one, never half of one. Two
dispatches writing at once keep the last writer's state: at worst an alert is sent twice.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

VERSION = 1


def load_state(path: Path) -> dict[str, datetime]:
    """What was sent when; empty when the file does not exist yet."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"alert dedupe state {path} cannot be read ({exc}); fix or delete it (deleting "
            "only lets alerts in their cooldown be sent once more)"
        ) from None
    try:
        if raw.get("version") != VERSION:
            raise ValueError(f"version {raw.get('version')!r}, expected {VERSION}")
        return {str(key): _aware(datetime.fromisoformat(at)) for key, at in raw["sent"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"alert dedupe state {path} is not a state file this code wrote ({exc}); fix or "
            "delete it (deleting only lets alerts in their cooldown be sent once more)"
        ) from None


def save_state(path: Path, sent: Mapping[str, datetime]) -> None:
    """Replace the state at ``path`` with ``sent``, creating its folder if needed."""
    data = {"version": VERSION, "sent": {key: at.isoformat() for key, at in sorted(sent.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)  # os.replace: atomic on one filesystem
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _aware(at: datetime) -> datetime:
    if at.utcoffset() is None:
        raise ValueError(f"time {at.isoformat()} has no timezone")
    return at
