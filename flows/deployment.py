"""Deployment (lifecycle stage 5) as a Prefect flow.

`deploy`: `local` runs `bentoml serve` as a managed process (start, status, stop), after
packaging; `lambda` and `sagemaker` roll an image out with boto3 (components/deploy/).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Literal

from prefect import flow
from pydantic import BaseModel, Field

from bentos import packaging
from components.core.problem import load_problem
from components.core.settings import Settings
from components.core.store import store_from_settings
from components.model.registry import Registry
from flows.packaging import PackageParams, package, resolve_version
from flows.tasks import task

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
    version: str | None = Field(None, description="Registry version; None: the champion")
    store: str | None = None
    # local
    action: Literal["start", "status", "stop"] = "start"
    port: int | None = None
    workers: int = Field(2, ge=1)
    # lambda and sagemaker: the image is built from the bento by CI (see infra/aws/README.md)
    image_uri: str | None = None
    role_arn: str | None = None
    function_name: str | None = None
    repository: str | None = None
    canary_weight: float = Field(0.1, gt=0, lt=1)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    min_invocations: int = Field(100, ge=1)
    bake_seconds: float = Field(600, ge=0)
    poll_seconds: float = Field(60, gt=0)
    endpoint_name: str | None = None
    memory_mb: int = 2048


def _aws(service: str, settings: Settings):
    import boto3

    return boto3.client(
        service, endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region
    )


def _require(params: DeployParams, *names: str) -> None:
    missing = [n for n in names if getattr(params, n) is None]
    if missing:
        raise ValueError(
            f"--target {params.target} needs "
            + ", ".join("--" + n.replace("_", "-") for n in missing)
        )


@task
def deploy_local(params: DeployParams, problem: str, bento: str | None) -> dict:
    if params.action == "status":
        server = local_status(problem)
        return {"running": server is not None, **(server.model_dump() if server else {})}
    if params.action == "stop":
        server = local_stop(problem)
        return {"stopped": server is not None, **(server.model_dump() if server else {})}
    server = local_start(bento, problem, port=params.port, workers=params.workers)
    return {"running": True, **server.model_dump()}


@task
def deploy_to_lambda(params: DeployParams, settings: Settings) -> dict:
    from components.deploy.aws import LambdaTarget, deploy_lambda

    _require(params, "image_uri", "role_arn", "function_name", "repository")
    target = LambdaTarget(
        function_name=params.function_name,
        role_arn=params.role_arn,
        repository=params.repository,
        memory_mb=params.memory_mb,
        environment={"MLOPS_STORE": settings.store},
    )
    return deploy_lambda(
        _aws("lambda", settings),
        _aws("ecr", settings),
        _aws("cloudwatch", settings),
        target,
        params.image_uri,
        canary_weight=params.canary_weight,
        max_error_rate=params.max_error_rate,
        min_invocations=params.min_invocations,
        bake_seconds=params.bake_seconds,
        poll_seconds=params.poll_seconds,
    )


@task
def deploy_to_sagemaker(params: DeployParams, settings: Settings, version: str) -> dict:
    from components.deploy.aws import SageMakerTarget, deploy_sagemaker

    _require(params, "image_uri", "role_arn", "endpoint_name")
    target = SageMakerTarget(
        endpoint_name=params.endpoint_name,
        role_arn=params.role_arn,
        image_uri=params.image_uri,
        memory_mb=params.memory_mb,
        environment={"MLOPS_STORE": settings.store},
    )
    return deploy_sagemaker(_aws("sagemaker", settings), target, version)


@flow(name="deploy")
def deploy(params: DeployParams | None = None) -> dict:
    """Serve locally, or roll an image out to Lambda (canary) or SageMaker Serverless."""
    params = params or DeployParams()
    settings = Settings()
    spec = load_problem(params.problem)
    if params.target == "local":
        bento = None
        if params.action == "start":
            result = package(
                PackageParams(problem=params.problem, version=params.version, store=params.store)
            )
            bento = result.bento_tag
        return deploy_local(params, spec.name, bento)
    if params.target == "lambda":
        return deploy_to_lambda(params, settings)
    store = store_from_settings(settings, params.store)
    version = resolve_version(Registry(store, spec.name), params.version)
    return deploy_to_sagemaker(params, settings, version)
