"""What only the local-folder store has: paths and file URLs, key checks, temp and lock files,
folders in the way. The shared contract is tests/integration/test_store_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.core.s3_store import S3Store
from components.core.store import (
    LocalStore,
    ObjectExistsError,
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
