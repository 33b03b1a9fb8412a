"""A CPU probe for serving workers, used by benchmarks/capture_cpu.py only.

Put on PYTHONPATH with MLOPS_PROBE_DIR set, Python imports it at start-up in every process
of a `bentoml serve` (this is what `sitecustomize` is for). Once the service has imported
components.serving.online and components.capture.buffer, it wraps the methods whose CPU
it attributes and times them with the calling thread's CPU clock; garbage collections are
timed through gc.callbacks. Every second it writes what it has summed to
MLOPS_PROBE_DIR/<pid>.json. Each timed call costs about 2 µs of clock reads (two
syscalls), which the totals include.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

_FOLDER = os.environ.get("MLOPS_PROBE_DIR")
_totals: dict[str, float] = {"gc": 0.0, "calls": 0}
_gc_started = threading.local()


def _on_gc(phase: str, _info: dict) -> None:
    if phase == "start":
        _gc_started.at = time.thread_time()
    elif getattr(_gc_started, "at", None) is not None:
        _totals["gc"] += time.thread_time() - _gc_started.at
        _gc_started.at = None


def _timed(owner: object, name: str, key: str, count: bool = False) -> None:
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            _totals[key] += time.thread_time() - start
            if count:
                _totals["calls"] += 1

    setattr(owner, name, timed)


# Where the timed code lives, per layout: (online, buffer, chunks modules) and the
# (module index, class or None, attribute, part) to time. This checkout's layout first, then
# the flat one of older commits (capture_cpu.py --also compares against those). Timed calls
# must not nest, or their time counts twice.
_LAYOUTS = (
    (
        ("components.serving.online", "components.capture.buffer", "components.capture.chunks"),
        (
            (0, "OnlineModel", "predict", "predict"),
            (0, "OnlineModel", "_columns", "request_path"),
            (1, "Capture", "record_columns", "request_path"),
            (1, "Capture", "_flush", "flusher"),
            (2, None, "batches_table", "arrow_table"),
            (2, None, "parquet_bytes", "parquet"),
            (1, "Capture", "_put", "store_write"),
        ),
    ),
    (
        ("components.online", "components.capture", "components.capture"),
        (
            (0, "OnlineModel", "predict", "predict"),
            (0, "OnlineModel", "_capture", "request_path"),
            (1, "Capture", "_flush", "flusher"),
            (1, "Capture", "_batches_table", "arrow_table"),
            (2, None, "_parquet_bytes", "parquet"),
            (1, "Capture", "_put", "store_write"),
        ),
    ),
)


def _loaded(layout: tuple) -> tuple | None:
    names, targets = layout
    online, buffer = (sys.modules.get(name) for name in names[:2])
    # A module is in sys.modules before it is complete: wait for its main classes.
    if hasattr(online, "OnlineModel") and hasattr(buffer, "Capture"):
        return [sys.modules[name] for name in names], targets
    return None


def _install() -> None:
    while not (found := next(filter(None, map(_loaded, _LAYOUTS)), None)):
        time.sleep(0.05)
    modules, targets = found
    for index, owner, name, part in targets:
        _totals.setdefault(part, 0.0)
        where = modules[index] if owner is None else getattr(modules[index], owner)
        _timed(where, name, part, count=name == "predict")


def _dump() -> None:
    path = Path(_FOLDER) / f"{os.getpid()}.json"
    scratch = path.with_suffix(".tmp")
    while True:
        time.sleep(1)
        scratch.write_text(json.dumps({**_totals, "argv": sys.argv[:2]}))
        scratch.replace(path)


if _FOLDER:
    gc.callbacks.append(_on_gc)
    threading.Thread(target=_install, daemon=True, name="probe-install").start()
    threading.Thread(target=_dump, daemon=True, name="probe-dump").start()
