"""Packaging a registry version as a Bento, and the smoke test that gates shipping it.

- `import_model`: copies the version's verified files into BentoML's model store as
  `mlops-model:<problem>-<version>`, with its registry version and checksums as metadata.
- `build_bento`: builds the service around that model with pinned requirements; the bento
  holds the generated Dockerfile under env/docker/ (`bentoml containerize` needs a Docker
  engine, which is optional here).
- `export_bento`: writes the bento to one `.bento` file, which `flows/packaging.py`
  uploads to the store with boto3 (no s3fs).
- `smoke_test`: starts the built bento with `bentoml serve` on 127.0.0.1, waits for
  readiness, checks known answers against the registry model's own predictions and that a
  bad request is refused with 422; any failure refuses the ship.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from components.model.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "mlops-model"
SERVICE = "bentos.service:PredictionService"
# What the service imports; versions pinned from constraints.txt (the Lambda image reads
# the same file, see infra/aws/Dockerfile.lambda).
SERVING_REQUIREMENTS = ROOT / "bentos" / "requirements-serving.in"


class SmokeTestError(RuntimeError):
    """The built bento did not answer as the registry model does; it must not ship."""


def model_tag(problem: str, version: str, model_sha256: str) -> str:
    """`mlops-model:<problem>-<version>-<sha8>`: the model's content is part of the tag, so
    two stores (or a re-created one) whose registries both have a `v1` never share a
    BentoML model or bento by mistake."""
    return f"{MODEL_NAME}:{problem}-{version}-{model_sha256[:8]}"


def bento_version(tag: str) -> str:
    """The bento is versioned like the model it serves."""
    return tag.split(":", 1)[1]


def import_model(registry: Registry, version: str) -> str:
    """Copy a verified registry version into BentoML's model store; idempotent."""
    import bentoml

    registry.verify(version)
    metadata = registry.metadata(version)
    tag = model_tag(registry.problem, version, metadata["files"]["model.ubj"]["sha256"])
    try:
        bentoml.models.get(tag)
        return tag
    except bentoml.exceptions.NotFound:
        pass
    labels = {"problem": registry.problem, "registry_version": version}
    with bentoml.models.create(
        tag,
        labels=labels,
        metadata={
            "registry_version": version,
            "sha256": {n: f["sha256"] for n, f in metadata["files"].items()},
        },
    ) as model:
        folder = Path(model.path)
        for name in ("model.ubj", "problem.json"):
            (folder / name).write_bytes(registry.read_file(version, name))
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
    return tag


def serving_packages() -> list[str]:
    lines = SERVING_REQUIREMENTS.read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def pinned_requirements(constraints: Path = ROOT / "constraints.txt") -> list[str]:
    pins = {}
    for line in constraints.read_text().splitlines():
        name, _, version = line.partition("==")
        if version:
            pins[_canonical(name)] = f"{name}=={version}"
    packages = serving_packages()
    missing = [p for p in packages if _canonical(p) not in pins]
    if missing:
        raise RuntimeError(f"{constraints}: no pinned version for {', '.join(missing)}")
    return [pins[_canonical(p)] for p in packages]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_bento(tag: str, *, version_label: str) -> str:
    """Build the service around model `tag`; return the bento's tag (an existing bento of
    the same version is reused: bentos are immutable)."""
    import bentoml

    with contextlib.suppress(bentoml.exceptions.NotFound):
        return str(bentoml.get(f"mlops-prediction:{version_label}").tag)
    bento = bentoml.bentos.build(
        service=SERVICE,
        name="mlops-prediction",
        version=version_label,
        build_ctx=str(ROOT),
        include=["bentos/*.py", "bentos/requirements-serving.in", "components/**/*.py"],
        labels={"model": tag},
        python={"packages": pinned_requirements()},
        # The bento holds only this model, so the service's default tag
        # (mlops-model:latest) resolves to it.
        models=[tag],
    )
    return str(bento.tag)


def bento_model(bento_tag: str) -> str:
    """The tag of the model a bento built by `build_bento` holds."""
    import bentoml

    return bentoml.get(bento_tag).info.labels["model"]


def export_bento(bento_tag: str, folder: Path) -> Path:
    import bentoml

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{bento_tag.replace(':', '-')}.bento"
    return Path(bentoml.export_bento(bento_tag, str(target)))


def dockerfile(bento_tag: str) -> Path:
    import bentoml

    return Path(bentoml.get(bento_tag).path) / "env" / "docker" / "Dockerfile"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningBento:
    """A `bentoml serve` process on 127.0.0.1, ended by its own process group."""

    process: subprocess.Popen
    url: str
    log: Path
    env: dict = field(default_factory=dict)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the server's process group; after ``timeout`` s, SIGKILL to it and
        to the server's workers, which BentoML's process manager does not keep in that
        group (killing the server alone left them serving, orphaned)."""
        if self.process.poll() is None:
            workers: list[psutil.Process] = []
            with contextlib.suppress(psutil.Error):
                workers = psutil.Process(self.process.pid).children()
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                for worker in workers:
                    with contextlib.suppress(psutil.Error):
                        worker.kill()
                self.process.wait()
        return self.process.returncode

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def serve(
    target: str,
    *,
    env: dict[str, str] | None = None,
    port: int | None = None,
    workers: int = 1,
    ready_timeout: float = 120,
) -> RunningBento:
    """Start `bentoml serve target` (a bento tag or the service import path) and wait
    until /readyz answers 200."""
    port = port or free_port()
    log = Path(tempfile.mkstemp(prefix="bentoml-serve-", suffix=".log")[1])
    full_env = {**os.environ, "MLOPS_SERVE_WORKERS": str(workers), **(env or {})}
    if target != SERVICE:
        # A bento serves the model it was built with, whatever MLOPS_MODEL_TAG this process
        # inherited (the smoke test once passed the wrong model's tag on from a test).
        full_env["MLOPS_MODEL_TAG"] = bento_model(target)
    bentoml_cli = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [bentoml_cli, "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningBento(process, f"http://127.0.0.1:{port}", log, full_env)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"bentoml serve exited with {process.returncode}:\n{running.logs()[-3000:]}"
            )
        try:
            if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    running.stop()
    raise RuntimeError(
        f"bentoml serve not ready after {ready_timeout:.0f} s:\n{running.logs()[-3000:]}"
    )


def smoke_test(
    url: str,
    records: list[dict],
    expected: np.ndarray,
    *,
    api_key: str | None = None,
    tolerance: float = 1e-6,
) -> list[str]:
    """Known answers and a refused bad request; returns what passed, raises on a failure."""
    headers = {"X-API-Key": api_key} if api_key else {}
    passed = []
    response = httpx.post(f"{url}/predict", json={"records": records}, headers=headers, timeout=30)
    if response.status_code != 200:
        raise SmokeTestError(f"predict answered {response.status_code}: {response.text[:500]}")
    got = np.array([p.get("probability", p.get("value")) for p in response.json()["predictions"]])
    worst = float(np.max(np.abs(got - expected))) if len(got) == len(expected) else np.inf
    if worst > tolerance:
        raise SmokeTestError(f"predictions differ from the registry model's by up to {worst}")
    passed.append(f"{len(records)} known answers match the registry model (max diff {worst:.1e})")
    bad = httpx.post(
        f"{url}/predict", json={"records": [{"nonsense": 1}]}, headers=headers, timeout=30
    )
    if bad.status_code != 422:
        raise SmokeTestError(f"a bad request got {bad.status_code}, expected 422")
    passed.append("a bad request is refused with 422")
    if httpx.get(f"{url}/metadata", timeout=10).status_code != 200:
        raise SmokeTestError("metadata did not answer 200")
    passed.append("metadata answers")
    return passed
