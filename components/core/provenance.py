"""Where a model came from: the commit of the code, the versions of the packages, checksums.

Everything here is best effort and side-effect free: provenance is recorded in a model's
metadata, and a machine without git (a container, a Lambda image) must still be able to
train and register, so nothing here raises for a missing tool or package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

# "python" is the interpreter itself; the rest are distribution names as pip knows them.
DEFAULT_PACKAGES: tuple[str, ...] = (
    "python",
    "xgboost",
    "numpy",
    "pandas",
    "scikit-learn",
    "pandera",
    "prefect",
    "bentoml",
    "whylogs",
    "optuna",
    "pyarrow",
)

_GIT_TIMEOUT_SECONDS = 5


def code_version(repo_dir: Path | None = None) -> str | None:
    """The commit checked out in ``repo_dir`` (default: the repository holding this code),
    suffixed ``-dirty`` when tracked files have uncommitted changes.

    Untracked files do not count. Returns None when git is missing, the folder is not in a
    repository, the repository has no commit yet, or git takes longer than 5 s; never raises.
    """
    folder = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    head = _git(folder, "rev-parse", "HEAD")
    if not head:
        return None
    changes = _git(folder, "status", "--porcelain", "--untracked-files=no")
    # A tree whose state git could not report is not claimed to be clean.
    return head if changes == "" else f"{head}-dirty"


def _git(folder: Path, *args: str) -> str | None:
    """Stripped stdout of ``git -C folder args``, or None if git failed or is unavailable."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``"python"`` is the interpreter); packages that are
    not installed are left out rather than given a placeholder version."""
    versions: dict[str, str] = {}
    for name in names:
        if name == "python":
            versions[name] = platform.python_version()
            continue
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()
