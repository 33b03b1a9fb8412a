"""Serve the model service's image on a SageMaker Serverless endpoint.

The SageMaker client is passed in by the caller (a flow, or a test pointed at moto's server
on 127.0.0.1); :func:`deploy_sagemaker` returns a :class:`SageMakerDeployment`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from components.deploy.base import (
    ROLE_ARN,
    DeployError,
    Deployment,
    _call,
    _code,
    _environment_problems,
    _failure,
    _message,
    _range_problems,
)

SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = (1, 200)

_SAGEMAKER_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9])*$")
_SAGEMAKER_NAME_MAX = 63
_ENDPOINT_BUSY = frozenset(
    {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "UpdateRollbackFailed"}
)


@dataclass(frozen=True)
class SageMakerTarget:
    """A SageMaker Serverless endpoint serving one container image. Validated on construction."""

    endpoint_name: str
    role_arn: str
    image_uri: str
    model_data_url: str | None = None  # s3://… model.tar.gz; None when the image holds the model
    memory_mb: int = 2048
    max_concurrency: int = 5
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not _SAGEMAKER_NAME.match(self.endpoint_name or "") or len(self.endpoint_name) > 40:
            problems.append(
                "endpoint_name must be at most 40 letters, digits and inner '-' (the model and "
                "endpoint config names add a version label and a hash to it)"
            )
        if not ROLE_ARN.match(self.role_arn or ""):
            problems.append(f"role_arn {self.role_arn!r} is not an IAM role ARN")
        if not self.image_uri or ":" not in self.image_uri.rsplit("/", 1)[-1]:
            problems.append(f"image_uri {self.image_uri!r} needs a tag or a digest")
        if self.model_data_url is not None and not self.model_data_url.startswith("s3://"):
            problems.append(f"model_data_url {self.model_data_url!r} must be an s3:// URL")
        if self.memory_mb not in SERVERLESS_MEMORY_MB:
            problems.append(f"memory_mb={self.memory_mb} must be one of {SERVERLESS_MEMORY_MB}")
        problems += _range_problems(
            "max_concurrency", self.max_concurrency, SERVERLESS_MAX_CONCURRENCY, "Serverless"
        )
        problems += _environment_problems(self.environment)
        if problems:
            raise ValueError(
                f"invalid SageMaker target {self.endpoint_name!r}: {'; '.join(problems)}"
            )


@dataclass(frozen=True, kw_only=True)
class SageMakerDeployment(Deployment):
    """What :func:`deploy_sagemaker` did. ``outcome`` is "created" (a new endpoint),
    "updated" (the endpoint now uses the new config) or "unchanged" (it already did)."""

    endpoint_name: str
    model_name: str
    endpoint_config_name: str
    previous_endpoint_config_name: str | None


def deploy_sagemaker(
    sagemaker: Any, target: SageMakerTarget, version_label: str
) -> SageMakerDeployment:
    """Serve the target's image on a SageMaker Serverless endpoint; return the names used.

    The model and the endpoint config are named ``<endpoint>-<label>-<hash>``, the hash
    covering everything they contain, so a retry with the same inputs reuses them and a
    change under the same label never collides with what exists. Creates the endpoint if
    absent, else points it at the new config (``update_endpoint``), which SageMaker applies
    without downtime. Old models and configs are left for the caller to clean up.
    """
    name = _resource_name(target, version_label)
    _ensure_model(sagemaker, target, name)
    _ensure_endpoint_config(sagemaker, target, name)
    endpoint = _describe_endpoint(sagemaker, target.endpoint_name)
    previous = endpoint.get("EndpointConfigName") if endpoint else None

    def result(outcome: str) -> SageMakerDeployment:
        return SageMakerDeployment(
            outcome=outcome,
            endpoint_name=target.endpoint_name,
            model_name=name,
            endpoint_config_name=name,
            previous_endpoint_config_name=previous,
        )

    if endpoint is None:
        _call(
            sagemaker.create_endpoint,
            f"creating SageMaker endpoint {target.endpoint_name!r}",
            EndpointName=target.endpoint_name,
            EndpointConfigName=name,
        )
        return result("created")
    if previous == name:
        return result("unchanged")
    status = endpoint.get("EndpointStatus")
    if status in _ENDPOINT_BUSY:
        raise DeployError(
            f"SageMaker endpoint {target.endpoint_name!r} is {status}; wait until it is "
            "InService (or Failed) and deploy again"
        )
    _call(
        sagemaker.update_endpoint,
        f"updating SageMaker endpoint {target.endpoint_name!r}",
        EndpointName=target.endpoint_name,
        EndpointConfigName=name,
    )
    return result("updated")


def _resource_name(target: SageMakerTarget, version_label: str) -> str:
    """``<endpoint>-<label>-<hash>``, the name of both the model and the endpoint config."""
    if not isinstance(version_label, str) or not _SAGEMAKER_NAME.match(version_label):
        raise ValueError(
            f"version label {version_label!r} must be letters, digits and inner '-' (e.g. 'v3')"
        )
    name = f"{target.endpoint_name}-{version_label}-{_fingerprint(target)}"
    if len(name) > _SAGEMAKER_NAME_MAX:
        raise ValueError(
            f"{name!r} is longer than SageMaker's {_SAGEMAKER_NAME_MAX} characters: shorten the "
            f"endpoint name or the version label {version_label!r}"
        )
    return name


def _fingerprint(target: SageMakerTarget) -> str:
    content = {
        "image": target.image_uri,
        "model_data": target.model_data_url,
        "role": target.role_arn,
        "environment": target.environment,
        "memory": target.memory_mb,
        "concurrency": target.max_concurrency,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]


def _is_not_found(err: ClientError) -> bool:
    return _code(err) in ("ValidationException", "ResourceNotFound") and (
        "Could not find" in _message(err)
    )


def _ensure_model(sagemaker: Any, target: SageMakerTarget, name: str) -> None:
    try:
        sagemaker.describe_model(ModelName=name)
        return  # same name, same fingerprint: the same model
    except ClientError as err:
        if not _is_not_found(err):
            raise _failure(f"reading SageMaker model {name!r}", err) from err
    container: dict[str, Any] = {"Image": target.image_uri, "Environment": target.environment}
    if target.model_data_url:
        container["ModelDataUrl"] = target.model_data_url
    _call(
        sagemaker.create_model,
        f"creating SageMaker model {name!r}",
        ModelName=name,
        ExecutionRoleArn=target.role_arn,
        PrimaryContainer=container,
    )


def _ensure_endpoint_config(sagemaker: Any, target: SageMakerTarget, name: str) -> None:
    try:
        sagemaker.describe_endpoint_config(EndpointConfigName=name)
        return
    except ClientError as err:
        if not _is_not_found(err):
            raise _failure(f"reading SageMaker endpoint config {name!r}", err) from err
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "ServerlessConfig": {
            "MemorySizeInMB": target.memory_mb,
            "MaxConcurrency": target.max_concurrency,
        },
    }
    _call(
        sagemaker.create_endpoint_config,
        f"creating SageMaker endpoint config {name!r}",
        EndpointConfigName=name,
        ProductionVariants=[variant],
    )


def _describe_endpoint(sagemaker: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(sagemaker.describe_endpoint(EndpointName=name))
    except ClientError as err:
        if _is_not_found(err):
            return None
        raise _failure(f"reading SageMaker endpoint {name!r}", err) from err


__all__ = ["SageMakerDeployment", "SageMakerTarget", "deploy_sagemaker"]
