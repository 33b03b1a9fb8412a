"""Contract tests for the local-folder store (tmp_path only, no servers)."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import pytest

from components.core.store import (
    KeyNotFoundError,
    LocalStore,
    ObjectExistsError,
    PointerConflictError,
    S3Store,
    StoreError,
    open_store,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------- open_store / keys


def test_open_store_is_lazy_and_understands_paths_and_file_urls(tmp_path: Path) -> None:
    root = tmp_path / "lazy" / "store"
    by_path = open_store(str(root))
    by_url = open_store(root.as_uri())

    assert isinstance(by_path, LocalStore)
    assert by_path.url == by_url.url == root.as_uri()
    assert by_path.uri("a/b.json") == f"{root.as_uri()}/a/b.json"
    assert not root.exists()  # nothing is created until the first write
    by_path.put_bytes("a/b.json", b"{}")
    assert (root / "a" / "b.json").read_bytes() == b"{}"


def test_open_store_s3_uses_the_given_client() -> None:
    client = object()
    store = open_store("s3://bucket/some/prefix/", s3_client=client)

    assert isinstance(store, S3Store)
    assert store.client is client
    assert store.url == "s3://bucket/some/prefix"
    assert store.uri("k/v.json") == "s3://bucket/some/prefix/k/v.json"
    assert open_store("s3://bucket", s3_client=client).uri("k") == "s3://bucket/k"


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../b", "a\\b", "a//b", "a/./b", "a/", "x.lock"],
)
def test_invalid_keys_are_rejected_with_the_key_named(store: LocalStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid store key") as info:
        store.put_bytes(key, b"x")
    assert repr(key) in str(info.value)
    assert not store.root.exists()


def test_invalid_list_prefix_is_rejected(store: LocalStore) -> None:
    with pytest.raises(ValueError, match="invalid store prefix"):
        store.list("../")


# ----------------------------------------------------------------------- round trips


def test_bytes_round_trip_and_overwrite(store: LocalStore) -> None:
    store.put_bytes("a/b/c.bin", b"one")
    store.put_bytes("a/b/c.bin", b"two")

    assert store.get_bytes("a/b/c.bin") == b"two"
    assert _all_files(store.root) == ["a/b/c.bin"]  # no temp files left behind


def test_json_round_trip_is_stable(store: LocalStore) -> None:
    store.put_json("m.json", {"b": 1, "a": [1, 2]})

    assert store.get_json("m.json") == {"a": [1, 2], "b": 1}
    assert store.get_bytes("m.json") == b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}'


def test_file_round_trip_creates_parent_folders(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    store.put_file("files/src.bin", src)

    dest = store.get_file("files/src.bin", tmp_path / "out" / "deep" / "copy.bin")

    assert dest == tmp_path / "out" / "deep" / "copy.bin"
    assert dest.read_bytes() == src.read_bytes()
    assert _all_files(dest.parent) == ["copy.bin"]


def test_exists_and_delete(store: LocalStore) -> None:
    store.put_bytes("k/v", b"1")

    assert store.exists("k/v")
    assert not store.exists("k")  # a folder is not an object
    store.delete("k/v")
    store.delete("k/v")  # deleting a missing key is fine
    assert not store.exists("k/v")
    assert store.list() == []


def test_list_is_sorted_recursive_by_string_prefix_and_skips_temp_and_lock_files(
    store: LocalStore,
) -> None:
    for key in ["snapshots/b/2", "snapshots/a/1", "models/x", "snapshots-old/z"]:
        store.put_bytes(key, b"")
    store.swap_pointer("aliases/champion", b"v1", None)  # leaves aliases/champion.lock
    (store.root / "snapshots" / "a" / ".tmp-crashed").write_bytes(b"partial")

    assert store.list() == [
        "aliases/champion",
        "models/x",
        "snapshots-old/z",
        "snapshots/a/1",
        "snapshots/b/2",
    ]
    assert store.list("snapshots/") == ["snapshots/a/1", "snapshots/b/2"]
    assert store.list("snapshots") == ["snapshots-old/z", "snapshots/a/1", "snapshots/b/2"]
    assert store.list("snapshots/a") == ["snapshots/a/1"]
    assert store.list("nothing/here/") == []


# ----------------------------------------------------------------------- errors


def test_missing_key_error_names_key_and_store(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError, match="no/such/key") as info:
        store.get_bytes("no/such/key")
    assert store.url in str(info.value)
    with pytest.raises(KeyNotFoundError, match="no/such/file"):
        store.get_file("no/such/file", tmp_path / "never.bin")
    assert not (tmp_path / "never.bin").exists()


def test_create_only_conflict_keeps_original_and_leaves_no_temp_files(
    store: LocalStore, tmp_path: Path
) -> None:
    store.put_bytes("models/v1/model.json", b"original", create_only=True)
    src = tmp_path / "other.json"
    src.write_bytes(b"other")

    with pytest.raises(ObjectExistsError, match="immutable") as info:
        store.put_bytes("models/v1/model.json", b"new", create_only=True)
    assert "models/v1/model.json" in str(info.value)
    with pytest.raises(ObjectExistsError):
        store.put_file("models/v1/model.json", src, create_only=True)

    assert store.get_bytes("models/v1/model.json") == b"original"
    assert _all_files(store.root) == ["models/v1/model.json"]


def test_key_that_is_also_a_folder_is_a_clear_store_error(store: LocalStore) -> None:
    store.put_bytes("a", b"file")
    store.put_bytes("b/c", b"file")

    with pytest.raises(StoreError, match="a file is in the way") as info:
        store.put_bytes("a/b", b"x", create_only=True)
    assert not isinstance(info.value, ObjectExistsError)
    with pytest.raises(StoreError, match="it is a folder"):
        store.put_bytes("b", b"x")
    assert store.list() == ["a", "b/c"]


def test_write_failing_midway_leaves_no_temp_file(store: LocalStore) -> None:
    # The temp file exists by the time the bytes are written; a str fails exactly there.
    with pytest.raises(TypeError):
        store.put_bytes("k", "not bytes", create_only=True)  # type: ignore[arg-type]

    assert _all_files(store.root) == []
    assert not store.exists("k")


# ----------------------------------------------------------------------- pointers


def test_pointer_create_read_swap(store: LocalStore) -> None:
    assert store.read_pointer("aliases/champion") is None

    etag1 = store.swap_pointer("aliases/champion", b"v1", None)
    pointer = store.read_pointer("aliases/champion")
    assert pointer is not None
    assert (pointer.value, pointer.etag) == (b"v1", etag1)

    etag2 = store.swap_pointer("aliases/champion", b"v2", etag1)
    assert etag2 != etag1
    assert store.get_bytes("aliases/champion") == b"v2"


def test_pointer_swap_with_stale_etag_conflicts(store: LocalStore) -> None:
    stale = store.swap_pointer("p", b"v1", None)
    store.swap_pointer("p", b"v2", stale)

    with pytest.raises(PointerConflictError, match="someone else") as info:
        store.swap_pointer("p", b"v3", stale)
    assert "p" in str(info.value)
    assert stale in str(info.value)
    assert "retry" in str(info.value)
    assert store.get_bytes("p") == b"v2"


def test_pointer_create_when_it_exists_conflicts(store: LocalStore) -> None:
    store.swap_pointer("p", b"v1", None)

    with pytest.raises(PointerConflictError, match="absent"):
        store.swap_pointer("p", b"v2", None)
    assert store.get_bytes("p") == b"v1"


def test_pointer_swap_after_delete_conflicts(store: LocalStore) -> None:
    etag = store.swap_pointer("p", b"v1", None)
    store.delete("p")

    with pytest.raises(PointerConflictError):
        store.swap_pointer("p", b"v2", etag)
    assert store.read_pointer("p") is None


# ----------------------------------------------------------------------- multi-process race


def increment_counter(root: str, key: str, times: int, start: Any, results: Any) -> None:
    """Worker (top-level so 'spawn' can import it): read -> swap, retrying on conflict."""
    store = LocalStore(root)
    conflicts = 0
    start.wait()
    for _ in range(times):
        while True:
            pointer = store.read_pointer(key)
            assert pointer is not None
            time.sleep(random.uniform(0, 0.002))  # widen the read->swap window
            try:
                store.swap_pointer(key, str(int(pointer.value) + 1).encode(), pointer.etag)
                break
            except PointerConflictError:
                conflicts += 1
    results.put(conflicts)


def test_concurrent_processes_never_lose_an_increment(store: LocalStore) -> None:
    processes, times = 4, 25
    store.swap_pointer("counter", b"0", None)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    workers = [
        ctx.Process(
            target=increment_counter, args=(str(store.root), "counter", times, start, results)
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    conflicts = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0

    assert store.get_bytes("counter") == str(processes * times).encode()
    assert sum(conflicts) > 0  # the processes really did race
