"""Packaging (lifecycle stage 5) as a Prefect flow.

`package`: the champion (or a given version) goes into BentoML's model store, the bento is
built and smoke-tested on 127.0.0.1 (known answers against the registry model's own
predictions, and a refused bad request); only then is it exported and uploaded to the store.
A failed smoke test ships nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from bentos import packaging
from components.core import keys
from components.core.problem import ProblemSpec, load_problem
from components.core.settings import Settings
from components.core.store import Store, store_from_settings
from components.model.known_answers import known_answers
from components.model.registry import Registry, RegistryError
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
def build(tag: str) -> str:
    bento = packaging.build_bento(tag, version_label=packaging.bento_version(tag))
    get_run_logger().info("built %s (Dockerfile: %s)", bento, packaging.dockerfile(bento))
    return bento


@task
def smoke_test(
    bento: str, store: Store, registry: Registry, spec: ProblemSpec, version: str, rows: int
) -> list[str]:
    answers = known_answers(store, registry, spec, version, rows)
    with tempfile.TemporaryDirectory() as scratch:
        env = {"MLOPS_CAPTURE": "false", "MLOPS_STORE": scratch, "MLOPS_SERVE_API_KEY": ""}
        running = packaging.serve(bento, env=env, workers=1)
        try:
            passed = packaging.smoke_test(running.url, answers.records, answers.expected)
        finally:
            running.stop()
    for line in passed:
        get_run_logger().info("smoke test: %s", line)
    return passed


@task
def upload(store: Store, bento: str, problem: str, version: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        path = packaging.export_bento(bento, Path(scratch))
        key = keys.bento(problem, version, path.name)
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
    bento = build(tag)
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
