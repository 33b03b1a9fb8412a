"""Deploy the model service as a Lambda container image behind a canary.

Every AWS call goes through a boto3 client passed in by the caller (built by a flow, or by a
test pointed at moto's server on 127.0.0.1), and waiting goes through an injected ``sleep``
and ``clock``, so nothing here blocks a test or touches AWS on its own.

The steps, each a function of its own:

1. :func:`ensure_repository`: the ECR repository exists (idempotent).
2. :func:`deploy_image`: the function runs the new image, and a numbered version is published.
3. the canary (components/deploy/canary.py): the ``live`` alias sends a share of the traffic
   to the new version, which is judged on its metrics, then promoted or rolled back. On the
   very first deploy there is no stable version to compare with, so the alias is created on
   the new version directly.

:func:`deploy_lambda` runs the whole sequence and returns a :class:`LambdaDeployment`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
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
    utc_now,
)
from components.deploy.canary import CanaryPolicy, CanaryVerdict, _alias, run_canary, start_canary

LAMBDA_MEMORY_MB = (128, 10240)
LAMBDA_TIMEOUT_S = (1, 900)
ARCHITECTURES = ("x86_64", "arm64")

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALIAS_NAME = re.compile(r"^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$")
_ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# Lambda reserves these environment variable names for its runtime.
_RESERVED_ENV = frozenset(
    {"_HANDLER", "_X_AMZN_TRACE_ID", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"}
    | {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME"}
    | {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION"}
    | {"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API"}
    | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
)


@dataclass(frozen=True)
class LambdaTarget:
    """Where and how the Lambda container-image function runs. Validated on construction."""

    function_name: str
    role_arn: str
    repository: str  # ECR repository name, e.g. "mlops/churn-service"
    alias: str = "live"
    memory_mb: int = 2048
    timeout_s: int = 30
    environment: dict[str, str] = field(default_factory=dict)
    architecture: str = "x86_64"  # must match the platform the image was built for

    def __post_init__(self) -> None:
        problems = [
            *_name_problems(self),
            *_range_problems("memory_mb", self.memory_mb, LAMBDA_MEMORY_MB, "Lambda"),
            *_range_problems("timeout_s", self.timeout_s, LAMBDA_TIMEOUT_S, "Lambda"),
            *_environment_problems(self.environment, _RESERVED_ENV),
        ]
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture {self.architecture!r} is not one of {ARCHITECTURES}")
        if problems:
            raise ValueError(f"invalid Lambda target {self.function_name!r}: {'; '.join(problems)}")


@dataclass(frozen=True, kw_only=True)
class LambdaDeployment(Deployment):
    """What :func:`deploy_lambda` did. ``outcome`` is "first_deploy" (no alias before: the
    new version serves everything), "unchanged" (same image and settings: no canary),
    "promoted" or "rolled_back"; ``reasons`` explains each step; ``verdict`` is the
    canary's final verdict (None when no canary ran)."""

    function: str
    alias: str
    image_uri: str
    previous_version: str | None
    new_version: str
    live_version: str
    verdict: CanaryVerdict | None = None
    reasons: tuple[str, ...] = ()


def _name_problems(target: LambdaTarget) -> list[str]:
    out = []
    if not _FUNCTION_NAME.match(target.function_name or ""):
        out.append("function_name must be 1-64 letters, digits, '-' or '_'")
    if not _ALIAS_NAME.match(target.alias or ""):
        out.append(f"alias {target.alias!r} must be letters, digits, '-' or '_', not a number")
    if not ROLE_ARN.match(target.role_arn or ""):
        out.append(
            f"role_arn {target.role_arn!r} is not an IAM role ARN (arn:aws:iam::<acct>:role/…)"
        )
    if not _valid_repository(target.repository):
        out.append(f"repository {target.repository!r} is not a valid ECR repository name")
    return out


def _valid_repository(name: str) -> bool:
    return isinstance(name, str) and 2 <= len(name) <= 256 and bool(_ECR_REPOSITORY.match(name))


# ------------------------------------------------------------------------------------- ECR


def ensure_repository(ecr: Any, name: str) -> str:
    """Return the URI of ECR repository ``name``, creating it (scan on push) if missing.

    Safe to call again and concurrently: a creator that loses the race reads the winner's.
    """
    if not _valid_repository(name):
        raise ValueError(
            f"{name!r} is not a valid ECR repository name: 2-256 lowercase letters, digits and "
            "'.', '_', '-', '/' separators (e.g. 'mlops/churn-service')"
        )
    try:
        return _repository_uri(ecr, name)
    except ClientError as err:
        if _code(err) != "RepositoryNotFoundException":
            raise _failure(f"ECR repository {name!r}", err) from err
    try:
        created = ecr.create_repository(
            repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
        )
        return str(created["repository"]["repositoryUri"])
    except ClientError as err:
        if _code(err) == "RepositoryAlreadyExistsException":
            return _repository_uri(ecr, name)
        raise _failure(f"creating ECR repository {name!r}", err) from err


def _repository_uri(ecr: Any, name: str) -> str:
    found = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    return str(found[0]["repositoryUri"])


# ---------------------------------------------------------------------------------- Lambda


def deploy_image(
    lambda_client: Any,
    target: LambdaTarget,
    image_uri: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 2.0,
    max_polls: int = 300,
) -> str:
    """Make the function run ``image_uri`` and publish a version of it; return its number.

    Creates the function (``PackageType="Image"``) when absent; otherwise brings its
    configuration (role, memory, timeout, environment) in line and updates its code. After
    each change it polls until Lambda reports the update finished (at most ``max_polls``
    polls, ``poll_seconds`` apart) before the next call, as Lambda requires. If neither the
    code nor the configuration changed, Lambda returns the latest version rather than a new
    one, and so does this function.
    """
    _check_image_uri(image_uri)
    name = target.function_name
    current = _function_configuration(lambda_client, name)
    if current is None:
        _create_function(lambda_client, target, image_uri, sleep=sleep, poll_seconds=poll_seconds)
    else:
        _update_function(lambda_client, target, image_uri, current, sleep, poll_seconds, max_polls)
    ready = _wait_until_ready(lambda_client, name, sleep, poll_seconds, max_polls)
    # RevisionId: publish exactly what we just deployed, not a later change by someone else.
    revision = {"RevisionId": ready["RevisionId"]} if ready.get("RevisionId") else {}
    published = _call(
        lambda_client.publish_version,
        f"publishing a version of function {name!r}",
        FunctionName=name,
        Description=f"image {image_uri}"[:256],
        **revision,
    )
    return str(published["Version"])


def _update_function(
    lambda_client: Any,
    target: LambdaTarget,
    image_uri: str,
    current: dict[str, Any],
    sleep: Callable[[float], None],
    poll_seconds: float,
    max_polls: int,
) -> None:
    """Bring an existing image function's configuration in line, then update its code."""
    name = target.function_name
    if current.get("PackageType") != "Image":
        raise ValueError(
            f"Lambda function {name!r} is a {current.get('PackageType')} function; a "
            "container image cannot replace it in place: use a new function name"
        )
    changes = _configuration_changes(current, target)
    if changes:
        _call(
            lambda_client.update_function_configuration,
            f"configuring function {name!r}",
            FunctionName=name,
            **changes,
        )
        _wait_until_ready(lambda_client, name, sleep, poll_seconds, max_polls)
    _call(
        lambda_client.update_function_code,
        f"updating the code of function {name!r}",
        FunctionName=name,
        ImageUri=image_uri,
        Architectures=[target.architecture],
    )


def _check_image_uri(image_uri: str) -> None:
    last = (image_uri or "").rsplit("/", 1)[-1]
    if "/" not in (image_uri or "") or ":" not in last:
        raise ValueError(
            f"image URI {image_uri!r} must name an ECR image with a tag or digest, e.g. "
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/service:v3"
        )


def _function_configuration(lambda_client: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(lambda_client.get_function_configuration(FunctionName=name))
    except ClientError as err:
        if _code(err) == "ResourceNotFoundException":
            return None
        raise _failure(f"reading Lambda function {name!r}", err) from err


def _function_settings(target: LambdaTarget) -> dict[str, Any]:
    return {
        "Role": target.role_arn,
        "MemorySize": target.memory_mb,
        "Timeout": target.timeout_s,
        "Environment": {"Variables": dict(target.environment)},
    }


def _configuration_changes(current: dict[str, Any], target: LambdaTarget) -> dict[str, Any]:
    wanted = _function_settings(target)
    have = {
        "Role": current.get("Role"),
        "MemorySize": current.get("MemorySize"),
        "Timeout": current.get("Timeout"),
        "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})},
    }
    return {key: value for key, value in wanted.items() if have[key] != value}


def _create_function(
    lambda_client: Any,
    target: LambdaTarget,
    image_uri: str,
    *,
    sleep: Callable[[float], None],
    poll_seconds: float,
    attempts: int = 6,
) -> None:
    """Create the function. A role created moments ago is not yet visible to Lambda (IAM is
    eventually consistent), so "cannot be assumed" is retried a few times before failing."""
    name = target.function_name
    for attempt in range(1, attempts + 1):
        try:
            lambda_client.create_function(
                FunctionName=name,
                PackageType="Image",
                Code={"ImageUri": image_uri},
                Architectures=[target.architecture],
                Description="mlops model service (container image)",
                **_function_settings(target),
            )
            return
        except ClientError as err:
            if "cannot be assumed" not in _message(err) or attempt == attempts:
                raise _failure(
                    f"creating Lambda function {name!r} with role {target.role_arn!r}",
                    err,
                    "check that the role exists and its trust policy allows lambda.amazonaws.com"
                    if "role" in _message(err).lower()
                    else "",
                ) from err
            sleep(poll_seconds * attempt)


def _wait_until_ready(
    lambda_client: Any,
    name: str,
    sleep: Callable[[float], None],
    poll_seconds: float,
    max_polls: int,
) -> dict[str, Any]:
    """Poll until the function is Active and its last update finished; return its config."""
    state = update = None
    for _ in range(max_polls):
        config = _function_configuration(lambda_client, name)
        if config is None:
            raise DeployError(f"Lambda function {name!r} disappeared while it was being deployed")
        state, update = config.get("State"), config.get("LastUpdateStatus")
        if state == "Failed" or update == "Failed":
            reason = config.get("LastUpdateStatusReason") or config.get("StateReason") or "-"
            raise DeployError(
                f"Lambda function {name!r} failed to deploy (State={state}, "
                f"LastUpdateStatus={update}): {reason}; fix the image or settings and redeploy"
            )
        if state == "Active" and update in (None, "Successful"):
            return config
        sleep(poll_seconds)
    raise DeployError(
        f"Lambda function {name!r} was still State={state}, LastUpdateStatus={update} after "
        f"{max_polls} polls {poll_seconds}s apart; check it in the console and redeploy"
    )


# ------------------------------------------------------------------------- whole deploy


def deploy_lambda(
    lambda_client: Any,
    ecr: Any,
    cloudwatch: Any,
    target: LambdaTarget,
    image_uri: str,
    *,
    policy: CanaryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = utc_now,
) -> LambdaDeployment:
    """Deploy ``image_uri`` to the target behind a canary run under ``policy``.

    A version nobody could judge (not enough traffic by ``policy.max_wait_seconds``) is
    rolled back; so is the canary when watching it fails, before the error is raised.
    Lambda's metrics arrive late: choose a bake time longer than the traffic needs.
    """
    _check_image_in_repository(image_uri, ensure_repository(ecr, target.repository))
    before = _alias(lambda_client, target)
    previous = str(before["FunctionVersion"]) if before else None
    new_version = deploy_image(lambda_client, target, image_uri, sleep=sleep)
    known = {
        "function": target.function_name,
        "alias": target.alias,
        "image_uri": image_uri,
        "previous_version": previous,
        "new_version": new_version,
    }
    if previous is None:
        start_canary(lambda_client, target, new_version, policy.weight)
        reason = (
            f"first deploy: no {target.alias!r} alias yet, so nothing to canary against; "
            f"version {new_version} serves all traffic"
        )
        return LambdaDeployment(
            **known, outcome="first_deploy", live_version=new_version, reasons=(reason,)
        )
    if previous == new_version or _same_deployment(lambda_client, target, previous, new_version):
        reason = (
            f"unchanged: version {new_version} runs the same image digest and settings as "
            f"version {previous}, which stays live"
        )
        return LambdaDeployment(
            **known, outcome="unchanged", live_version=previous, reasons=(reason,)
        )
    run = run_canary(
        lambda_client, cloudwatch, target, previous, new_version, policy, sleep=sleep, clock=clock
    )
    return LambdaDeployment(
        **known,
        outcome=run.outcome,
        live_version=run.live_version,
        verdict=run.verdict,
        reasons=run.reasons,
    )


def _same_deployment(lambda_client: Any, target: LambdaTarget, one: str, other: str) -> bool:
    """Whether two versions run the same image digest with the same settings. Lambda itself
    publishes no new version then; this also covers a redeploy that did get a new number."""
    fields = ("CodeSha256", "Role", "MemorySize", "Timeout", "Environment", "Architectures")
    configs = [
        _call(
            lambda_client.get_function_configuration,
            f"reading version {version} of {target.function_name!r}",
            FunctionName=target.function_name,
            Qualifier=version,
        )
        for version in (one, other)
    ]
    first, second = ({name: config.get(name) for name in fields} for config in configs)
    return first == second


def _check_image_in_repository(image_uri: str, repository_uri: str) -> None:
    if not image_uri.startswith((f"{repository_uri}:", f"{repository_uri}@")):
        raise ValueError(
            f"image {image_uri!r} is not in the target's repository {repository_uri}; push it "
            "there or fix LambdaTarget.repository"
        )


__all__ = [
    "LambdaDeployment",
    "LambdaTarget",
    "deploy_image",
    "deploy_lambda",
    "ensure_repository",
]
