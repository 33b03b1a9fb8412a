"""Model registry: immutable model versions, and the aliases that say which one to serve.

Layout in the store, per problem (immutable objects first, the document that makes them
visible last):

    models/<problem>/versions/<version>/<file>          the version's files, create-only
    models/<problem>/versions/<version>/metadata.json   written last: sha256 and size of each file
    models/<problem>/registry.json                      versions, aliases and history (CAS)

``registry.json`` is the only object that ever changes. Every change (reserving a version id,
recording a version's status, moving an alias) reads it, edits a copy and swaps it back with
the etag it read; a writer that lost the race re-reads and retries. The aliases and the whole
promotion history live in that one document, so two concurrent promotions are applied one
after the other, never side by side: there is always exactly one champion, and each history
entry's ``from`` is the previous entry's ``to`` for that alias.

A version id is reserved (status ``pending``) before its files are written and recorded as
``registered`` or ``rejected`` after its metadata; a version left ``pending`` is a
registration that crashed midway and can never be pointed at by an alias.

The registry does not interpret the files: the caller decides what a version holds (the
XGBoost model in its own UBJSON format, model card, plots, reference profile ...). The records
it returns, the aliases and the argument checks are in ``registry_records``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import EllipsisType
from typing import Any, TypeVar

from components.core import keys
from components.core.provenance import sha256_hex
from components.core.store import (
    KeyNotFoundError,
    ObjectExistsError,
    Pointer,
    PointerConflictError,
    Store,
    validate_key,
)
from components.model.registry_records import (
    ALIASES,
    METADATA_FILE,
    HistoryEntry,
    VersionInfo,
    check_actor,
    check_alias,
    check_files,
    check_metadata,
    history_entry,
    sort_versions,
    version_number,
)

_FORMAT = 1
_BACKOFF_BASE_SECONDS = 0.005
_BACKOFF_CAP_SECONDS = 0.25

_T = TypeVar("_T")


class RegistryError(Exception):
    """Base class of the registry's errors; messages name the problem, version and store URI."""


class VersionNotFoundError(RegistryError):
    """The version id is malformed, unknown, or its registration has not completed."""


class IntegrityError(RegistryError):
    """A version's file is missing or does not match the checksum and size in its metadata."""


class ChampionChangedError(RegistryError):
    """The champion is no longer the one a promotion was decided against."""


class PromotionRefusedError(RegistryError):
    """An alias may not point at this version (rejected, or registration not completed)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """The model registry of one problem, under ``models/<problem>/`` in ``store``.

    ``clock`` stamps versions and history entries; ``max_tries`` bounds the compare-and-swap
    retries on registry.json, with jittered exponential back-off slept through ``sleep``.
    """

    def __init__(
        self,
        store: Store,
        problem: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        max_tries: int = 50,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(problem, str) or "/" in problem:
            raise ValueError(f"invalid problem name {problem!r}: use one name without '/'")
        validate_key(problem)
        self.store = store
        self.problem = problem
        self._clock = clock
        self._max_tries = max_tries
        self._sleep = sleep
        self._doc_key = keys.registry(problem)

    def __repr__(self) -> str:
        return f"Registry({self.problem!r}, {self.store.url!r})"

    # ------------------------------------------------------------------- registering

    def register(
        self,
        files: dict[str, bytes] | Callable[[str], dict[str, bytes]],
        metadata: dict[str, Any],
        *,
        rejected: bool = False,
        reason: str = "",
    ) -> str:
        """Store a new version and return its id (``"v1"``, ``"v2"``, ...).

        Reserves the id, writes every file create-only, writes ``metadata.json`` (the caller's
        metadata plus version, problem, created_at, status_at_registration and the sha256 and
        size of every file) and finally records the version as registered or rejected.
        Arguments are checked before anything is written. ``files`` may be a function of the
        reserved version id, for files that name their own version (a model card); its
        result is checked after the reservation, so a bad result leaves the id ``pending``.
        """
        if not callable(files):
            check_files(files)
        check_metadata(metadata)
        status = "rejected" if rejected else "registered"
        version, created_at = self._update(self._reserve)
        if callable(files):
            files = files(version)
            check_files(files)
        record = {
            **metadata,
            "version": version,
            "problem": self.problem,
            "created_at": created_at,
            "status_at_registration": status,
            "files": {n: {"sha256": sha256_hex(d), "bytes": len(d)} for n, d in files.items()},
        }
        try:
            for name in sorted(files):
                self.store.put_bytes(self._file_key(version, name), files[name], create_only=True)
            self.store.put_json(self._file_key(version, METADATA_FILE), record, create_only=True)
        except ObjectExistsError as err:
            raise RegistryError(
                f"{self._where(version)}: {err}. The id was reserved in "
                f"{self.store.uri(self._doc_key)} but objects already exist under it: was "
                "registry.json deleted or restored while versions existed? Restore it instead."
            ) from None
        self._update(lambda doc: self._record(doc, version, status, reason))
        return version

    def _reserve(self, doc: dict[str, Any]) -> tuple[tuple[str, str], bool]:
        version = f"v{doc['next_version']}"
        created_at = self._now()
        doc["next_version"] += 1
        doc["versions"][version] = {"status": "pending", "created_at": created_at, "reason": ""}
        return (version, created_at), True

    def _record(
        self, doc: dict[str, Any], version: str, status: str, reason: str
    ) -> tuple[None, bool]:
        entry = doc["versions"].get(version)
        if entry is None:
            raise RegistryError(
                f"{self._where(version)}: its reservation vanished from "
                f"{self.store.uri(self._doc_key)} while its files were written"
            )
        entry.update(status=status, reason=reason)
        return None, True

    # ------------------------------------------------------------------- reading versions

    def metadata(self, version: str) -> dict[str, Any]:
        """The version's metadata.json; VersionNotFoundError if it has none."""
        self._check_version_id(version)
        key = self._file_key(version, METADATA_FILE)
        try:
            raw = self.store.get_bytes(key)
        except KeyNotFoundError:
            raise VersionNotFoundError(self._not_found_message(version)) from None
        try:
            meta = json.loads(raw)
        except ValueError as err:
            raise IntegrityError(
                f"{self._where(version)}: {self.store.uri(key)} is not valid JSON ({err}); "
                "the version is tampered or truncated and must not be served"
            ) from None
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            raise IntegrityError(
                f"{self._where(version)}: {self.store.uri(key)} has no 'files' table; "
                "the version is tampered or truncated and must not be served"
            )
        return meta

    def read_file(self, version: str, name: str) -> bytes:
        """The content of one file of a version, verified against the version's metadata."""
        files = self.metadata(version)["files"]
        if name not in files:
            raise RegistryError(
                f"{self._where(version)} has no file {name!r}; its files are: "
                f"{', '.join(sorted(files)) or '(none)'}"
            )
        data, problem = self._check_file(version, name, files[name])
        if problem:
            raise IntegrityError(_integrity_message(self._where(version), [problem]))
        return data

    def verify(self, version: str) -> None:
        """Check every file of a version; IntegrityError listing each bad file."""
        files = self.metadata(version)["files"]
        problems = [self._check_file(version, name, files[name])[1] for name in sorted(files)]
        bad = [problem for problem in problems if problem]
        if bad:
            raise IntegrityError(_integrity_message(self._where(version), bad))

    def _check_file(self, version: str, name: str, expected: Any) -> tuple[bytes, str | None]:
        """The file's bytes and a description of what is wrong with them (None if nothing)."""
        key = self._file_key(version, name)
        try:
            data = self.store.get_bytes(key)
        except KeyNotFoundError:
            return b"", f"{name}: missing (expected at {self.store.uri(key)})"
        want_sha, want_size = _expected(expected)
        got_sha = sha256_hex(data)
        if got_sha == want_sha and len(data) == want_size:
            return data, None
        return data, (
            f"{name}: expected sha256 {want_sha[:12]}… and {want_size} bytes, found sha256 "
            f"{got_sha[:12]}… and {len(data)} bytes at {self.store.uri(key)}"
        )

    def versions(self) -> list[VersionInfo]:
        """Every version registry.json knows, in numeric order, with the aliases on it."""
        doc = self._read()
        aliases = doc["aliases"]
        return [
            VersionInfo(
                version=version,
                status=entry["status"],
                created_at=entry["created_at"],
                reason=entry.get("reason", ""),
                aliases=tuple(name for name in ALIASES if aliases.get(name) == version),
            )
            for version, entry in sorted(
                doc["versions"].items(), key=lambda item: version_number(item[0])
            )
        ]

    # ------------------------------------------------------------------- aliases

    def alias(self, name: str) -> str | None:
        """The version an alias points at, or None when it is unset."""
        check_alias(name)
        return self._read()["aliases"].get(name)

    def set_alias(self, name: str, version: str | None, *, actor: str, reason: str) -> HistoryEntry:
        """Point alias ``name`` at ``version`` (None unsets it) and return the history entry.

        Setting an alias to the version it already has changes and records nothing: the
        returned entry has ``seq == 0`` and ``from_version == to_version``. ``champion`` may
        not point at a rejected version (PromotionRefusedError), no alias at a pending one.
        """
        check_alias(name)
        check_actor(actor)
        return self._update(lambda doc: self._move(doc, name, version, actor, reason))

    def promote(
        self, version: str, *, actor: str, reason: str, replacing: str | EllipsisType | None = ...
    ) -> HistoryEntry:
        """Make ``version`` the champion. With ``replacing`` (a version, or None for "no
        champion yet"), only if the champion is still that one when the change is written:
        ChampionChangedError otherwise, so two runs that each beat the same champion end
        with one promotion."""
        check_actor(actor)

        def change(doc: dict[str, Any]) -> tuple[HistoryEntry, bool]:
            current = doc["aliases"].get("champion")
            if replacing is not ... and current != replacing:
                raise ChampionChangedError(
                    f"not promoting {self._where(version)}: it was compared with champion "
                    f"{replacing or '(none)'}, and the champion is now {current or '(none)'}"
                )
            return self._move(doc, "champion", version, actor, reason)

        return self._update(change)

    def rollback(self, *, actor: str, reason: str, to: str | None = None) -> HistoryEntry:
        """Point the champion back to ``to`` or, by default, to the version it pointed at
        before its latest change.

        The default undoes exactly one change, so a second rollback undoes the first (the
        two champions swap back); pass ``to`` to go further back. RegistryError when the
        champion has never changed from an earlier version.
        """
        check_actor(actor)

        def change(doc: dict[str, Any]) -> tuple[HistoryEntry, bool]:
            target = to if to is not None else self._previous_champion(doc)
            return self._move(doc, "champion", target, actor, reason)

        return self._update(change)

    def history(self, alias: str | None = None) -> list[HistoryEntry]:
        """Every recorded alias change in order, or only those of ``alias``."""
        if alias is not None:
            check_alias(alias)
        return [
            history_entry(raw)
            for raw in self._read()["history"]
            if alias is None or raw["alias"] == alias
        ]

    def _move(
        self, doc: dict[str, Any], name: str, target: str | None, actor: str, reason: str
    ) -> tuple[HistoryEntry, bool]:
        if target is not None:
            self._check_target(doc, name, target)
        current = doc["aliases"].get(name)
        now = self._now()
        if current == target:
            return HistoryEntry(0, name, current, current, now, actor, reason), False
        seq = doc["history"][-1]["seq"] + 1 if doc["history"] else 1
        raw = {
            "seq": seq,
            "alias": name,
            "from": current,
            "to": target,
            "at": now,
            "actor": actor,
            "reason": reason,
        }
        doc["history"].append(raw)
        doc["aliases"][name] = target
        return history_entry(raw), True

    def _check_target(self, doc: dict[str, Any], alias: str, version: str) -> None:
        self._check_version_id(version)
        entry = doc["versions"].get(version)
        if entry is None:
            raise VersionNotFoundError(self._unknown_message(doc, version))
        if entry["status"] == "pending":
            raise PromotionRefusedError(
                f"cannot point {alias!r} at {self._where(version)}: its registration has not "
                "completed (status pending); register the model again"
            )
        if alias == "champion" and entry["status"] == "rejected":
            why = f" ({entry['reason']})" if entry.get("reason") else ""
            raise PromotionRefusedError(
                f"cannot make {self._where(version)} champion: it was rejected at "
                f"registration{why}. Promote a version that passed the gate; a rejected "
                "version may only be the challenger"
            )

    def _previous_champion(self, doc: dict[str, Any]) -> str:
        changes = [raw for raw in doc["history"] if raw["alias"] == "champion"]
        if not changes:
            raise RegistryError(
                f"nothing to roll back to: {self._where()} has never had a champion; "
                "promote a version first"
            )
        if changes[-1]["from"] is None:
            raise RegistryError(
                f"nothing to roll back to: champion {changes[-1]['to'] or '(unset)'} of "
                f"{self._where()} was set when there was no champion before it; "
                "pass to=<version> to choose one"
            )
        return changes[-1]["from"]

    # ------------------------------------------------------------------- registry.json

    def _update(self, change: Callable[[dict[str, Any]], tuple[_T, bool]]) -> _T:
        """Apply ``change`` to a fresh copy of registry.json and swap it in with the etag that
        was read, retrying on conflict. ``change`` edits the document in place and returns
        ``(result, changed)``; if it raises, nothing is written."""
        for attempt in range(self._max_tries):
            pointer = self.store.read_pointer(self._doc_key)
            doc = self._parse(pointer)
            result, changed = change(doc)
            if not changed:
                return result
            body = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")
            try:
                self.store.swap_pointer(self._doc_key, body, pointer.etag if pointer else None)
                return result
            except PointerConflictError:
                if attempt + 1 < self._max_tries:
                    delay = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt)
                    self._sleep(random.uniform(0, delay))
        raise RegistryError(
            f"{self.store.uri(self._doc_key)} of problem {self.problem!r} was changed by other "
            f"writers on each of {self._max_tries} tries; nothing was changed, retry later"
        )

    def _read(self) -> dict[str, Any]:
        return self._parse(self.store.read_pointer(self._doc_key))

    def _parse(self, pointer: Pointer | None) -> dict[str, Any]:
        if pointer is None:
            return {
                "format": _FORMAT,
                "problem": self.problem,
                "next_version": 1,
                "versions": {},
                "aliases": dict.fromkeys(ALIASES),
                "history": [],
            }
        try:
            doc = json.loads(pointer.value)
        except ValueError as err:
            raise RegistryError(
                f"{self.store.uri(self._doc_key)} is not valid JSON ({err}); restore it from a "
                "backup (e.g. an earlier S3 object version) before using the registry"
            ) from None
        if not isinstance(doc, dict) or doc.get("problem") != self.problem:
            raise RegistryError(
                f"{self.store.uri(self._doc_key)} is not the registry of problem "
                f"{self.problem!r}; restore it from a backup before using the registry"
            )
        return doc

    # ------------------------------------------------------------------- helpers

    def now(self) -> datetime:
        """The registry's clock: the time it writes into what it records."""
        return self._clock()

    def _now(self) -> str:
        return self.now().isoformat()

    def _file_key(self, version: str, name: str) -> str:
        return keys.model_version(self.problem, version, name)

    def _where(self, version: str | None = None) -> str:
        if version is None:
            return f"the registry of problem {self.problem!r} ({self.store.uri(self._doc_key)})"
        uri = self.store.uri(keys.model_version(self.problem, version))
        return f"version {version} of problem {self.problem!r} ({uri})"

    def _check_version_id(self, version: str) -> None:
        try:
            version_number(version)
        except ValueError as err:
            raise VersionNotFoundError(f"{err} (problem {self.problem!r})") from None

    def _not_found_message(self, version: str) -> str:
        doc = self._read()
        if doc["versions"].get(version, {}).get("status") == "pending":
            return (
                f"{self._where(version)} has no {METADATA_FILE}: its registration has not "
                "completed (or crashed); it cannot be served"
            )
        return self._unknown_message(doc, version)

    def _unknown_message(self, doc: dict[str, Any], version: str) -> str:
        known = sort_versions(doc["versions"])
        listing = ", ".join(known[-10:]) if known else "none yet"
        return f"{self._where(version)} does not exist; latest versions: {listing}"


def _expected(entry: Any) -> tuple[str, int]:
    if isinstance(entry, dict):
        return str(entry.get("sha256", "")), int(entry.get("bytes", -1))
    return "", -1


def _integrity_message(where: str, problems: list[str]) -> str:
    listing = "\n".join(f"  - {problem}" for problem in problems)
    return (
        f"{where} failed its integrity check:\n{listing}\n"
        "The version is tampered or truncated and must not be served; roll back or "
        "register the model again."
    )
