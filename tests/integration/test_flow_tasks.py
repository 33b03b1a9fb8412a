"""What the flows' tasks share, on the test Prefect API: retrying only transient errors,
and the strict global concurrency limit that serialises a model's promotions, created
when the server has none."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prefect import flow
from prefect.concurrency.sync import concurrency

from flows.limits import ensure_limit, exclusive
from flows.tasks import retry_on, task

pytestmark = pytest.mark.usefixtures("prefect_server")


class TransientError(Exception):
    pass


def test_a_task_retries_a_transient_error_and_not_a_mistake():
    calls = {"transient": 0, "mistake": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on(TransientError))
    def flaky(kind: str) -> str:
        calls[kind] += 1
        if kind == "mistake":
            raise ValueError("wrong input")
        if calls[kind] < 3:
            raise TransientError("try again")
        return "done"

    @flow
    def run(kind: str) -> str:
        return flaky(kind)

    assert run("transient") == "done" and calls["transient"] == 3
    with pytest.raises(ValueError, match="wrong input"):
        run("mistake")
    assert calls["mistake"] == 1


def test_exclusive_creates_a_missing_limit_and_holds_its_one_slot():
    name = "promotion-test-exclusive"
    # Strict: a missing limit is an error, not skipped.
    missing = pytest.raises(Exception, match="must be created before acquiring")
    with missing, concurrency(name, occupy=1, strict=True):
        pass
    inside, most = [0], [0]
    lock = threading.Lock()

    def hold(_: int) -> None:
        with exclusive(name):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.3)
            with lock:
                inside[0] -= 1

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(hold, range(3)))
    assert most[0] == 1
    assert ensure_limit(name) is False  # created once, by the first
