"""What the capture and profile-job tests share: a churn request's rows and answers, a
clock, and stores that are slow, fail, or count their reads."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from components.capture.buffer import Capture, CaptureConfig
from components.capture.chunks import FeatureMatrix
from components.core.store import LocalStore, StoreError

CHURN = Path(__file__).resolve().parents[1] / "problems" / "churn.yaml"
T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
FAST = CaptureConfig(flush_interval_s=0.01, close_timeout_s=2.0)


class Clock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class SlowStore(LocalStore):
    """Every write takes ``delay`` seconds, and waits for ``gate`` when one is given."""

    def __init__(self, root, delay: float = 0.0, gate: threading.Event | None = None):
        super().__init__(root)
        self.delay = delay
        self.gate = gate

    def put_bytes(self, key, data, *, create_only=False):
        if self.gate is not None:
            self.gate.wait(timeout=10)
        time.sleep(self.delay)
        super().put_bytes(key, data, create_only=create_only)


class FlakyStore(LocalStore):
    """Fails the writes whose call number (from 1) is in ``fail_calls``; with ``after``, the
    failing write is stored first and only the answer is lost (an ambiguous failure)."""

    def __init__(self, root, fail_calls, *, after=False, error=StoreError):
        super().__init__(root)
        self.fail_calls = set(fail_calls)
        self.after = after
        self.error = error
        self.calls = 0

    def put_bytes(self, key, data, *, create_only=False):
        self.calls += 1
        if self.calls in self.fail_calls:
            if self.after:
                super().put_bytes(key, data, create_only=create_only)
            raise self.error(f"simulated failure of write {self.calls}")
        super().put_bytes(key, data, create_only=create_only)


class CountingStore(LocalStore):
    """Counts the reads of each key; fails the writes of keys ending in ``fail_suffix``."""

    def __init__(self, root):
        super().__init__(root)
        self.reads: dict[str, int] = {}
        self.fail_suffix: str | None = None
        self.fail_read: str | None = None

    def get_bytes(self, key):
        if self.fail_read and self.fail_read in key:
            raise StoreError(f"injected failure reading {key}")
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get_bytes(key)

    def put_bytes(self, key, data, *, create_only=False):
        if self.fail_suffix and key.endswith(self.fail_suffix):
            raise StoreError(f"injected failure writing {key}")
        super().put_bytes(key, data, create_only=create_only)


def features(i: int, **changes) -> dict:
    row = {
        "customer_id": f"c{i}",
        "event_time": datetime(2024, 4, 30, 8, 0, tzinfo=UTC),
        "tenure_months": i,
        "contract": "one-year",
        "plan": "basic",
        "monthly_charges": 10.5 + i,
        "total_charges": None,
        "payment_method": "credit-card",
        "region": "north",
        "support_calls": 1,
        "usage_hours": 20.0,
        "tickets_open": 0,
        "discount_pct": 5.0,
    }
    return {**row, **changes}


def answer(pid: str, probability: float = 0.25, **extra) -> dict:
    return {
        "prediction_id": pid,
        "model_version": "v1",
        "probability": probability,
        "label": int(probability >= 0.5),
        **extra,
    }


def record_n(capture: Capture, n: int, prefix: str = "p", **kwargs) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    capture.record([features(i) for i in range(n)], [answer(p) for p in ids], **kwargs)
    return ids


def chunk_keys(store, problem: str = "churn") -> list[str]:
    return store.list(f"captures/{problem}/")


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def columns_of(ids: list[str], **changes) -> dict:
    """A request of ``len(ids)`` rows as columns, as the service records it."""
    rows = [features(i) for i in range(len(ids))]
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    columns.update(
        prediction_id=ids,
        model_version="v1",
        probability=np.full(len(ids), 0.25),
        label=np.zeros(len(ids), dtype=np.int64),
    )
    return {**columns, **changes}


def matrix_request(ids, names, categories):
    """A request as plain columns, and the same request with its features in a matrix."""
    plain = columns_of(ids)
    rows = len(ids)
    matrix = np.empty((rows, len(names)))
    for j, name in enumerate(names):
        if name in categories:
            codes = {c: i for i, c in enumerate(categories[name])}
            matrix[:, j] = [codes[v] for v in plain[name]]
        else:
            matrix[:, j] = plain[name]
    matrix[0, 0] = np.nan  # a null
    plain[names[0]] = [None, *plain[names[0]][1:]]
    rest = {k: v for k, v in plain.items() if k not in names}
    return plain, rest, FeatureMatrix(matrix, names, categories)


def in_threads(target, n: int) -> None:
    """Run ``target(i)`` in ``n`` threads at once and wait for them all."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
