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
objects first and move the pointer that makes them visible last. The S3 store lives in
:mod:`components.core.s3_store`; :func:`open_store` picks one from the URL.

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

# Local temp and lock files live beside the objects; these markers keep them out of list().
TMP_PREFIX = ".tmp-"
LOCK_SUFFIX = ".lock"


class StoreError(Exception):
    """Base class of every error raised by a store."""


class KeyNotFoundError(StoreError):
    """A read asked for a key that does not exist."""


class ObjectExistsError(StoreError):
    """A create-only write hit a key that already exists."""

    @classmethod
    def at(cls, key_uri: str) -> ObjectExistsError:
        return cls(
            f"{key_uri} already exists and objects under it are immutable; "
            "write a new key instead of overwriting"
        )


class PointerConflictError(StoreError):
    """A compare-and-swap lost: the pointer is no longer in the state the caller expected."""

    @classmethod
    def at(cls, key_uri: str, expected_etag: str | None) -> PointerConflictError:
        expected = "it to be absent" if expected_etag is None else f"etag {expected_etag}"
        return cls(
            f"pointer {key_uri} was changed by someone else (expected {expected}); "
            "re-read it with read_pointer and retry"
        )


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


def validate_prefix(prefix: str) -> str:
    """A list prefix is empty, or a valid key optionally followed by one '/'."""
    if prefix and (problem := _key_problem(prefix.removesuffix("/"))):
        raise ValueError(f"invalid store prefix {prefix!r}: {problem}")
    return prefix


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
            raise ObjectExistsError.at(self.uri(key)) from None

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
        validate_prefix(prefix)
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
                raise PointerConflictError.at(self.uri(key), expected_etag)
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
        # Imported here, not at the top: s3_store builds on this module, and local stores
        # never need boto3.
        from components.core.s3_store import S3Store, make_s3_client

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
        from components.core.s3_store import make_s3_client

        client = make_s3_client(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.aws_region,
            max_attempts=settings.s3_max_attempts,
        )
    return open_store(url, s3_client=client)
