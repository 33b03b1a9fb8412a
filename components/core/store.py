"""One interface for bytes and files under keys, on a local folder or on S3.

Every other component reads and writes through a :class:`Store`, so the same code runs
against ``./.mlops/store`` on a laptop and ``s3://bucket/prefix`` in the cloud.

Two guarantees make the registry and the pointers safe under concurrent writers:

* **Create-only writes** (``create_only=True``): the write fails with
  :class:`ObjectExistsError` if the key already exists, so immutable objects (snapshots,
  model versions) are never silently overwritten.
* **Compare-and-swap pointers** (:meth:`Store.swap_pointer`): a pointer is replaced only if
  it still has the etag the caller read, so two writers cannot lose each other's update.

Locally these come from ``os.link`` and a per-key ``flock`` plus atomic rename; on S3 from
the ``If-None-Match`` / ``If-Match`` conditional-write headers. Writers store immutable
objects first and move the pointer that makes them visible last.

Nothing happens at import time: no client is built and no folder is created.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# Local temp and lock files live beside the objects; these markers keep them out of list().
TMP_PREFIX = ".tmp-"
LOCK_SUFFIX = ".lock"

_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class StoreError(Exception):
    """Base class of every error raised by a store."""


class KeyNotFoundError(StoreError):
    """A read asked for a key that does not exist."""


class ObjectExistsError(StoreError):
    """A create-only write hit a key that already exists."""


class PointerConflictError(StoreError):
    """A compare-and-swap lost: the pointer is no longer in the state the caller expected."""


@dataclass(frozen=True)
class Pointer:
    """The content of a pointer and the opaque etag to pass back to ``swap_pointer``."""

    value: bytes
    etag: str


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key like ``"snapshots/churn/abc/data.parquet"``.

    Raises ValueError naming the key when it is empty, absolute, has a backslash, an empty,
    ``.`` or ``..`` segment (which could escape a local store's folder), or uses a name
    reserved for the local store's temp and lock files.
    """
    problem = _key_problem(key)
    if problem:
        raise ValueError(f"invalid store key {key!r}: {problem}")
    return key


def _key_problem(key: str) -> str | None:
    if not isinstance(key, str) or not key:
        return "keys must be non-empty strings"
    if key.startswith("/") or "\\" in key or "\x00" in key:
        return "use a relative key with forward slashes (no leading '/', backslash or NUL)"
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return "empty, '.' and '..' path segments are not allowed"
    if segments[-1].startswith(TMP_PREFIX) or key.endswith(LOCK_SUFFIX):
        return f"names starting with {TMP_PREFIX!r} or ending with {LOCK_SUFFIX!r} are reserved"
    return None


def _validate_prefix(prefix: str) -> str:
    """A list prefix is empty, or a valid key optionally followed by one '/'."""
    if prefix and (problem := _key_problem(prefix.removesuffix("/"))):
        raise ValueError(f"invalid store prefix {prefix!r}: {problem}")
    return prefix


def _conflict_message(key_uri: str, expected_etag: str | None) -> str:
    expected = "it to be absent" if expected_etag is None else f"etag {expected_etag}"
    return (
        f"pointer {key_uri} was changed by someone else (expected {expected}); "
        "re-read it with read_pointer and retry"
    )


def _exists_message(key_uri: str) -> str:
    return (
        f"{key_uri} already exists and objects under it are immutable; "
        "write a new key instead of overwriting"
    )


class Store(ABC):
    """Bytes and files under forward-slash keys relative to the store root (``url``)."""

    url: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        """Store ``data`` under ``key`` atomically; with ``create_only`` raise
        ObjectExistsError (and keep the old content) if the key exists."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the content of ``key``; KeyNotFoundError if it does not exist."""

    @abstractmethod
    def put_file(self, key: str, path: str | Path, *, create_only: bool = False) -> None:
        """Stream the file at ``path`` to ``key``; same contract as ``put_bytes``."""

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> Path:
        """Stream ``key`` to ``path`` atomically (parents created) and return the path."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix`` (a plain string prefix, as on S3), recursively."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def read_pointer(self, key: str) -> Pointer | None:
        """Return the pointer under ``key`` with its etag, or None when it is absent."""

    @abstractmethod
    def swap_pointer(self, key: str, value: bytes, expected_etag: str | None) -> str:
        """Replace the pointer only if its etag is still ``expected_etag`` (None: only if it
        does not exist yet) and return the new etag; PointerConflictError otherwise."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The full URI of ``key``, for messages and manifests."""

    def put_json(self, key: str, obj: Any, *, create_only: bool = False) -> None:
        """Store ``obj`` as indented JSON with sorted keys (stable bytes for hashing)."""
        data = json.dumps(obj, indent=2, sort_keys=True).encode("utf-8")
        self.put_bytes(key, data, create_only=create_only)

    def get_json(self, key: str) -> Any:
        """Return the JSON document stored under ``key``."""
        return json.loads(self.get_bytes(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# --------------------------------------------------------------------------- local folder


class LocalStore(Store):
    """A store in a local folder, created lazily on the first write.

    Writes go to a temp file in the target folder, are fsynced and then renamed into place,
    so readers see the old or the new content, never a partial file. Pointer swaps hold an
    ``flock`` on ``<key>.lock``, which makes them safe across processes on one machine
    (not across machines sharing a network file system).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()

    def uri(self, key: str) -> str:
        return f"{self.url}/{validate_key(key)}"

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self._write(key, lambda fh: fh.write(data), create_only=create_only)

    def put_file(self, key: str, path: str | Path, *, create_only: bool = False) -> None:
        with Path(path).open("rb") as src:
            self._write(key, lambda fh: shutil.copyfileobj(src, fh), create_only=create_only)

    def _write(self, key: str, fill: Callable[[IO[bytes]], object], *, create_only: bool) -> None:
        try:
            _atomic_write(self._path(key), fill, create_only=create_only)
        except FileExistsError:
            raise ObjectExistsError(_exists_message(self.uri(key))) from None

    def get_bytes(self, key: str) -> bytes:
        with self._open_for_read(key) as fh:
            return fh.read()

    def get_file(self, key: str, path: str | Path) -> Path:
        dest = Path(path)
        with self._open_for_read(key) as src:
            _atomic_write(dest, lambda fh: shutil.copyfileobj(src, fh), create_only=False)
        return dest

    @contextmanager
    def _open_for_read(self, key: str) -> Iterator[IO[bytes]]:
        try:
            fh = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFoundError(f"no object {key!r} in store {self.url}") from None
        with fh:
            yield fh

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        _validate_prefix(prefix)
        # Walk only the deepest folder the prefix names, then filter by string prefix.
        start = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not start.is_dir():
            return []
        keys = (
            path.relative_to(self.root).as_posix()
            for path in start.rglob("*")
            if _is_object_name(path.name) and path.is_file()
        )
        return sorted(key for key in keys if key.startswith(prefix))

    def delete(self, key: str) -> None:
        # Lock files are left in place: unlinking one while another process holds it would
        # let a third process lock a fresh file and enter the critical section alongside.
        self._path(key).unlink(missing_ok=True)

    def read_pointer(self, key: str) -> Pointer | None:
        try:
            value = self.get_bytes(key)
        except KeyNotFoundError:
            return None
        return Pointer(value=value, etag=_sha256(value))

    def swap_pointer(self, key: str, value: bytes, expected_etag: str | None) -> str:
        path = self._path(key)
        with _exclusive_lock(path.with_name(path.name + LOCK_SUFFIX)):
            current = self.read_pointer(key)
            current_etag = current.etag if current else None
            if current_etag != expected_etag:
                raise PointerConflictError(_conflict_message(self.uri(key), expected_etag))
            _atomic_write(path, lambda fh: fh.write(value), create_only=False)
        return _sha256(value)


def _is_object_name(name: str) -> bool:
    return not (name.startswith(TMP_PREFIX) or name.endswith(LOCK_SUFFIX))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(final: Path, fill: Callable[[IO[bytes]], object], *, create_only: bool) -> None:
    """Write via a fsynced temp file in the same folder, then rename (or hard-link when
    ``create_only``, which raises FileExistsError atomically). The temp file never survives."""
    _make_folder(final.parent)
    if final.is_dir():
        raise StoreError(f"cannot write {final}: it is a folder (of other keys)")
    tmp = final.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}")
    try:
        # O_EXCL: never reuse someone else's file; 0o666 lets the umask decide permissions.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if create_only:
            os.link(tmp, final)
        else:
            tmp.replace(final)
        _fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _make_folder(folder: Path) -> None:
    # A folder cannot share its name with a file, so keys "a" and "a/b" cannot coexist locally
    # (they can on S3); say so instead of letting mkdir's FileExistsError pass for a conflict.
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreError(
            f"cannot create folder {folder}: a file is in the way; on a local store a key "
            "cannot also be the folder of other keys"
        ) from None


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable across a power loss, not just the file's bytes.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    _make_folder(lock_path.parent)
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- S3


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
                raise ObjectExistsError(_exists_message(self.uri(key))) from None
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
        _validate_prefix(prefix)
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
                raise PointerConflictError(
                    _conflict_message(self.uri(key), expected_etag)
                ) from None
            raise self._fail("swap pointer", key, err) from err
        return response["ETag"]


# --------------------------------------------------------------------------- factory


def open_store(
    url: str,
    *,
    s3_client: Any = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> Store:
    """Open ``s3://bucket/prefix`` as an S3Store (with ``s3_client``, or a new client from
    :func:`make_s3_client`) and anything else (a path or ``file://`` URL) as a LocalStore.
    Opening never creates anything; a local folder appears on the first write."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        client = s3_client or make_s3_client(endpoint_url=endpoint_url, region=region)
        return S3Store(parsed.netloc, parsed.path, client)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URL {url!r} names host {parsed.netloc!r}; use file:///path")
        return LocalStore(url2pathname(parsed.path))
    return LocalStore(url)


def store_from_settings(settings: Any, override: str | None = None) -> Store:
    """The store named by `override` or `settings.store` (components.core.settings.Settings),
    with the S3 endpoint, region and retry count those settings give."""
    url = override or settings.store
    client = None
    if url.startswith("s3://"):
        client = make_s3_client(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.aws_region,
            max_attempts=settings.s3_max_attempts,
        )
    return open_store(url, s3_client=client)
