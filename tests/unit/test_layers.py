"""The import rules of ../shared/ARCHITECTURE.md, checked on the source: components are pure
(no orchestrator, no web framework), and the service never reaches into the flows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "components": {"prefect", "bentoml", "starlette", "fastapi", "flows", "bentos"},
    "bentos": {"flows"},
}


def imported_roots(path: Path) -> set[str]:
    """The top-level package of every import in ``path``, lazy ones inside functions too."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for root in sorted(imported_roots(path) & FORBIDDEN[package]):
            found.append(f"{path.relative_to(ROOT)} imports {root}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_what_the_map_allows(package):
    assert violations(package) == []


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import os\n\ndef f():\n    from prefect import flow\n    import bentoml.io\n"
    )
    assert imported_roots(module) == {"os", "prefect", "bentoml"}


def test_importing_every_component_does_nothing_heavy():
    # Nothing happens at import time: in a fresh interpreter, importing every module of
    # components/ loads neither matplotlib nor whylogs and leaves NumPy as it was (the
    # whylogs shim is installed when a profile is first made, not before).
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "components").rglob("*.py")
        if path.name != "__init__.py"
    )
    code = (
        "import importlib, sys, numpy\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted({'matplotlib', 'whylogs'} & set(sys.modules))\n"
        "print(loaded, hasattr(numpy, 'unicode_'))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[] False"
