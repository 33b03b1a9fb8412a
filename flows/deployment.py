"""Deployment (lifecycle stage 5) as a Prefect flow: wiring only, the work is in
components/deploy/.

`deploy`: `local` runs the packaged bento as a managed process (start, status, stop, or
replace: the running server's place taken by the new bento on the same URL, see
`components.deploy.local.local_replace`); `lambda` and `sagemaker` roll an image out with
boto3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError
from prefect import flow
from pydantic import BaseModel, Field

from bentos import packaging
from components.core.problem import load_problem
from components.core.settings import Settings
from components.core.store import store_from_settings
from components.deploy.base import DeployError
from components.deploy.canary import CanaryPolicy
from components.deploy.local import (
    local_replace,
    local_start,
    local_status,
    local_stop,
    state_file,
)
from components.model.registry import Registry
from flows.packaging import PackageParams, package, resolve_version
from flows.tasks import retry_on, task

# AWS failures worth a second try: DeployError (a throttled call, an endpoint still
# updating) and botocore's connection errors once its own retries ran out. A ValueError is
# the caller's mistake and fails at once.
_AWS_TRANSIENT = retry_on(DeployError, BotoCoreError)


class DeployParams(BaseModel):
    problem: Path = Path("problems/churn.yaml")
    target: Literal["local", "lambda", "sagemaker"] = "local"
    version: str | None = Field(None, description="Registry version; None: the champion")
    store: str | None = None
    # local
    action: Literal["start", "status", "stop", "replace"] = "start"
    port: int | None = Field(
        None, description="local: None picks a free port; replace: None keeps the old one's"
    )
    workers: int = Field(2, ge=1)
    state_file: Path | None = Field(
        None, description="local: the server's state; None: <store root>/serve/<problem>.json"
    )
    # lambda and sagemaker: the image is built from the bento by CI (see infra/aws/README.md)
    image_uri: str | None = None
    role_arn: str | None = None
    function_name: str | None = None
    repository: str | None = None
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
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
def deploy_local(params: DeployParams, state: Path, bento: str | None) -> dict[str, Any]:
    if params.action == "status":
        server = local_status(state)
        return {"running": server is not None, **(server.model_dump() if server else {})}
    if params.action == "stop":
        server = local_stop(state)
        return {"stopped": server is not None, **(server.model_dump() if server else {})}
    run = local_replace if params.action == "replace" else local_start
    server = run(bento, state, serve=packaging.serve, port=params.port, workers=params.workers)
    return {"running": True, **server.model_dump()}


# No timeout: Prefect's timeout interrupts with a BaseException, which would skip the
# canary's rollback and leave the alias splitting traffic; the waits inside are bounded
# (Lambda's update polls, the canary's max wait). A retry after a failed watch (rolled back
# first) deploys the same image again, which publishes no new version.
@task(retries=1, retry_delay_seconds=60, retry_condition_fn=_AWS_TRANSIENT)
def deploy_to_lambda(params: DeployParams, settings: Settings) -> dict[str, Any]:
    from components.deploy.aws_lambda import LambdaTarget, deploy_lambda

    _require(params, "image_uri", "role_arn", "function_name", "repository")
    target = LambdaTarget(
        function_name=params.function_name,
        role_arn=params.role_arn,
        repository=params.repository,
        memory_mb=params.memory_mb,
        environment={"MLOPS_STORE": settings.store},
    )
    clients = (_aws(name, settings) for name in ("lambda", "ecr", "cloudwatch"))
    return deploy_lambda(*clients, target, params.image_uri, policy=params.canary).as_dict()


# Safe to retry: models and endpoint configs are named by content and reused.
@task(retries=2, retry_delay_seconds=60, timeout_seconds=600, retry_condition_fn=_AWS_TRANSIENT)
def deploy_to_sagemaker(params: DeployParams, settings: Settings, version: str) -> dict[str, Any]:
    from components.deploy.sagemaker import SageMakerTarget, deploy_sagemaker

    _require(params, "image_uri", "role_arn", "endpoint_name")
    target = SageMakerTarget(
        endpoint_name=params.endpoint_name,
        role_arn=params.role_arn,
        image_uri=params.image_uri,
        memory_mb=params.memory_mb,
        environment={"MLOPS_STORE": settings.store},
    )
    return deploy_sagemaker(_aws("sagemaker", settings), target, version).as_dict()


@flow(name="deploy")
def deploy(params: DeployParams | None = None) -> dict[str, Any]:
    """Serve locally, or roll an image out to Lambda (canary) or SageMaker Serverless; the
    result is the deployment's JSON-ready summary."""
    params = params or DeployParams()
    settings = Settings()
    spec = load_problem(params.problem)
    if params.target == "lambda":
        return deploy_to_lambda(params, settings)
    store = store_from_settings(settings, params.store)
    if params.target == "local":
        state = state_file(spec.name, store=store, path=params.state_file)
        bento = None
        if params.action in ("start", "replace"):
            package_params = PackageParams(
                problem=params.problem, version=params.version, store=params.store
            )
            bento = package(package_params).bento_tag
        return deploy_local(params, state, bento)
    version = resolve_version(Registry(store, spec.name), params.version)
    return deploy_to_sagemaker(params, settings, version)
