"""What the model registry records and the rules its arguments follow: the aliases, the
reserved metadata keys, version ids, the history entry and version records that
``Registry`` returns, and the checks it runs before it writes anything."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from components.core.store import validate_key

ALIASES: tuple[str, ...] = ("champion", "challenger")
METADATA_FILE = "metadata.json"
# Set by the registry in metadata.json; a caller's metadata may not use these keys.
RESERVED_METADATA_KEYS = frozenset(
    {"version", "problem", "created_at", "status_at_registration", "files"}
)

_VERSION_ID = re.compile(r"v([1-9][0-9]*)")


@dataclass(frozen=True)
class HistoryEntry:
    """One change of an alias. ``seq`` counts every change of any alias from 1; an entry with
    ``seq == 0`` (and ``from_version == to_version``) was a no-op and was not recorded."""

    seq: int
    alias: str
    from_version: str | None
    to_version: str | None
    at: str
    actor: str
    reason: str


@dataclass(frozen=True)
class VersionInfo:
    """A version as registry.json records it; ``status`` is registered, rejected or pending."""

    version: str
    status: str
    created_at: str
    reason: str
    aliases: tuple[str, ...]


def version_number(version: str) -> int:
    """The number of a version id (``"v10"`` -> 10); ValueError for anything else."""
    match = _VERSION_ID.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"{version!r} is not a version id; ids look like 'v1', 'v2', ...")
    return int(match.group(1))


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Version ids in numeric order: ``v2`` before ``v10``."""
    return sorted(versions, key=version_number)


def history_entry(raw: dict[str, Any]) -> HistoryEntry:
    """The entry of one raw item of registry.json's ``history`` list."""
    return HistoryEntry(
        seq=raw["seq"],
        alias=raw["alias"],
        from_version=raw["from"],
        to_version=raw["to"],
        at=raw["at"],
        actor=raw["actor"],
        reason=raw["reason"],
    )


def check_alias(name: str) -> None:
    if name not in ALIASES:
        raise ValueError(f"unknown alias {name!r}; valid aliases are {', '.join(ALIASES)}")


def check_actor(actor: str) -> None:
    if not isinstance(actor, str) or not actor.strip():
        raise ValueError("actor must name who changes the alias (a user, flow run or service)")


def check_files(files: dict[str, bytes]) -> None:
    """File names must be valid keys, not metadata.json, and not the folder of another file."""
    for name, data in files.items():
        validate_key(name)
        if name == METADATA_FILE:
            raise ValueError(f"{METADATA_FILE!r} is written by the registry; rename that file")
        if not isinstance(data, bytes):
            raise TypeError(f"file {name!r} must be bytes, got {type(data).__name__}")
        if any(other.startswith(f"{name}/") for other in files):
            raise ValueError(f"file {name!r} cannot also be the folder of other files")


def check_metadata(metadata: dict[str, Any]) -> None:
    clash = sorted(RESERVED_METADATA_KEYS & set(metadata))
    if clash:
        raise ValueError(
            f"metadata keys {clash} are set by the registry; rename them in your metadata"
        )
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as err:
        raise TypeError(f"metadata must be JSON-serialisable: {err}") from None
