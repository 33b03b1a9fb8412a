"""Deploy the model service to AWS (lifecycle stage 5): a Lambda container image behind a
canary, or a SageMaker Serverless endpoint.

Every AWS call goes through a boto3 client passed in by the caller (built by a flow, or by a
test pointed at moto's server on 127.0.0.1), and waiting goes through an injected ``sleep``
and ``clock``, so nothing here blocks a test or touches AWS on its own.

The Lambda path, step by step (each step is also a function of its own):

1. :func:`ensure_repository`: the ECR repository exists (idempotent).
2. :func:`deploy_image`: the function runs the new image, and a numbered version is published.
3. :func:`start_canary`: the ``live`` alias keeps its stable version and sends a fraction of
   the traffic to the new one (weighted alias routing). On the very first deploy there is no
   stable version to compare with, so the alias is created on the new version directly.
4. :func:`canary_error_rate`: errors and invocations of the new version through the alias,
   from Lambda's CloudWatch metrics.
5. :func:`judge_canary`: a pure decision with its reason: promote, roll back, or "not enough
   traffic" (inconclusive).
6. :func:`finish_canary`: promote (the alias moves to the new version) or roll back (the alias
   stays on the stable version); either way the weighted routing is removed.

:func:`deploy_lambda` runs the whole sequence and returns a summary with every reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

LAMBDA_MEMORY_MB = (128, 10240)
LAMBDA_TIMEOUT_S = (1, 900)
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = (1, 200)
ARCHITECTURES = ("x86_64", "arm64")
METRIC_PERIOD_S = 60  # Lambda publishes its metrics at one-minute resolution.

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALIAS_NAME = re.compile(r"^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$")
_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/\S+$")
_ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_SAGEMAKER_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9])*$")
_SAGEMAKER_NAME_MAX = 63
_VERSION = re.compile(r"^[0-9]+$")
# Lambda reserves these environment variable names for its runtime.
_RESERVED_ENV = frozenset(
    {"_HANDLER", "_X_AMZN_TRACE_ID", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"}
    | {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME"}
    | {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION"}
    | {"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API"}
    | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
)
# AWS answers these codes when the request itself was wrong: the caller can fix it.
_CALLER_MISTAKES = frozenset(
    {
        "InvalidParameterValueException",
        "InvalidParameterException",
        "InvalidRequestContentException",
        "ValidationException",
        "ValidationError",
        "ResourceNotFoundException",
        "RepositoryNotFoundException",
        "InvalidParameterCombination",
        "InvalidParameterValue",
        "ImageNotFoundException",
    }
)
_ENDPOINT_BUSY = frozenset(
    {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "UpdateRollbackFailed"}
)


class DeployError(RuntimeError):
    """AWS did not reach the state a deploy needs (an update failed, a wait timed out, a
    resource changed under us). The message names the resource and what to do."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------- targets


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


def _name_problems(target: LambdaTarget) -> list[str]:
    out = []
    if not _FUNCTION_NAME.match(target.function_name or ""):
        out.append("function_name must be 1-64 letters, digits, '-' or '_'")
    if not _ALIAS_NAME.match(target.alias or ""):
        out.append(f"alias {target.alias!r} must be letters, digits, '-' or '_', not a number")
    if not _ROLE_ARN.match(target.role_arn or ""):
        out.append(
            f"role_arn {target.role_arn!r} is not an IAM role ARN (arn:aws:iam::<acct>:role/…)"
        )
    if not _valid_repository(target.repository):
        out.append(f"repository {target.repository!r} is not a valid ECR repository name")
    return out


def _range_problems(name: str, value: int, bounds: tuple[int, int], where: str) -> list[str]:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return [f"{name}={value!r} is outside {where}'s range {low}..{high}"]
    return []


def _environment_problems(
    environment: dict[str, str], reserved: frozenset[str] = frozenset()
) -> list[str]:
    out = []
    for name, value in environment.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            out.append(f"environment name {name!r} must start with a letter: letters, digits, _")
        elif name in reserved:
            out.append(f"environment name {name!r} is reserved by Lambda")
        if not isinstance(value, str):
            out.append(f"environment {name!r} must be a string, got {type(value).__name__}")
    return out


def _valid_repository(name: str) -> bool:
    return isinstance(name, str) and 2 <= len(name) <= 256 and bool(_ECR_REPOSITORY.match(name))


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
        if not _ROLE_ARN.match(self.role_arn or ""):
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


# ------------------------------------------------------------------------------ AWS errors


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", "")) or str(err)


def _failure(what: str, err: ClientError, hint: str = "") -> Exception:
    """ValueError when AWS says the request was wrong (the caller can fix it), else
    DeployError; the message names the resource, AWS's code and message, and a hint."""
    text = f"{what}: {_code(err)}: {_message(err)}" + (f" ({hint})" if hint else "")
    return ValueError(text) if _code(err) in _CALLER_MISTAKES else DeployError(text)


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
        if current.get("PackageType") != "Image":
            raise ValueError(
                f"Lambda function {name!r} is a {current.get('PackageType')} function; a "
                "container image cannot replace it in place: use a new function name"
            )
        if _configuration_changes(current, target):
            _call(
                lambda_client.update_function_configuration,
                f"configuring function {name!r}",
                FunctionName=name,
                **_configuration_changes(current, target),
            )
            _wait_until_ready(lambda_client, name, sleep, poll_seconds, max_polls)
        _call(
            lambda_client.update_function_code,
            f"updating the code of function {name!r}",
            FunctionName=name,
            ImageUri=image_uri,
            Architectures=[target.architecture],
        )
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


def _check_image_uri(image_uri: str) -> None:
    last = (image_uri or "").rsplit("/", 1)[-1]
    if "/" not in (image_uri or "") or ":" not in last:
        raise ValueError(
            f"image URI {image_uri!r} must name an ECR image with a tag or digest, e.g. "
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/service:v3"
        )


def _call(method: Callable[..., Any], what: str, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except ClientError as err:
        raise _failure(what, err) from err


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


def _alias(lambda_client: Any, target: LambdaTarget) -> dict[str, Any] | None:
    try:
        return dict(lambda_client.get_alias(FunctionName=target.function_name, Name=target.alias))
    except ClientError as err:
        if _code(err) == "ResourceNotFoundException":
            return None
        raise _failure(f"reading alias {target.alias!r} of {target.function_name!r}", err) from err


def _update_alias(lambda_client: Any, target: LambdaTarget, alias: dict, **changes: Any) -> dict:
    """Update the alias only if nobody changed it since we read it (RevisionId)."""
    try:
        return dict(
            lambda_client.update_alias(
                FunctionName=target.function_name,
                Name=target.alias,
                RevisionId=alias["RevisionId"],
                **changes,
            )
        )
    except ClientError as err:
        where = f"alias {target.alias!r} of {target.function_name!r}"
        if _code(err) == "PreconditionFailedException":
            raise DeployError(
                f"{where} was changed by someone else during this deploy; read it and retry"
            ) from err
        raise _failure(f"updating {where}", err) from err


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ValueError(
            f"{version!r} is not a published Lambda version number; weighted aliases need "
            "numbered versions (publish_version), never $LATEST"
        )
    return version


def _check_weight(weight: float) -> float:
    if not isinstance(weight, int | float) or not 0 < weight < 1:
        raise ValueError(
            f"canary weight {weight!r} must be strictly between 0 and 1 (e.g. 0.1 sends 10% of "
            "the traffic to the new version)"
        )
    return float(weight)


def _check_thresholds(max_error_rate: float, min_invocations: int) -> None:
    if not 0 <= max_error_rate <= 1:  # also False for NaN
        raise ValueError(f"max_error_rate {max_error_rate!r} must be between 0 and 1 (0.01 = 1%)")
    if min_invocations < 0:
        raise ValueError(f"min_invocations {min_invocations!r} must not be negative")


def start_canary(lambda_client: Any, target: LambdaTarget, new_version: str, weight: float) -> None:
    """Send ``weight`` of the alias's traffic to ``new_version``; the rest stays on the stable
    version the alias points at.

    First deploy: without an alias there is no stable version to canary against, so the
    alias is created on ``new_version`` with all the traffic. Raises ValueError if the alias
    already points at ``new_version`` (nothing to compare). A canary left behind by an
    interrupted deploy is replaced by this one.
    """
    _check_version(new_version)
    _check_weight(weight)
    alias = _alias(lambda_client, target)
    if alias is None:
        _call(
            lambda_client.create_alias,
            f"creating alias {target.alias!r} of {target.function_name!r}",
            FunctionName=target.function_name,
            Name=target.alias,
            FunctionVersion=new_version,
            Description="first deploy: all traffic on the first version",
        )
        return
    stable = str(alias["FunctionVersion"])
    if stable == new_version:
        raise ValueError(
            f"alias {target.alias!r} of {target.function_name!r} already points at version "
            f"{new_version}; there is nothing to canary"
        )
    routing = {"AdditionalVersionWeights": {new_version: float(weight)}}
    _update_alias(lambda_client, target, alias, FunctionVersion=stable, RoutingConfig=routing)


def canary_error_rate(
    cloudwatch: Any, target: LambdaTarget, version: str, start: datetime, end: datetime
) -> tuple[int, int]:
    """(errors, invocations) of ``version`` served through the alias between start and end.

    Reads the ``AWS/Lambda`` metrics ``Errors`` and ``Invocations`` with the dimensions
    Lambda publishes per executed version of an alias: FunctionName, Resource
    ("<function>:<alias>") and ExecutedVersion, summed over the window. Lambda's metrics
    arrive a minute or two late, so a window that ends "now" misses the last minutes.
    """
    _check_version(version)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("canary window times must be timezone-aware (e.g. datetime.now(UTC))")
    if end <= start:
        raise ValueError(f"canary window ends ({end}) before it starts ({start})")
    dimensions = [
        {"Name": "FunctionName", "Value": target.function_name},
        {"Name": "Resource", "Value": f"{target.function_name}:{target.alias}"},
        {"Name": "ExecutedVersion", "Value": version},
    ]
    queries = [
        {
            "Id": metric.lower(),
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": metric,
                    "Dimensions": dimensions,
                },
                "Period": METRIC_PERIOD_S,
                "Stat": "Sum",
            },
        }
        for metric in ("Errors", "Invocations")
    ]
    totals = {"errors": 0.0, "invocations": 0.0}
    kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
    while True:
        page = _call(
            cloudwatch.get_metric_data, f"reading metrics of {target.function_name!r}", **kwargs
        )
        for result in page.get("MetricDataResults", []):
            totals[result["Id"]] += sum(result.get("Values", []))
        if not page.get("NextToken"):
            return round(totals["errors"]), round(totals["invocations"])
        kwargs["NextToken"] = page["NextToken"]


@dataclass(frozen=True)
class CanaryVerdict:
    promote: bool
    errors: int
    invocations: int
    reason: str
    conclusive: bool = True  # False: too little traffic to tell yet; waiting may help


def judge_canary(
    errors: int, invocations: int, *, max_error_rate: float, min_invocations: int
) -> CanaryVerdict:
    """Decide on a canary from its errors and invocations; the reason states the numbers.

    * enough invocations (>= ``min_invocations``): promote if the error rate is at most
      ``max_error_rate``, else roll back;
    * too few, but the errors already exceed what ``min_invocations`` calls could absorb
      (``errors > max_error_rate * min_invocations``): roll back without waiting;
    * otherwise: do not promote, inconclusive ("not enough traffic"); the caller may wait.
    """
    _check_thresholds(max_error_rate, min_invocations)
    if errors < 0 or invocations < 0:
        raise ValueError(f"counts must not be negative: {errors=}, {invocations=}")
    limit = f"the limit {max_error_rate:.2%}"
    if invocations < min_invocations:
        budget = max_error_rate * min_invocations
        if errors > budget:
            reason = (
                f"roll back: {errors} errors in only {invocations} invocations already exceed "
                f"{limit} of the {min_invocations} invocations required (at most {budget:g})"
            )
            return CanaryVerdict(False, errors, invocations, reason)
        reason = (
            f"not enough traffic: {invocations} invocations of the new version, at least "
            f"{min_invocations} are needed to judge it ({errors} errors so far)"
        )
        return CanaryVerdict(False, errors, invocations, reason, conclusive=False)
    rate = errors / invocations if invocations else 0.0
    observed = f"error rate {rate:.2%} ({errors}/{invocations} invocations)"
    if rate > max_error_rate:
        return CanaryVerdict(False, errors, invocations, f"roll back: {observed} exceeds {limit}")
    return CanaryVerdict(True, errors, invocations, f"promote: {observed} is within {limit}")


def finish_canary(
    lambda_client: Any, target: LambdaTarget, new_version: str, verdict: CanaryVerdict
) -> str:
    """Act on the verdict and return the version the alias now points to.

    Promote: the alias moves to ``new_version``. Roll back (any verdict that does not
    promote, including "not enough traffic"): the alias stays on its stable version. Either
    way the weighted routing is cleared, so after a rollback the new version gets no traffic.
    """
    _check_version(new_version)
    alias = _alias(lambda_client, target)
    where = f"alias {target.alias!r} of {target.function_name!r}"
    if alias is None:
        raise DeployError(f"{where} does not exist: start_canary creates it; deploy first")
    stable = str(alias["FunctionVersion"])
    if not verdict.promote and stable == new_version:
        raise DeployError(
            f"cannot roll back: {where} already points at version {new_version}, so there is no "
            "stable version to keep; move the alias to an earlier version by hand"
        )
    version = new_version if verdict.promote else stable
    updated = _update_alias(
        lambda_client,
        target,
        alias,
        FunctionVersion=version,
        RoutingConfig={"AdditionalVersionWeights": {}},
    )
    return str(updated["FunctionVersion"])


@dataclass(frozen=True)
class CanaryPolicy:
    """How a canary runs and is judged; validated on construction (see :func:`deploy_lambda`)."""

    weight: float = 0.1
    max_error_rate: float = 0.01
    min_invocations: int = 100
    bake_seconds: float = 600.0
    poll_seconds: float = 60.0
    max_wait_seconds: float | None = None  # None: as long as bake_seconds

    def __post_init__(self) -> None:
        _check_weight(self.weight)
        _check_thresholds(self.max_error_rate, self.min_invocations)
        waits = (self.bake_seconds, self.poll_seconds, self.max_wait_seconds or 0.0)
        if min(waits) < 0 or self.poll_seconds == 0:
            raise ValueError(
                f"canary waits must not be negative and poll_seconds must be positive: "
                f"bake_seconds={self.bake_seconds}, poll_seconds={self.poll_seconds}, "
                f"max_wait_seconds={self.max_wait_seconds}"
            )

    def judge(self, errors: int, invocations: int) -> CanaryVerdict:
        return judge_canary(
            errors,
            invocations,
            max_error_rate=self.max_error_rate,
            min_invocations=self.min_invocations,
        )


def deploy_lambda(
    lambda_client: Any,
    ecr: Any,
    cloudwatch: Any,
    target: LambdaTarget,
    image_uri: str,
    *,
    canary_weight: float = 0.1,
    max_error_rate: float = 0.01,
    min_invocations: int = 100,
    bake_seconds: float = 600.0,
    poll_seconds: float = 60.0,
    max_wait_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = _utc_now,
) -> dict[str, Any]:
    """Deploy ``image_uri`` to the target behind a canary; return a summary with every reason.

    The canary gets ``canary_weight`` of the traffic and is looked at every
    ``poll_seconds``: a conclusive failure rolls back at once; a healthy canary is promoted
    once ``bake_seconds`` have passed; while there is not enough traffic the watch goes on
    until ``max_wait_seconds`` (default: ``bake_seconds``) and then rolls back, because a
    version nobody could judge must not keep serving. If watching fails, the canary is rolled
    back before the error is raised. Lambda's metrics arrive a minute or two late: choose a
    bake time a few minutes longer than the traffic needs.

    The summary's ``outcome`` is "first_deploy" (no alias before: the new version serves
    everything), "unchanged" (same image and settings: Lambda published no new version),
    "promoted" or "rolled_back"; ``reasons`` explains each step.
    """
    policy = CanaryPolicy(
        canary_weight, max_error_rate, min_invocations, bake_seconds, poll_seconds, max_wait_seconds
    )
    _check_image_in_repository(image_uri, ensure_repository(ecr, target.repository))
    before = _alias(lambda_client, target)
    previous = str(before["FunctionVersion"]) if before else None
    new_version = deploy_image(lambda_client, target, image_uri, sleep=sleep)
    summary: dict[str, Any] = {
        "function": target.function_name,
        "alias": target.alias,
        "image_uri": image_uri,
        "previous_version": previous,
        "new_version": new_version,
        "verdict": None,
    }
    if previous is None:
        start_canary(lambda_client, target, new_version, policy.weight)
        reason = (
            f"first deploy: no {target.alias!r} alias yet, so nothing to canary against; "
            f"version {new_version} serves all traffic"
        )
        return {
            **summary,
            "outcome": "first_deploy",
            "live_version": new_version,
            "reasons": [reason],
        }
    if previous == new_version or _same_deployment(lambda_client, target, previous, new_version):
        reason = (
            f"unchanged: version {new_version} runs the same image digest and settings as "
            f"version {previous}, which stays live"
        )
        return {**summary, "outcome": "unchanged", "live_version": previous, "reasons": [reason]}
    canary = _run_canary(
        lambda_client, cloudwatch, target, previous, new_version, policy, sleep=sleep, clock=clock
    )
    return {**summary, **canary}


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


def _run_canary(
    lambda_client: Any,
    cloudwatch: Any,
    target: LambdaTarget,
    stable: str,
    new_version: str,
    policy: CanaryPolicy,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime],
) -> dict[str, Any]:
    started = clock()
    start_canary(lambda_client, target, new_version, policy.weight)
    try:
        verdict, history = _watch_canary(
            lambda end: canary_error_rate(cloudwatch, target, new_version, started, end),
            policy,
            sleep=sleep,
            clock=clock,
        )
    except Exception:
        failed = CanaryVerdict(False, 0, 0, "roll back: watching the canary failed")
        finish_canary(lambda_client, target, new_version, failed)
        raise
    live = finish_canary(lambda_client, target, new_version, verdict)
    opening = (
        f"canary from {started.isoformat()}: version {new_version} got {policy.weight:.0%} of "
        f"the traffic, stable version {stable} the rest"
    )
    closing = (
        f"promoted: {target.alias!r} now points at version {live}"
        if verdict.promote
        else f"rolled back: {target.alias!r} stays on version {live}, {new_version} gets no traffic"
    )
    return {
        "outcome": "promoted" if verdict.promote else "rolled_back",
        "live_version": live,
        "verdict": asdict(verdict),
        "reasons": [opening, *history, closing],
    }


def _watch_canary(
    read: Callable[[datetime], tuple[int, int]],
    policy: CanaryPolicy,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime],
) -> tuple[CanaryVerdict, list[str]]:
    """Poll the canary's metrics; return the final verdict and one reason per look."""
    deadline = max(policy.bake_seconds, policy.max_wait_seconds or 0.0)
    waited, history = 0.0, []
    while True:
        step = min(policy.poll_seconds, deadline - waited)
        sleep(step)
        waited += step
        verdict = policy.judge(*read(clock()))
        history.append(f"after {waited:g}s: {verdict.reason}")
        failed = verdict.conclusive and not verdict.promote
        baked = waited >= policy.bake_seconds and verdict.conclusive
        if failed or baked or waited >= deadline:
            return verdict, history


# ------------------------------------------------------------------------------- SageMaker


def deploy_sagemaker(sagemaker: Any, target: SageMakerTarget, version_label: str) -> dict[str, Any]:
    """Serve the target's image on a SageMaker Serverless endpoint; return the names used.

    The model and the endpoint config are named ``<endpoint>-<label>-<hash>``, the hash
    covering everything they contain, so a retry with the same inputs reuses them and a
    change under the same label never collides with what exists. Creates the endpoint if
    absent, else points it at the new config (``update_endpoint``), which SageMaker applies
    without downtime. Old models and configs are left for the caller to clean up.
    """
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
    _ensure_model(sagemaker, target, name)
    _ensure_endpoint_config(sagemaker, target, name)
    endpoint = _describe_endpoint(sagemaker, target.endpoint_name)
    names = {
        "endpoint_name": target.endpoint_name,
        "model_name": name,
        "endpoint_config_name": name,
    }
    if endpoint is None:
        _call(
            sagemaker.create_endpoint,
            f"creating SageMaker endpoint {target.endpoint_name!r}",
            EndpointName=target.endpoint_name,
            EndpointConfigName=name,
        )
        return {**names, "action": "created", "previous_endpoint_config_name": None}
    previous = endpoint.get("EndpointConfigName")
    if previous == name:
        return {**names, "action": "unchanged", "previous_endpoint_config_name": previous}
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
    return {**names, "action": "updated", "previous_endpoint_config_name": previous}


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


__all__ = [
    "CanaryPolicy",
    "CanaryVerdict",
    "DeployError",
    "LambdaTarget",
    "SageMakerTarget",
    "canary_error_rate",
    "deploy_image",
    "deploy_lambda",
    "deploy_sagemaker",
    "ensure_repository",
    "finish_canary",
    "judge_canary",
    "start_canary",
]
