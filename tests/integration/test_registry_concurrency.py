"""Concurrent writers of one registry in real processes, on a local folder and on moto's S3.

Each worker process opens its own store and Registry (as separate flow runs would), waits on
a barrier so that all of them hit registry.json at the same moment, and reports what it did.
The read -> swap window is widened with a short random sleep so the races really happen.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import random
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from components.core.s3_store import S3Store, make_s3_client
from components.core.store import LocalStore, PointerConflictError, Store
from components.model.registry import Registry
from components.model.registry_records import HistoryEntry

PROBLEM = "churn"
S3_PREFIX = "registry-race"
Target = tuple[str, str, str | None]  # (kind, local folder or bucket, S3 endpoint)


def open_target(target: Target) -> Store:
    kind, where, endpoint = target
    if kind == "local":
        return LocalStore(where)
    return S3Store(where, S3_PREFIX, make_s3_client(endpoint))


def racing_store(target: Target, conflicts: list[int]) -> Store:
    """The target's store, with a random pause after each pointer read (to widen the race
    window) and a count of the swaps it lost."""
    store = open_target(target)
    read, swap = store.read_pointer, store.swap_pointer

    def slow_read(key: str) -> Any:
        pointer = read(key)
        time.sleep(random.uniform(0, 0.003))
        return pointer

    def counted_swap(key: str, value: bytes, expected_etag: str | None) -> str:
        try:
            return swap(key, value, expected_etag)
        except PointerConflictError:
            conflicts[0] += 1
            raise

    store.read_pointer = slow_read  # type: ignore[method-assign]
    store.swap_pointer = counted_swap  # type: ignore[method-assign]
    return store


# ------------------------------------------ workers (top level, so that spawn can import them)


def register_worker(target: Target, worker: int, count: int, start: Any, results: Any) -> None:
    try:
        conflicts = [0]
        registry = Registry(racing_store(target, conflicts), PROBLEM)
        start.wait(timeout=60)
        ids = [
            registry.register({"model.ubj": f"w{worker}-{i}".encode()}, {"worker": worker, "i": i})
            for i in range(count)
        ]
        results.put(("ok", worker, ids, conflicts[0]))
    except BaseException:
        results.put(("error", worker, traceback.format_exc(), 0))


def promote_worker(
    target: Target, worker: int, versions: list[str], start: Any, results: Any
) -> None:
    """Promote one fresh version per round."""
    try:
        conflicts = [0]
        registry = Registry(racing_store(target, conflicts), PROBLEM)
        entries = []
        for round_, version in enumerate(versions):
            start.wait(timeout=60)
            entry = registry.promote(version, actor=f"worker-{worker}", reason=f"round {round_}")
            entries.append(dataclasses.asdict(entry))
        results.put(("ok", worker, entries, conflicts[0]))
    except BaseException:
        results.put(("error", worker, traceback.format_exc(), 0))


def operator_worker(
    target: Target, worker: int, challengers: list[str], start: Any, results: Any
) -> None:
    """Alternate, round by round, between moving the challenger and rolling the champion
    back, racing the promoters on the same document."""
    try:
        conflicts = [0]
        registry = Registry(racing_store(target, conflicts), PROBLEM)
        entries = []
        for round_, version in enumerate(challengers):
            start.wait(timeout=60)
            if round_ % 2 == 0:
                entry = registry.set_alias("challenger", version, actor="operator", reason="cmp")
            else:
                entry = registry.rollback(actor="operator", reason=f"round {round_}")
            entries.append(dataclasses.asdict(entry))
        results.put(("ok", worker, entries, conflicts[0]))
    except BaseException:
        results.put(("error", worker, traceback.format_exc(), 0))


def run_workers(jobs: list[tuple[Any, tuple]], results: Any) -> dict[int, Any]:
    """Start every (target function, args) job in a spawned process; return each worker's
    payload by worker number, failing with the worker's traceback if one failed."""
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=func, args=args) for func, args in jobs]
    for process in processes:
        process.start()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    errors = [payload for status, _, payload, _ in reports if status == "error"]
    assert not errors, "\n".join(errors)
    assert all(process.exitcode == 0 for process in processes)
    assert sum(report[3] for report in reports) > 0  # the workers really did race
    return {worker: payload for _, worker, payload, _ in reports}


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "local":
        return ("local", str(tmp_path / "store"), None)
    _, bucket = request.getfixturevalue("s3_bucket")
    return ("s3", bucket, request.getfixturevalue("moto_server"))


def assert_chain(entries: list[HistoryEntry], current: str | None) -> None:
    """Each change of an alias starts where the previous one ended, and the last one ends at
    the alias's current value."""
    assert entries[0].from_version is None
    for previous, entry in itertools.pairwise(entries):
        assert entry.from_version == previous.to_version
        assert entry.from_version != entry.to_version
    assert entries[-1].to_version == current


# ----------------------------------------------------------------------- tests


def test_concurrent_registrations_get_distinct_ids(target: Target) -> None:
    workers, count = 4, 4
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(workers), ctx.Queue()
    jobs = [(register_worker, (target, w, count, start, results)) for w in range(workers)]

    ids_by_worker = run_workers(jobs, results)

    registry = Registry(open_target(target), PROBLEM)
    all_ids = [version for ids in ids_by_worker.values() for version in ids]
    expected = [f"v{n}" for n in range(1, workers * count + 1)]
    assert sorted(all_ids, key=lambda v: int(v[1:])) == expected  # distinct, no gaps
    assert [info.version for info in registry.versions()] == expected
    assert all(info.status == "registered" for info in registry.versions())
    store = open_target(target)
    assert store.get_json(f"models/{PROBLEM}/registry.json")["next_version"] == len(expected) + 1
    for worker, ids in ids_by_worker.items():
        for i, version in enumerate(ids):  # each id holds the files its worker wrote
            assert registry.read_file(version, "model.ubj") == f"w{worker}-{i}".encode()
            assert registry.metadata(version)["worker"] == worker


def test_concurrent_promotions_leave_one_champion_and_a_consistent_history(
    target: Target,
) -> None:
    promoters, rounds = 3, 6
    registry = Registry(open_target(target), PROBLEM)
    fresh = [registry.register({"m": b"x"}, {}) for _ in range(promoters * rounds + rounds)]
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(promoters + 1), ctx.Queue()
    jobs = [
        (promote_worker, (target, w, fresh[w * rounds : (w + 1) * rounds], start, results))
        for w in range(promoters)
    ]
    jobs.append((operator_worker, (target, promoters, fresh[promoters * rounds :], start, results)))

    reported = run_workers(jobs, results)

    history = registry.history()
    made = [HistoryEntry(**raw) for entries in reported.values() for raw in entries]
    assert all(entry.seq > 0 for entry in made)  # fresh versions: no promotion was a no-op
    assert len(history) == len(made) == (promoters + 1) * rounds  # no change lost
    assert [entry.seq for entry in history] == list(range(1, len(history) + 1))
    assert sorted(made, key=lambda entry: entry.seq) == history  # each as its writer saw it
    champion = registry.alias("champion")
    assert_chain(registry.history("champion"), champion)
    assert_chain(registry.history("challenger"), registry.alias("challenger"))
    assert [info.version for info in registry.versions() if "champion" in info.aliases] == [
        champion
    ]
