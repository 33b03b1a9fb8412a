"""The task decorator every flow here uses, and the retry condition of tasks that retry.

Prefect 3's default cache policy hashes each task's inputs and, because caching needs the
result, pickles every result into ~/.prefect/storage. Our tasks pass DataFrames, models and
store clients: hashing them costs seconds, pickling them fills the disk, and nothing is
gained, since snapshots and model versions are already content-addressed in the store. So
caching is off unless a task asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from prefect import task as prefect_task
from prefect.cache_policies import NONE

task = partial(prefect_task, cache_policy=NONE)


def retry_on(*errors: type[BaseException]) -> Callable[[Any, Any, Any], bool]:
    """A ``retry_condition_fn`` that retries a failed run only when it raised one of
    ``errors`` (a transient failure), never a mistake that would fail the same way again."""

    def transient(task: Any, task_run: Any, state: Any) -> bool:
        return isinstance(state.result(raise_on_failure=False), errors)

    return transient
