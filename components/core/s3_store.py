"""The S3 store: a :class:`~components.core.store.Store` under ``s3://bucket/prefix``.

Create-only writes and pointer swaps use S3's conditional-write headers (``If-None-Match``
and ``If-Match``), so S3 itself arbitrates between concurrent writers. Nothing happens at
import time: the client is built by :func:`make_s3_client` when a store is opened.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from components.core.store import (
    TMP_PREFIX,
    KeyNotFoundError,
    ObjectExistsError,
    Pointer,
    PointerConflictError,
    Store,
    StoreError,
    validate_key,
    validate_prefix,
)

_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


def make_s3_client(
    endpoint_url: str | None = None, region: str | None = None, max_attempts: int = 5
) -> Any:
    """Build a boto3 S3 client whose transient errors (5xx, throttling, timeouts) are retried
    with botocore's ``standard`` mode; ``max_attempts`` follows botocore's meaning (retries
    after the first try). A custom ``endpoint_url`` (moto, MinIO) uses path-style addressing.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _is_missing(err: ClientError) -> bool:
    return _error_code(err) in _MISSING_CODES


def _is_conflict(err: ClientError) -> bool:
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _error_code(err) in _CONFLICT_CODES or status == 412


class S3Store(Store):
    """A store under ``s3://bucket/prefix`` using a boto3 client.

    Create-only writes send ``If-None-Match: *`` and pointer swaps ``If-Match: <etag>``, so
    S3 itself arbitrates between concurrent writers. Create-only ``put_file`` is a single
    PUT (S3's limit: 5 GB); plain ``put_file`` uses multipart uploads for big files.
    """

    def __init__(self, bucket: str, prefix: str, client: Any, *, page_size: int = 1000) -> None:
        if not bucket:
            raise ValueError("an S3 store needs a bucket: use s3://bucket or s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.client = client
        self.page_size = page_size
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _fail(self, action: str, key: str, err: ClientError) -> StoreError:
        return StoreError(f"could not {action} {self.uri(key)}: {err}")

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self._put_object(key, data, create_only=create_only)

    def put_file(self, key: str, path: str | Path, *, create_only: bool = False) -> None:
        if create_only:
            # s3transfer's upload_file cannot send If-None-Match, so use one PUT instead.
            with Path(path).open("rb") as fh:
                self._put_object(key, fh, create_only=True)
            return
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except ClientError as err:
            raise self._fail("upload to", key, err) from err

    def _put_object(self, key: str, body: bytes | IO[bytes], *, create_only: bool) -> None:
        extra = {"IfNoneMatch": "*"} if create_only else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, **extra)
        except ClientError as err:
            if create_only and _is_conflict(err):
                raise ObjectExistsError.at(self.uri(key)) from None
            raise self._fail("write", key, err) from err

    def get_bytes(self, key: str) -> bytes:
        return self._get_object(key)["Body"].read()

    def _get_object(self, key: str) -> dict[str, Any]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _is_missing(err):
                raise KeyNotFoundError(f"no object {self.uri(key)} in store {self.url}") from None
            raise self._fail("read", key, err) from err

    def get_file(self, key: str, path: str | Path) -> Path:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}")
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp))
            tmp.replace(dest)
        except ClientError as err:
            if _is_missing(err):
                raise KeyNotFoundError(f"no object {self.uri(key)} in store {self.url}") from None
            raise self._fail("download", key, err) from err
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _is_missing(err):
                return False
            raise self._fail("check", key, err) from err
        return True

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.page_size},
        )
        try:
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        except ClientError as err:
            raise StoreError(f"could not list {self.url}/{prefix}: {err}") from err
        # Zero-byte "folder" markers made by consoles end with '/'; they are not objects.
        return sorted(k[len(self.prefix) :] for k in keys if not k.endswith("/"))

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            raise self._fail("delete", key, err) from err

    def read_pointer(self, key: str) -> Pointer | None:
        try:
            response = self._get_object(key)
        except KeyNotFoundError:
            return None
        return Pointer(value=response["Body"].read(), etag=response["ETag"])

    def swap_pointer(self, key: str, value: bytes, expected_etag: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=value, **condition
            )
        except ClientError as err:
            # If-Match on a key deleted meanwhile answers 404 NoSuchKey: also a lost race.
            if _is_conflict(err) or (expected_etag is not None and _is_missing(err)):
                raise PointerConflictError.at(self.uri(key), expected_etag) from None
            raise self._fail("swap pointer", key, err) from err
        return response["ETag"]
