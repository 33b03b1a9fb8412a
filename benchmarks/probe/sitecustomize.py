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
    _totals[key] = 0.0

    def timed(*args, **kwargs):
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            _totals[key] += time.thread_time() - start
            if count:
                _totals["calls"] += 1

    setattr(owner, name, timed)


def _install() -> None:
    # Wait for the service's own imports (a module is in sys.modules before it is complete).
    while not (
        hasattr(sys.modules.get("components.serving.online"), "OnlineModel")
        and hasattr(sys.modules.get("components.capture.buffer"), "Capture")
    ):
        time.sleep(0.05)
    online, capture = (
        sys.modules["components.serving.online"],
        sys.modules["components.capture.buffer"],
    )
    _timed(online.OnlineModel, "predict", "predict", count=True)
    _timed(online.OnlineModel, "_capture", "request_path")
    _timed(capture.Capture, "_flush", "flusher")
    _timed(capture.Capture, "_batches_table", "arrow_table")
    _timed(capture, "_parquet_bytes", "parquet")
    _timed(capture.Capture, "_put", "store_write")


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
