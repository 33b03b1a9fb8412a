"""Registry and provenance on a local-folder store (tmp_path only, no servers)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy
import pytest

from components.core.provenance import DEFAULT_PACKAGES, code_version, package_versions, sha256_hex
from components.core.store import LocalStore, ObjectExistsError, PointerConflictError
from components.model.registry import (
    IntegrityError,
    PromotionRefusedError,
    Registry,
    RegistryError,
    VersionNotFoundError,
)
from components.model.registry_records import (
    HistoryEntry,
    VersionInfo,
    sort_versions,
    version_number,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FILES = {
    "model.ubj": b"{U\x05model...",
    "model_card.md": b"# churn v?\n",
    "plots/roc.png": b"\x89PNG fake",
}


class FakeClock:
    """Returns T0, T0 + 1 min, T0 + 2 min, ... one step per call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return T0 + timedelta(minutes=self.calls - 1)


def at(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def registry(store: LocalStore) -> Registry:
    return Registry(store, "churn", clock=FakeClock())


def version_path(store: LocalStore, version: str, name: str) -> Path:
    return store.root / "models" / "churn" / "versions" / version / name


def register_many(registry: Registry, count: int, **kwargs) -> list[str]:
    return [registry.register(FILES, {"auc": 0.8}, **kwargs) for _ in range(count)]


# ----------------------------------------------------------------------- registering


def test_register_returns_sequential_ids_and_writes_files_and_metadata(
    registry: Registry, store: LocalStore
) -> None:
    meta = {"metrics": {"auc": 0.91}, "snapshot_id": "abc123", "code_version": "deadbeef"}

    assert registry.register(FILES, meta) == "v1"
    assert registry.register(FILES, meta, rejected=True, reason="auc below floor") == "v2"

    assert store.list("models/churn/versions/v1/") == [
        "models/churn/versions/v1/metadata.json",
        "models/churn/versions/v1/model.ubj",
        "models/churn/versions/v1/model_card.md",
        "models/churn/versions/v1/plots/roc.png",
    ]
    assert version_path(store, "v1", "plots/roc.png").read_bytes() == FILES["plots/roc.png"]
    assert registry.metadata("v1") == {
        **meta,
        "version": "v1",
        "problem": "churn",
        "created_at": at(0),
        "status_at_registration": "registered",
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in FILES.items()
        },
    }
    assert registry.metadata("v2")["status_at_registration"] == "rejected"
    assert registry.metadata("v2")["created_at"] == at(1)


def test_registry_document_records_versions_and_next_id(
    registry: Registry, store: LocalStore
) -> None:
    registry.register(FILES, {})
    registry.register(FILES, {}, rejected=True, reason="auc below floor")

    doc = store.get_json("models/churn/registry.json")
    assert doc["next_version"] == 3
    assert doc["versions"] == {
        "v1": {"status": "registered", "created_at": at(0), "reason": ""},
        "v2": {"status": "rejected", "created_at": at(1), "reason": "auc below floor"},
    }
    assert doc["aliases"] == {"champion": None, "challenger": None}
    assert doc["history"] == []
    assert registry.versions() == [
        VersionInfo("v1", "registered", at(0), "", ()),
        VersionInfo("v2", "rejected", at(1), "auc below floor", ()),
    ]


def test_files_of_a_version_are_create_only(registry: Registry, store: LocalStore) -> None:
    registry.register(FILES, {})

    with pytest.raises(ObjectExistsError):
        store.put_bytes("models/churn/versions/v1/model.ubj", b"evil", create_only=True)
    with pytest.raises(ObjectExistsError):
        store.put_json("models/churn/versions/v1/metadata.json", {}, create_only=True)
    assert registry.read_file("v1", "model.ubj") == FILES["model.ubj"]


@pytest.mark.parametrize(
    ("files", "metadata", "error", "match"),
    [
        ({"metadata.json": b"x"}, {}, ValueError, "written by the registry"),
        ({"../escape": b"x"}, {}, ValueError, "invalid store key"),
        ({"plots": b"x", "plots/roc.png": b"y"}, {}, ValueError, "folder of other files"),
        ({"model.ubj": "not bytes"}, {}, TypeError, "must be bytes"),
        (FILES, {"version": "mine", "files": []}, ValueError, r"\['files', 'version'\]"),
        (FILES, {"when": datetime(2024, 1, 1)}, TypeError, "JSON-serialisable"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    registry: Registry, store: LocalStore, files, metadata, error, match
) -> None:
    with pytest.raises(error, match=match):
        registry.register(files, metadata)
    assert store.list() == []


def test_crash_midway_leaves_a_pending_version_that_cannot_be_served(store: LocalStore) -> None:
    class MetadataWriteFails(LocalStore):
        def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
            if key.endswith("metadata.json"):
                raise OSError("disk full")
            super().put_bytes(key, data, create_only=create_only)

    broken = Registry(MetadataWriteFails(store.root), "churn", clock=FakeClock())
    with pytest.raises(OSError, match="disk full"):
        broken.register(FILES, {})

    registry = Registry(store, "churn", clock=FakeClock())
    assert registry.versions() == [VersionInfo("v1", "pending", at(0), "", ())]
    with pytest.raises(VersionNotFoundError, match="registration has not completed"):
        registry.metadata("v1")
    with pytest.raises(PromotionRefusedError, match="pending"):
        registry.set_alias("challenger", "v1", actor="ci", reason="try")
    assert registry.register(FILES, {}) == "v2"  # the crashed id is never reused


def test_version_ids_sort_numerically(registry: Registry) -> None:
    assert sort_versions(["v10", "v2", "v1", "v9"]) == ["v1", "v2", "v9", "v10"]
    assert version_number("v10") == 10
    for bad in ["v0", "v01", "10", "V1", "v1.0", "", "v-1"]:
        with pytest.raises(ValueError, match="not a version id"):
            version_number(bad)

    register_many(registry, 11)
    assert [info.version for info in registry.versions()][-3:] == ["v9", "v10", "v11"]


# ----------------------------------------------------------------------- reading and integrity


def test_read_file_round_trip(registry: Registry) -> None:
    version = registry.register(FILES, {})

    for name, data in FILES.items():
        assert registry.read_file(version, name) == data
    registry.verify(version)  # no error


def test_tampered_file_is_an_integrity_error_naming_the_file(
    registry: Registry, store: LocalStore
) -> None:
    registry.register(FILES, {})
    path = version_path(store, "v1", "model.ubj")
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(IntegrityError) as info:
        registry.read_file("v1", "model.ubj")
    message = str(info.value)
    assert "model.ubj" in message
    assert f"expected sha256 {sha256_hex(FILES['model.ubj'])[:12]}…" in message
    assert f"found sha256 {sha256_hex(bytes(data))[:12]}…" in message
    assert "tampered or truncated and must not be served" in message
    assert "version v1 of problem 'churn'" in message
    assert store.uri("models/churn/versions/v1/model.ubj") in message
    assert registry.read_file("v1", "model_card.md") == FILES["model_card.md"]


def test_truncated_file_is_an_integrity_error_with_both_sizes(
    registry: Registry, store: LocalStore
) -> None:
    registry.register(FILES, {})
    path = version_path(store, "v1", "model.ubj")
    path.write_bytes(FILES["model.ubj"][:4])

    size = len(FILES["model.ubj"])
    with pytest.raises(IntegrityError, match=f"{size} bytes, found sha256 .* and 4 bytes"):
        registry.read_file("v1", "model.ubj")


def test_deleted_file_is_an_integrity_error(registry: Registry, store: LocalStore) -> None:
    registry.register(FILES, {})
    version_path(store, "v1", "plots/roc.png").unlink()

    with pytest.raises(IntegrityError, match=r"plots/roc.png: missing"):
        registry.read_file("v1", "plots/roc.png")


def test_verify_lists_every_bad_file(registry: Registry, store: LocalStore) -> None:
    registry.register(FILES, {})
    version_path(store, "v1", "model.ubj").write_bytes(b"tampered")
    version_path(store, "v1", "plots/roc.png").unlink()

    with pytest.raises(IntegrityError) as info:
        registry.verify("v1")
    lines = [line for line in str(info.value).splitlines() if line.startswith("  - ")]
    assert [line.split(":")[0] for line in lines] == ["  - model.ubj", "  - plots/roc.png"]


def test_corrupt_metadata_is_an_integrity_error(registry: Registry, store: LocalStore) -> None:
    registry.register(FILES, {})
    version_path(store, "v1", "metadata.json").write_bytes(b'{"files": {"model.u')

    with pytest.raises(IntegrityError, match=r"metadata.json is not valid JSON"):
        registry.verify("v1")


def test_unknown_versions_and_files(registry: Registry, store: LocalStore) -> None:
    registry.register(FILES, {})

    with pytest.raises(VersionNotFoundError) as info:
        registry.metadata("v7")
    assert "version v7 of problem 'churn'" in str(info.value)
    assert store.uri("models/churn/versions/v7") in str(info.value)
    assert "latest versions: v1" in str(info.value)
    with pytest.raises(VersionNotFoundError, match="not a version id"):
        registry.read_file("../v1", "model.ubj")
    with pytest.raises(
        RegistryError, match=re.escape("has no file 'nope.bin'; its files are: model.ubj")
    ):
        registry.read_file("v1", "nope.bin")
    with pytest.raises(VersionNotFoundError):
        registry.promote("v7", actor="ci", reason="")


def test_problem_name_must_be_one_key_segment(store: LocalStore) -> None:
    for bad in ["", "a/b", "..", "x.lock"]:
        with pytest.raises(ValueError):
            Registry(store, bad)


def test_corrupt_registry_document_is_a_clear_error(registry: Registry, store: LocalStore) -> None:
    store.put_bytes("models/churn/registry.json", b"{not json")

    with pytest.raises(RegistryError, match=r"registry.json is not valid JSON"):
        registry.versions()
    with pytest.raises(RegistryError, match="restore it"):
        registry.register(FILES, {})


# ----------------------------------------------------------------------- aliases and history


def test_promote_and_history_chain(registry: Registry) -> None:
    register_many(registry, 3)  # clock minutes 0-2

    first = registry.promote("v1", actor="alice", reason="first model")
    second = registry.promote("v2", actor="retrain-flow/42", reason="auc +0.02")
    challenger = registry.set_alias("challenger", "v3", actor="bob", reason="shadow")

    assert first == HistoryEntry(1, "champion", None, "v1", at(3), "alice", "first model")
    assert second == HistoryEntry(2, "champion", "v1", "v2", at(4), "retrain-flow/42", "auc +0.02")
    assert challenger == HistoryEntry(3, "challenger", None, "v3", at(5), "bob", "shadow")
    assert registry.history() == [first, second, challenger]
    assert registry.history("champion") == [first, second]
    assert registry.history("challenger") == [challenger]
    assert registry.alias("champion") == "v2"
    assert registry.alias("challenger") == "v3"
    assert [info.aliases for info in registry.versions()] == [(), ("champion",), ("challenger",)]


def test_rollback_moves_the_champion_back_and_records_it(registry: Registry) -> None:
    register_many(registry, 3)
    registry.promote("v1", actor="alice", reason="first")
    registry.promote("v2", actor="alice", reason="better")
    registry.promote("v3", actor="alice", reason="even better")

    back = registry.rollback(actor="oncall", reason="latency regression")
    assert back == HistoryEntry(4, "champion", "v3", "v2", at(6), "oncall", "latency regression")
    assert registry.alias("champion") == "v2"

    # The default undoes one change, so a second rollback undoes the first one.
    again = registry.rollback(actor="oncall", reason="false alarm")
    assert (again.from_version, again.to_version) == ("v2", "v3")
    chosen = registry.rollback(actor="oncall", reason="known good", to="v1")
    assert (chosen.seq, chosen.from_version, chosen.to_version) == (6, "v3", "v1")

    champion = registry.history("champion")
    assert [entry.seq for entry in champion] == [1, 2, 3, 4, 5, 6]
    for previous, entry in itertools.pairwise(champion):
        assert entry.from_version == previous.to_version


def test_rollback_with_nothing_to_roll_back_to(registry: Registry, store: LocalStore) -> None:
    register_many(registry, 1)

    with pytest.raises(RegistryError, match=r"nothing to roll back to.*never had a champion"):
        registry.rollback(actor="oncall", reason="oops")
    registry.promote("v1", actor="alice", reason="first")
    with pytest.raises(RegistryError, match="nothing to roll back to: champion v1") as info:
        registry.rollback(actor="oncall", reason="oops")
    assert "to=<version>" in str(info.value)
    assert store.uri("models/churn/registry.json") in str(info.value)
    assert len(registry.history()) == 1


def test_setting_an_alias_to_its_current_version_records_nothing(
    registry: Registry, store: LocalStore
) -> None:
    register_many(registry, 1)
    registry.promote("v1", actor="alice", reason="first")
    before = store.get_bytes("models/churn/registry.json")

    same = registry.promote("v1", actor="bob", reason="again")

    assert same == HistoryEntry(0, "champion", "v1", "v1", at(2), "bob", "again")
    assert store.get_bytes("models/churn/registry.json") == before
    assert registry.set_alias("challenger", None, actor="bob", reason="").seq == 0


def test_unsetting_an_alias_is_recorded(registry: Registry) -> None:
    register_many(registry, 1)
    registry.set_alias("challenger", "v1", actor="a", reason="compare")

    cleared = registry.set_alias("challenger", None, actor="a", reason="done")

    assert (cleared.seq, cleared.from_version, cleared.to_version) == (2, "v1", None)
    assert registry.alias("challenger") is None


def test_rejected_version_cannot_be_champion_but_can_be_challenger(registry: Registry) -> None:
    registry.register(FILES, {})
    registry.register(FILES, {}, rejected=True, reason="auc 0.61 below floor 0.70")

    with pytest.raises(PromotionRefusedError, match=r"rejected.*auc 0.61 below floor") as info:
        registry.promote("v2", actor="alice", reason="please")
    assert "version v2 of problem 'churn'" in str(info.value)
    with pytest.raises(PromotionRefusedError):
        registry.rollback(actor="alice", reason="", to="v2")
    assert registry.history() == []
    assert registry.set_alias("challenger", "v2", actor="a", reason="shadow").to_version == "v2"


def test_invalid_alias_and_actor(registry: Registry) -> None:
    register_many(registry, 1)

    for call in (
        lambda: registry.set_alias("production", "v1", actor="a", reason=""),
        lambda: registry.alias("latest"),
        lambda: registry.history("staging"),
    ):
        with pytest.raises(ValueError, match="valid aliases are champion, challenger"):
            call()
    with pytest.raises(ValueError, match="actor"):
        registry.promote("v1", actor=" ", reason="")


# ----------------------------------------------------------------------- compare-and-swap retries


class ConflictingStore(LocalStore):
    """Loses the first ``conflicts`` pointer swaps, as if another writer got there first."""

    def __init__(self, root: Path, conflicts: int) -> None:
        super().__init__(root)
        self.conflicts = conflicts

    def swap_pointer(self, key: str, value: bytes, expected_etag: str | None) -> str:
        if self.conflicts > 0:
            self.conflicts -= 1
            raise PointerConflictError("lost")
        return super().swap_pointer(key, value, expected_etag)


def test_lost_swaps_are_retried_with_backoff(tmp_path: Path) -> None:
    sleeps: list[float] = []
    registry = Registry(ConflictingStore(tmp_path, 3), "churn", sleep=sleeps.append)

    assert registry.register(FILES, {}) == "v1"
    assert len(sleeps) == 3
    assert all(0 <= delay <= 0.25 for delay in sleeps)
    assert [info.status for info in registry.versions()] == ["registered"]


def test_swaps_lost_every_time_give_up_after_max_tries(tmp_path: Path) -> None:
    store = ConflictingStore(tmp_path, 1000)
    registry = Registry(store, "churn", max_tries=5, sleep=lambda _: None)

    with pytest.raises(RegistryError, match="on each of 5 tries; nothing was changed"):
        registry.register(FILES, {})
    assert store.conflicts == 995
    assert store.list() == []


# ----------------------------------------------------------------------- provenance


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.email=test@example.com", "-c", "user.name=Test"]
    result = subprocess.run(
        ["git", *identity, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_code_version_is_the_commit_and_marks_tracked_changes_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    sha = git(repo, "rev-parse", "HEAD")

    assert len(sha) == 40
    assert code_version(repo) == sha
    (repo / "notes.txt").write_text("untracked files do not count\n")
    assert code_version(repo) == sha
    (repo / "train.py").write_text("print('v2')\n")
    assert code_version(repo) == f"{sha}-dirty"


def test_code_version_is_none_without_a_repository_or_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    empty_repo = tmp_path / "empty"
    empty_repo.mkdir()
    git(empty_repo, "init", "-q")

    assert code_version(tmp_path / "plain") is None
    assert code_version(empty_repo) is None  # no commit yet
    assert code_version(tmp_path / "does-not-exist") is None
    monkeypatch.setenv("PATH", str(tmp_path / "plain"))  # no git executable anywhere
    assert code_version(empty_repo) is None


def test_package_versions() -> None:
    versions = package_versions()

    assert versions["numpy"] == numpy.__version__
    assert versions["python"].startswith("3.11.")
    assert set(versions) <= set(DEFAULT_PACKAGES)
    assert {"xgboost", "pandas", "scikit-learn", "pyarrow"} <= set(versions)
    assert package_versions(["numpy", "surely-not-installed-pkg"]) == {"numpy": numpy.__version__}


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_metadata_json_is_stable_sorted_json(registry: Registry, store: LocalStore) -> None:
    registry.register({"a": b"1"}, {"z": 1, "b": [1, 2]})

    raw = store.get_bytes("models/churn/versions/v1/metadata.json")
    assert raw == json.dumps(registry.metadata("v1"), indent=2, sort_keys=True).encode()


def test_promotion_over_a_champion_that_changed_is_refused(registry: Registry) -> None:
    from components.model.registry import ChampionChangedError

    v1, v2, v3 = register_many(registry, 3)
    registry.promote(v1, actor="test", reason="first", replacing=None)
    # Two challengers that each beat v1: the first to write wins, the second is refused.
    registry.promote(v2, actor="run-a", reason="beat v1", replacing=v1)
    with pytest.raises(ChampionChangedError, match=r"compared with champion v1.*now v2"):
        registry.promote(v3, actor="run-b", reason="beat v1", replacing=v1)
    assert registry.alias("champion") == v2
    assert [e.to_version for e in registry.history("champion")] == [v1, v2]
    # Without ``replacing`` a promotion is unconditional, as before.
    registry.promote(v3, actor="person", reason="by hand")
    assert registry.alias("champion") == v3
