"""Packaging and deployment (lifecycle stage 5) as Prefect flows.

`package`: the champion (or a given version) goes into BentoML's model store, the bento is
built and smoke-tested on 127.0.0.1 (known answers against the registry model's own
predictions, and a refused bad request); only then is it exported and uploaded to the store
under bentos/<problem>/<version>/. A failed smoke test ships nothing.

`deploy`: `local` runs `bentoml serve` as a managed process (start, status, stop); `lambda`
and `sagemaker` roll an image out with boto3 (components/deploy_aws.py).
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from bentos import packaging
from components import training
from components.problem import ProblemSpec, load_problem
from components.registry import Registry, RegistryError
from components.settings import Settings
from components.snapshot import read_snapshot
from components.store import Store, store_from_settings
from flows.tasks import task


class PackageParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    version: str | None = Field(None, description="Registry version; None: the champion")
    smoke_rows: int = Field(25, ge=1, le=1000)
    store: str | None = None


class PackageResult(BaseModel):
    version: str
    model_tag: str
    bento_tag: str
    bento_key: str
    dockerfile: str
    smoke: list[str]


@task
def resolve_version(registry: Registry, version: str | None) -> str:
    chosen = version or registry.alias("champion")
    if chosen is None:
        raise RegistryError(
            f"problem '{registry.problem}' has no champion yet: run `mlops "
            "train` first, or name a version"
        )
    registry.verify(chosen)
    return chosen


@task
def import_model(registry: Registry, version: str) -> str:
    return packaging.import_model(registry, version)


@task
def build(tag: str, problem: str, version: str) -> str:
    bento = packaging.build_bento(tag, version_label=f"{problem}-{version}")
    get_run_logger().info("built %s (Dockerfile: %s)", bento, packaging.dockerfile(bento))
    return bento


def known_answers(
    store: Store, registry: Registry, spec: ProblemSpec, version: str, rows: int
) -> tuple[list[dict], np.ndarray]:
    """Records from the version's snapshot and the registry model's own predictions on them
    (through pandas, a different path from the service's)."""
    meta = registry.metadata(version)
    frame = read_snapshot(store, spec.name, meta["snapshot_id"])
    sample = frame.sample(n=min(rows, len(frame)), random_state=0)
    booster = training.load_model(registry.read_file(version, "model.ubj"))
    expected = training.predict(booster, sample, spec)
    return [_record(row, spec) for _, row in sample.iterrows()], expected


def _record(row: pd.Series, spec: ProblemSpec) -> dict:
    out = {}
    for name in spec.input_features:
        value = row[name]
        if pd.isna(value):
            out[name] = None
        elif spec.features[name].type == "int":
            out[name] = int(value)
        elif spec.features[name].type == "float":
            out[name] = float(value)
        else:
            out[name] = value
    return out


@task
def smoke_test(
    bento: str, store: Store, registry: Registry, spec: ProblemSpec, version: str, rows: int
) -> list[str]:
    records, expected = known_answers(store, registry, spec, version, rows)
    with tempfile.TemporaryDirectory() as scratch:
        env = {"MLOPS_CAPTURE": "false", "MLOPS_STORE": scratch, "MLOPS_SERVE_API_KEY": ""}
        running = packaging.serve(bento, env=env, workers=1)
        try:
            passed = packaging.smoke_test(running.url, records, expected)
        finally:
            running.stop()
    for line in passed:
        get_run_logger().info("smoke test: %s", line)
    return passed


@task
def upload(store: Store, bento: str, problem: str, version: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        path = packaging.export_bento(bento, Path(scratch))
        key = f"bentos/{problem}/{version}/{path.name}"
        store.put_file(key, path)
    get_run_logger().info("uploaded %s", store.uri(key))
    return key


@flow(name="package")
def package(params: PackageParams | None = None) -> PackageResult:
    """Build, smoke-test and upload a bento for a registry version."""
    params = params or PackageParams()
    store = store_from_settings(Settings(), params.store)
    spec = load_problem(params.problem)
    registry = Registry(store, spec.name)
    version = resolve_version(registry, params.version)
    tag = import_model(registry, version)
    bento = build(tag, spec.name, version)
    passed = smoke_test(bento, store, registry, spec, version, params.smoke_rows)
    key = upload(store, bento, spec.name, version)
    create_markdown_artifact(
        markdown="\n".join(
            [
                f"## Bento `{bento}`",
                "",
                f"- model: `{tag}`",
                f"- stored at: `{store.uri(key)}`",
                "",
                "Smoke test:",
                "",
                *[f"- {line}" for line in passed],
            ]
        ),
        key=f"bento-{spec.name}",
    )
    return PackageResult(
        version=version,
        model_tag=tag,
        bento_tag=bento,
        bento_key=key,
        dockerfile=str(packaging.dockerfile(bento)),
        smoke=passed,
    )


# --- local target: a managed `bentoml serve` process ------------------------------------


class LocalServer(BaseModel):
    pid: int
    url: str
    bento: str
    log: str


def _state_file(problem: str) -> Path:
    return Path(".mlops") / "serve" / f"{problem}.json"


def local_start(
    bento: str,
    problem: str,
    *,
    port: int | None = None,
    workers: int = 2,
    env: dict[str, str] | None = None,
) -> LocalServer:
    current = local_status(problem)
    if current is not None:
        raise RuntimeError(
            f"{problem} is already served at {current.url} (pid {current.pid}); stop it first"
        )
    running = packaging.serve(bento, env=env, port=port, workers=workers)
    server = LocalServer(
        pid=running.process.pid, url=running.url, bento=bento, log=str(running.log)
    )
    path = _state_file(problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(server.model_dump_json())
    return server


def local_status(problem: str) -> LocalServer | None:
    path = _state_file(problem)
    if not path.exists():
        return None
    server = LocalServer.model_validate_json(path.read_text())
    try:
        os.kill(server.pid, 0)
    except ProcessLookupError:
        path.unlink()
        return None
    return server


def local_stop(problem: str) -> LocalServer | None:
    server = local_status(problem)
    if server is None:
        return None
    os.killpg(server.pid, signal.SIGTERM)  # the whole group: BentoML's workers too
    _state_file(problem).unlink(missing_ok=True)
    return server


class DeployParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    target: Literal["local", "lambda", "sagemaker"] = "local"
    version: str | None = None
    store: str | None = None
    port: int | None = None
    workers: int = 2
