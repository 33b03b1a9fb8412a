"""The store contract: the same cases on the local folder and on S3 (moto's server on
127.0.0.1, over real HTTP). What only one backend has (temp files and folders; prefixes,
multipart uploads, paging, versioned buckets, retries) is tested beside it, in
tests/unit/core/test_store_local.py and test_store_s3.py."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import pytest

from components.core.store import (
    KeyNotFoundError,
    ObjectExistsError,
    PointerConflictError,
    Store,
    open_store,
)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    client, bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/team/store", s3_client=client)


def _endpoint(store: Store, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("moto_server") if store.url.startswith("s3://") else None


# ----------------------------------------------------------------------- round trips


def test_bytes_round_trip_and_overwrite(store: Store) -> None:
    store.put_bytes("a/b/c.bin", b"one")
    store.put_bytes("a/b/c.bin", b"two")

    assert store.get_bytes("a/b/c.bin") == b"two"
    assert store.list() == ["a/b/c.bin"]


def test_json_round_trip_is_stable(store: Store) -> None:
    store.put_json("m.json", {"b": 1, "a": [1, 2]})

    assert store.get_json("m.json") == {"a": [1, 2], "b": 1}
    assert store.get_bytes("m.json") == b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}'


def test_file_round_trip_creates_parent_folders(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    store.put_file("files/src.bin", src)

    dest = store.get_file("files/src.bin", tmp_path / "out" / "deep" / "copy.bin")

    assert dest == tmp_path / "out" / "deep" / "copy.bin"
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.bin"]  # no temp files


def test_exists_and_delete(store: Store) -> None:
    store.put_bytes("k/v", b"1")

    assert store.exists("k/v")
    assert not store.exists("k")  # a folder is not an object
    store.delete("k/v")
    store.delete("k/v")  # deleting a missing key is fine
    assert not store.exists("k/v")
    assert store.list() == []


def test_list_is_sorted_recursive_and_by_string_prefix(store: Store) -> None:
    keys = ["snapshots/b/2", "snapshots/a/1", "models/x", "snapshots-old/z"]
    for key in keys:
        store.put_bytes(key, b"")
    store.swap_pointer("aliases/champion", b"v1", None)

    assert store.list() == sorted([*keys, "aliases/champion"])
    assert store.list("snapshots/") == ["snapshots/a/1", "snapshots/b/2"]
    assert store.list("snapshots") == ["snapshots-old/z", "snapshots/a/1", "snapshots/b/2"]
    assert store.list("snapshots/a") == ["snapshots/a/1"]
    assert store.list("nothing/here/") == []


# ----------------------------------------------------------------------- errors


def test_missing_key_error_names_the_key_and_the_store(store: Store, tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError, match="no/such/key") as info:
        store.get_bytes("no/such/key")
    assert store.url in str(info.value)
    with pytest.raises(KeyNotFoundError, match="no/such/file"):
        store.get_file("no/such/file", tmp_path / "never.bin")
    assert not (tmp_path / "never.bin").exists()
    assert store.read_pointer("no/such/pointer") is None


def test_create_only_conflict_keeps_the_original(store: Store, tmp_path: Path) -> None:
    store.put_bytes("models/v1/model.json", b"original", create_only=True)
    src = tmp_path / "other.json"
    src.write_bytes(b"other")

    with pytest.raises(ObjectExistsError, match="immutable") as info:
        store.put_bytes("models/v1/model.json", b"new", create_only=True)
    assert store.uri("models/v1/model.json") in str(info.value)
    with pytest.raises(ObjectExistsError):
        store.put_file("models/v1/model.json", src, create_only=True)

    assert store.get_bytes("models/v1/model.json") == b"original"
    store.put_file("models/v2/model.json", src, create_only=True)
    assert store.get_bytes("models/v2/model.json") == b"other"
    assert store.list() == ["models/v1/model.json", "models/v2/model.json"]


# ----------------------------------------------------------------------- pointers


def test_pointer_create_read_swap(store: Store) -> None:
    assert store.read_pointer("aliases/champion") is None

    etag1 = store.swap_pointer("aliases/champion", b"v1", None)
    pointer = store.read_pointer("aliases/champion")
    assert pointer is not None
    assert (pointer.value, pointer.etag) == (b"v1", etag1)

    etag2 = store.swap_pointer("aliases/champion", b"v2", etag1)
    assert etag2 != etag1
    assert store.get_bytes("aliases/champion") == b"v2"


def test_pointer_swap_with_stale_etag_conflicts(store: Store) -> None:
    stale = store.swap_pointer("p", b"v1", None)
    store.swap_pointer("p", b"v2", stale)

    with pytest.raises(PointerConflictError, match="someone else") as info:
        store.swap_pointer("p", b"v3", stale)
    assert store.uri("p") in str(info.value)
    assert stale in str(info.value)
    assert "retry" in str(info.value)
    assert store.get_bytes("p") == b"v2"


def test_pointer_create_when_it_exists_conflicts(store: Store) -> None:
    store.swap_pointer("p", b"v1", None)

    with pytest.raises(PointerConflictError, match="absent"):
        store.swap_pointer("p", b"v2", None)
    assert store.get_bytes("p") == b"v1"


def test_pointer_swap_after_delete_conflicts(store: Store) -> None:
    etag = store.swap_pointer("p", b"v1", None)
    store.delete("p")

    # S3 (and moto) answer If-Match on a missing key with 404 NoSuchKey, not 412.
    with pytest.raises(PointerConflictError):
        store.swap_pointer("p", b"v2", etag)
    assert store.read_pointer("p") is None


# ----------------------------------------------------------------------- multi-process race


def increment_counter(url: str, endpoint: str | None, times: int, start: Any, results: Any):
    """Worker (top-level so 'spawn' can import it): read -> swap, retrying on conflict."""
    store = open_store(url, endpoint_url=endpoint)
    conflicts = 0
    start.wait()
    for _ in range(times):
        while True:
            pointer = store.read_pointer("counter")
            assert pointer is not None
            time.sleep(random.uniform(0, 0.005))  # widen the read->swap window
            try:
                store.swap_pointer("counter", str(int(pointer.value) + 1).encode(), pointer.etag)
                break
            except PointerConflictError:
                conflicts += 1
    results.put(conflicts)


def test_concurrent_processes_never_lose_an_increment(
    store: Store, request: pytest.FixtureRequest
) -> None:
    processes, times = 3, 10
    store.swap_pointer("counter", b"0", None)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    args = (store.url, _endpoint(store, request), times, start, results)
    workers = [ctx.Process(target=increment_counter, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    conflicts = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0

    assert store.get_bytes("counter") == str(processes * times).encode()
    assert sum(conflicts) > 0  # the processes really did race
