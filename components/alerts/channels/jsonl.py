"""The JSON-lines channel: one JSON object per alert, appended to a file.

Each line goes to the file in one ``write`` on a descriptor opened with ``O_APPEND``, so
lines from concurrent writers do not interleave; a line left unterminated by a crash is
closed before the next one, so every later line still parses.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from components.alerts.alert import Alert
from components.alerts.channels.base import ChannelError


@dataclass(frozen=True)
class JsonlFileChannel:
    """Appends ``alert.payload()`` to ``path``, creating its folder when first used."""

    path: Path
    name: str = "jsonl"

    def send(self, alert: Alert) -> None:
        line = json.dumps(alert.payload(), ensure_ascii=False, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _append(self.path, line.encode("utf-8"))
        except OSError as exc:
            raise ChannelError(
                f"{self.name}: cannot append to {self.path}: {exc.strerror or exc}"
            ) from None


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:  # a regular file takes the whole line at once; loop in case it does not
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
