"""The task decorator every flow here uses.

Prefect 3's default cache policy hashes each task's inputs and, because caching needs the
result, pickles every result into ~/.prefect/storage. Our tasks pass DataFrames, models and
store clients: hashing them costs seconds, pickling them fills the disk, and nothing is
gained, since snapshots and model versions are already content-addressed in the store. So
caching is off unless a task asks for it.
"""

from __future__ import annotations

from functools import partial

from prefect import task as prefect_task
from prefect.cache_policies import NONE

task = partial(prefect_task, cache_policy=NONE)
