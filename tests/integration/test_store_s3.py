"""What only the S3 store has, against a moto server on 127.0.0.1 over real HTTP: the key
prefix, multipart uploads, paging, missing buckets, versioned buckets, retries. The shared
contract is test_store_contract.py."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from components.core.s3_store import S3Store, make_s3_client
from components.core.store import (
    KeyNotFoundError,
    ObjectExistsError,
    PointerConflictError,
    StoreError,
    open_store,
)

PREFIX = "team/store"


@pytest.fixture
def store(s3_bucket: tuple[Any, str]) -> S3Store:
    client, bucket = s3_bucket
    opened = open_store(f"s3://{bucket}/{PREFIX}/", s3_client=client)
    assert isinstance(opened, S3Store)
    return opened


@pytest.fixture
def versioned_store(s3_bucket: tuple[Any, str]) -> S3Store:
    client, bucket = s3_bucket
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return S3Store(bucket, PREFIX, client)


def _raw_keys(store: S3Store) -> list[str]:
    response = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in response.get("Contents", []))


# ----------------------------------------------------------------------- round trips


def test_bytes_and_json_round_trip_under_the_prefix(store: S3Store) -> None:
    store.put_bytes("a/b.bin", b"one")
    store.put_bytes("a/b.bin", b"two")
    store.put_json("m.json", {"b": 1, "a": [1, 2]})

    assert store.get_bytes("a/b.bin") == b"two"
    assert store.get_json("m.json") == {"a": [1, 2], "b": 1}
    assert _raw_keys(store) == [f"{PREFIX}/a/b.bin", f"{PREFIX}/m.json"]
    assert store.uri("a/b.bin") == f"s3://{store.bucket}/{PREFIX}/a/b.bin"


def test_file_round_trip_small_and_multipart(store: S3Store, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(0).randbytes(9 * 1024 * 1024))  # over the 8 MB threshold
    store.put_file("files/small.bin", small)
    store.put_file("files/big.bin", big)

    out = store.get_file("files/big.bin", tmp_path / "out" / "deep" / "big.bin")

    assert out.read_bytes() == big.read_bytes()
    assert store.get_file("files/small.bin", tmp_path / "s.bin").read_bytes() == b"tiny"
    assert sorted(p.name for p in out.parent.iterdir()) == ["big.bin"]  # no temp files
    head = store.client.head_object(Bucket=store.bucket, Key=f"{PREFIX}/files/big.bin")
    assert head["ETag"].endswith('-2"')  # really went through a multipart upload


def test_list_pages_through_sorted_keys_relative_to_the_prefix(store: S3Store) -> None:
    keys = [f"snapshots/{i:02d}" for i in range(30)] + ["snapshots-old/z", "models/x"]
    for key in random.Random(1).sample(keys, len(keys)):
        store.put_bytes(key, b"")
    store.client.put_object(Bucket=store.bucket, Key="outside/the/prefix", Body=b"")
    pages = []
    store.client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **kwargs: pages.append(1)
    )
    store.page_size = 7

    listed = store.list("snapshots/")

    assert listed == [f"snapshots/{i:02d}" for i in range(30)]
    assert len(pages) == 5  # 30 keys in pages of 7
    assert store.list() == sorted(keys)
    assert store.list("snapshots") == sorted(k for k in keys if k.startswith("snapshots"))
    assert store.list("nothing/") == []


# ----------------------------------------------------------------------- errors


def test_missing_bucket_is_a_store_error_not_a_missing_key(moto_server: str) -> None:
    store = open_store("s3://no-such-bucket-here/x", endpoint_url=moto_server)

    with pytest.raises(StoreError, match="s3://no-such-bucket-here/x/k") as info:
        store.get_bytes("k")
    assert not isinstance(info.value, KeyNotFoundError)
    assert "NoSuchBucket" in str(info.value)


def test_invalid_key_is_rejected_before_any_request(store: S3Store) -> None:
    with pytest.raises(ValueError, match=r"invalid store key '\.\./x'"):
        store.put_bytes("../x", b"")
    assert _raw_keys(store) == []


# ----------------------------------------------------------------------- versioned bucket


def _versions(store: S3Store, key: str) -> list[Any]:
    full_key = f"{PREFIX}/{key}"
    response = store.client.list_object_versions(Bucket=store.bucket, Prefix=full_key)
    versions = [v for v in response.get("Versions", []) if v["Key"] == full_key]
    markers = [m for m in response.get("DeleteMarkers", []) if m["Key"] == full_key]
    return versions + markers


def test_versioned_bucket_keeps_create_only_and_cas_and_retains_versions(
    versioned_store: S3Store,
) -> None:
    store = versioned_store
    store.put_bytes("models/v1/model.json", b"original", create_only=True)
    with pytest.raises(ObjectExistsError):
        store.put_bytes("models/v1/model.json", b"new", create_only=True)
    assert len(_versions(store, "models/v1/model.json")) == 1  # the refused write left none

    etag1 = store.swap_pointer("aliases/champion", b"v1", None)
    etag2 = store.swap_pointer("aliases/champion", b"v2", etag1)
    with pytest.raises(PointerConflictError):
        store.swap_pointer("aliases/champion", b"v3", etag1)
    with pytest.raises(PointerConflictError):
        store.swap_pointer("aliases/champion", b"v3", None)
    store.swap_pointer("aliases/champion", b"v1", etag2)  # a rollback is just another swap

    versions = _versions(store, "aliases/champion")
    assert len(versions) == 3
    bodies = [
        store.client.get_object(Bucket=store.bucket, Key=v["Key"], VersionId=v["VersionId"])[
            "Body"
        ].read()
        for v in versions
    ]
    assert sorted(bodies) == [b"v1", b"v1", b"v2"]


def test_versioned_bucket_create_after_delete_marker(versioned_store: S3Store) -> None:
    store = versioned_store
    store.swap_pointer("p", b"v1", None)
    store.delete("p")

    assert store.read_pointer("p") is None
    assert store.swap_pointer("p", b"v2", None)  # a delete marker counts as absent
    assert store.get_bytes("p") == b"v2"
    assert len(_versions(store, "p")) == 3  # v1, the delete marker, v2


# ----------------------------------------------------------------------- retries


def test_make_s3_client_configures_standard_retries() -> None:
    retries = make_s3_client(region="us-east-1", max_attempts=7).meta.config.retries

    # botocore counts max_attempts as retries and stores the total including the first try.
    assert retries == {"mode": "standard", "total_max_attempts": 8}


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def test_transient_s3_errors_are_retried(s3_bucket: tuple[Any, str], moto_server: str) -> None:
    _, bucket = s3_bucket
    client = make_s3_client(endpoint_url=moto_server, max_attempts=3)
    store = S3Store(bucket, PREFIX, client)
    store.put_bytes("k", b"survived")
    attempts = []

    def fail_first_attempt(request: Any, **_: Any) -> AWSResponse | None:
        attempts.append(request.url)
        if len(attempts) > 1:
            return None  # let the real request through
        error = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
        return AWSResponse(request.url, 503, {}, _Body(error))

    client.meta.events.register("before-send.s3.GetObject", fail_first_attempt)

    assert store.get_bytes("k") == b"survived"
    assert len(attempts) == 2
