"""Lambda canary and SageMaker Serverless deploys against moto's server over real HTTP.

What moto 5.2.5 does and does not do here, and how the tests deal with it:

* Lambda container-image functions, versions and weighted aliases work; images are not
  pulled (moto stubs ECR for Lambda by default), so the image URIs only need to look like
  ECR images in the repository that ``ensure_repository`` created. Nothing is invoked.
* Lambda's own metrics do not exist in moto, so the tests publish the canary's traffic with
  ``put_metric_data`` to ``AWS/Lambda`` under the dimensions Lambda uses, while the
  injected ``sleep`` runs (i.e. "during the bake"), on a fake clock.
* SageMaker's UpdateEndpoint is not implemented in moto 5.2.5 (it answers 500 with
  NotImplementedError). The ``sagemaker_update_endpoint`` fixture adds a minimal one to the
  in-process server (point the endpoint at an existing config, as AWS does), so the
  update path still goes over HTTP through boto3 and moto validates the config name.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse

from components.deploy.aws_lambda import (
    LambdaDeployment,
    LambdaTarget,
    deploy_image,
    deploy_lambda,
    ensure_repository,
)
from components.deploy.base import DeployError
from components.deploy.canary import (
    CanaryPolicy,
    canary_error_rate,
    finish_canary,
    judge_canary,
    start_canary,
)
from components.deploy.sagemaker import SageMakerTarget, deploy_sagemaker

REGION = "us-east-1"


def _trust(service: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="module")
def aws(moto_server: str) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_server, region_name=REGION)

    return client


@pytest.fixture(scope="module")
def lambda_role(aws: Callable[[str], Any]) -> str:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    role = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=_trust("lambda"))
    return role["Role"]["Arn"]


@pytest.fixture
def target(lambda_role: str) -> LambdaTarget:
    suffix = uuid.uuid4().hex[:8]
    return LambdaTarget(
        function_name=f"svc-{suffix}",
        role_arn=lambda_role,
        repository=f"mlops/svc-{suffix}",
        memory_mb=1024,
        environment={"MLOPS_STORE": "s3://models/prod"},
    )


class FakeTime:
    """A clock that moves only when slept; ``on_sleep`` runs at each sleep (the traffic)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.slept: list[float] = []
        self.on_sleep: Callable[[datetime], None] = lambda now: None

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.on_sleep(self.now + timedelta(seconds=1))
        self.now += timedelta(seconds=seconds)

    def clock(self) -> datetime:
        return self.now


def _dimensions(target: LambdaTarget, version: str | None) -> list[dict[str, str]]:
    dims = [
        {"Name": "FunctionName", "Value": target.function_name},
        {"Name": "Resource", "Value": f"{target.function_name}:{target.alias}"},
    ]
    return [*dims, {"Name": "ExecutedVersion", "Value": version}] if version else dims


def _put_traffic(cloudwatch: Any, dims: list, when: datetime, invocations: int, errors: int):
    data = [
        {"MetricName": "Invocations", "Dimensions": dims, "Value": invocations, "Timestamp": when},
        {"MetricName": "Errors", "Dimensions": dims, "Value": errors, "Timestamp": when},
    ]
    cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data)


def _traffic(cloudwatch: Any, target: LambdaTarget, version: str, invocations: int, errors: int):
    """An on_sleep hook: each minute of bake, the canary version serves this traffic."""
    return lambda when: _put_traffic(
        cloudwatch, _dimensions(target, version), when, invocations, errors
    )


def _routing(alias: dict[str, Any]) -> dict[str, float]:
    return (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def _live(aws: Callable[[str], Any], target: LambdaTarget) -> tuple[str, dict[str, float]]:
    alias = aws("lambda").get_alias(FunctionName=target.function_name, Name="live")
    return alias["FunctionVersion"], _routing(alias)


def _deploy(aws, target, tag: str, time: FakeTime, **policy: Any) -> LambdaDeployment:
    uri = ensure_repository(aws("ecr"), target.repository)
    canary = CanaryPolicy(**{"bake_seconds": 300, "poll_seconds": 60} | policy)
    return deploy_lambda(
        aws("lambda"),
        aws("ecr"),
        aws("cloudwatch"),
        target,
        f"{uri}:{tag}",
        policy=canary,
        sleep=time.sleep,
        clock=time.clock,
    )


# ------------------------------------------------------------------------------------- ECR


def test_ensure_repository_is_idempotent(aws):
    ecr = aws("ecr")
    name = f"mlops/repo-{uuid.uuid4().hex[:8]}"
    first = ensure_repository(ecr, name)
    assert first == ensure_repository(ecr, name)
    assert first.endswith(f".amazonaws.com/{name}")
    assert len(ecr.describe_repositories(repositoryNames=[name])["repositories"]) == 1
    with pytest.raises(ValueError, match="not a valid ECR repository name"):
        ensure_repository(ecr, "Upper/Case")


# ---------------------------------------------------------------------------------- Lambda


def test_first_deploy_creates_function_version_1_and_alias_live(aws, target):
    summary = _deploy(aws, target, "v1", FakeTime())
    assert summary.outcome == "first_deploy"
    assert (summary.previous_version, summary.new_version, summary.live_version) == (
        None,
        "1",
        "1",
    )
    assert "nothing to canary against" in summary.reasons[0]
    function = aws("lambda").get_function(FunctionName=target.function_name)
    config = function["Configuration"]
    assert config["PackageType"] == "Image"
    assert function["Code"]["ImageUri"] == summary.image_uri
    assert (config["MemorySize"], config["Timeout"]) == (1024, 30)
    assert config["Environment"]["Variables"] == {"MLOPS_STORE": "s3://models/prod"}
    versions = aws("lambda").list_versions_by_function(FunctionName=target.function_name)
    assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "1"]
    assert _live(aws, target) == ("1", {})


def test_second_deploy_updates_code_and_config_and_starts_a_canary(aws, target):
    lam, uri = aws("lambda"), ensure_repository(aws("ecr"), target.repository)
    assert deploy_image(lam, target, f"{uri}:v1") == "1"
    start_canary(lam, target, "1", 0.1)  # first deploy: creates the alias on version 1
    bigger = replace(target, memory_mb=2048, timeout_s=60)
    assert deploy_image(lam, bigger, f"{uri}:v2") == "2"
    start_canary(lam, bigger, "2", 0.1)

    assert _live(aws, target) == ("1", {"2": 0.1})
    function = lam.get_function(FunctionName=target.function_name)
    assert function["Code"]["ImageUri"] == f"{uri}:v2"
    assert (function["Configuration"]["MemorySize"], function["Configuration"]["Timeout"]) == (
        2048,
        60,
    )
    with pytest.raises(ValueError, match="already points at version 1"):
        start_canary(lam, target, "1", 0.1)


def test_canary_with_too_many_errors_rolls_back(aws, target):
    time = FakeTime()
    _deploy(aws, target, "v1", time)
    time.on_sleep = _traffic(aws("cloudwatch"), target, "2", invocations=100, errors=5)
    summary = _deploy(aws, target, "v2", time)

    assert summary.outcome == "rolled_back"
    assert (summary.previous_version, summary.new_version, summary.live_version) == (
        "1",
        "2",
        "1",
    )
    assert summary.verdict.promote is False
    assert summary.verdict.reason == (
        "roll back: error rate 5.00% (5/100 invocations) exceeds the limit 1.00%"
    )
    assert time.slept == [60]  # a conclusive failure does not wait for the end of the bake
    assert summary.reasons[-1] == "rolled back: 'live' stays on version 1, 2 gets no traffic"
    assert _live(aws, target) == ("1", {})


def test_healthy_canary_is_promoted_after_the_bake(aws, target):
    time = FakeTime()
    _deploy(aws, target, "v1", time)
    time.on_sleep = _traffic(aws("cloudwatch"), target, "2", invocations=40, errors=0)
    summary = _deploy(aws, target, "v2", time, min_invocations=100)

    assert summary.outcome == "promoted"
    assert summary.live_version == "2"
    assert summary.verdict.invocations == 200  # five polls of 40
    assert time.slept == [60, 60, 60, 60, 60]
    assert summary.reasons[1] == (
        "after 60s: not enough traffic: 40 invocations of the new version, at least 100 are "
        "needed to judge it (0 errors so far)"
    )
    assert summary.reasons[-2].startswith("after 300s: promote: error rate 0.00% (0/200")
    assert _live(aws, target) == ("2", {})


def test_canary_without_enough_traffic_is_not_promoted(aws, target):
    time = FakeTime()
    _deploy(aws, target, "v1", time)
    time.on_sleep = _traffic(aws("cloudwatch"), target, "2", invocations=3, errors=0)
    summary = _deploy(aws, target, "v2", time, bake_seconds=120, max_wait_seconds=240)

    assert summary.outcome == "rolled_back"
    assert summary.verdict.conclusive is False
    assert summary.verdict.reason == (
        "not enough traffic: 12 invocations of the new version, at least 100 are needed to "
        "judge it (0 errors so far)"
    )
    assert time.slept == [60, 60, 60, 60]  # waited past the bake, up to max_wait_seconds
    assert _live(aws, target) == ("1", {})


def test_redeploying_the_same_image_changes_nothing(aws, target):
    time = FakeTime()
    _deploy(aws, target, "v1", time)
    summary = _deploy(aws, target, "v1", time)
    # AWS returns version 1 again when nothing changed; moto publishes a version 2 for any
    # code update. Either way both run the same image digest and settings: no canary.
    assert summary.new_version in ("1", "2")
    assert summary.outcome == "unchanged"
    assert summary.live_version == "1"
    assert time.slept == []
    assert _live(aws, target) == ("1", {})


def test_a_failure_while_watching_rolls_the_canary_back(aws, target):
    class BrokenCloudWatch:
        def get_metric_data(self, **kwargs: Any) -> Any:
            error = {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}
            raise ClientError(error, "GetMetricData")

    time, lam, ecr = FakeTime(), aws("lambda"), aws("ecr")
    uri = ensure_repository(ecr, target.repository)
    _deploy(aws, target, "v1", time)
    with pytest.raises(DeployError, match="Throttling: Rate exceeded"):
        deploy_lambda(
            lam,
            ecr,
            BrokenCloudWatch(),
            target,
            f"{uri}:v2",
            policy=CanaryPolicy(),
            sleep=time.sleep,
            clock=time.clock,
        )
    assert _live(aws, target) == ("1", {})


def test_canary_error_rate_reads_only_that_version_through_the_alias(aws, target):
    cloudwatch, start = aws("cloudwatch"), datetime.now(UTC).replace(microsecond=0)
    inside, outside = start + timedelta(minutes=2), start - timedelta(minutes=10)
    _put_traffic(cloudwatch, _dimensions(target, "2"), inside, invocations=50, errors=3)
    _put_traffic(cloudwatch, _dimensions(target, "2"), inside, invocations=30, errors=1)
    _put_traffic(cloudwatch, _dimensions(target, "2"), outside, invocations=999, errors=999)
    _put_traffic(cloudwatch, _dimensions(target, "1"), inside, invocations=700, errors=70)
    _put_traffic(cloudwatch, _dimensions(target, None), inside, invocations=780, errors=74)
    end = start + timedelta(minutes=5)
    assert canary_error_rate(cloudwatch, target, "2", start, end) == (4, 80)
    assert canary_error_rate(cloudwatch, target, "3", start, end) == (0, 0)
    with pytest.raises(ValueError, match="before it starts"):
        canary_error_rate(cloudwatch, target, "2", end, start)


def test_finish_canary_acts_on_the_verdict(aws, target):
    lam, uri = aws("lambda"), ensure_repository(aws("ecr"), target.repository)
    deploy_image(lam, target, f"{uri}:v1")
    start_canary(lam, target, "1", 0.1)
    healthy = judge_canary(0, 500, max_error_rate=0.01, min_invocations=100)
    with pytest.raises(DeployError, match="no stable version to keep"):
        finish_canary(lam, target, "1", judge_canary(9, 10, max_error_rate=0, min_invocations=1))
    deploy_image(lam, target, f"{uri}:v2")
    start_canary(lam, target, "2", 0.25)
    assert _live(aws, target) == ("1", {"2": 0.25})
    assert finish_canary(lam, target, "2", healthy) == "2"
    assert _live(aws, target) == ("2", {})


def test_a_role_lambda_cannot_assume_is_a_clear_error(aws, target):
    missing = replace(target, role_arn="arn:aws:iam::123456789012:role/absent")
    uri, slept = ensure_repository(aws("ecr"), target.repository), []
    with pytest.raises(ValueError, match=r"role 'arn:aws:iam::123456789012:role/absent'.*trust"):
        deploy_image(aws("lambda"), missing, f"{uri}:v1", sleep=slept.append)
    assert len(slept) == 5  # retried: a new role takes a few seconds to reach Lambda


def test_an_image_outside_the_target_repository_is_refused(aws, target):
    with pytest.raises(ValueError, match="is not in the target's repository"):
        deploy_lambda(
            aws("lambda"),
            aws("ecr"),
            aws("cloudwatch"),
            target,
            "example.com/other/image:v1",
            policy=CanaryPolicy(),
        )


# ------------------------------------------------------------------------------- SageMaker


@pytest.fixture
def sagemaker_update_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add UpdateEndpoint to the in-process moto server (moto 5.2.5 lacks it): point the
    endpoint at an existing endpoint config, as SageMaker does once the update finishes."""

    def update_endpoint(self: SageMakerResponse) -> ActionResult:
        backend = self.sagemaker_backend
        name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
        if name not in backend.endpoints:
            raise ValidationError(message=f"Could not find endpoint '{name}'.")
        config = backend.describe_endpoint_config(config_name)  # ValidationError if missing
        endpoint = backend.endpoints[name]
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config["ProductionVariants"]
        )
        endpoint.last_modified_time = utcnow()
        return ActionResult({"EndpointArn": endpoint.arn})

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)


@pytest.fixture(scope="module")
def sagemaker_role(aws: Callable[[str], Any]) -> str:
    name = f"sm-{uuid.uuid4().hex[:8]}"
    role = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=_trust("sagemaker"))
    return role["Role"]["Arn"]


def test_sagemaker_serverless_endpoint_is_created_then_updated(
    aws, sagemaker_role, sagemaker_update_endpoint
):
    sagemaker, endpoint = aws("sagemaker"), f"churn-{uuid.uuid4().hex[:8]}"
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/service"
    first = SageMakerTarget(
        endpoint, sagemaker_role, f"{image}:v1", environment={"MLOPS_STORE": "s3://m/prod"}
    )
    created = deploy_sagemaker(sagemaker, first, "v1")
    assert created.outcome == "created"
    assert created.model_name.startswith(f"{endpoint}-v1-")
    assert deploy_sagemaker(sagemaker, first, "v1").outcome == "unchanged"  # a safe retry

    second = SageMakerTarget(
        endpoint, sagemaker_role, f"{image}:v2", "s3://m/prod/model.tar.gz", 4096, 10
    )
    updated = deploy_sagemaker(sagemaker, second, "v2")
    assert updated.outcome == "updated"
    assert updated.previous_endpoint_config_name == created.endpoint_config_name
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == updated.endpoint_config_name
    config = sagemaker.describe_endpoint_config(EndpointConfigName=updated.endpoint_config_name)
    variant = config["ProductionVariants"][0]
    assert variant["ModelName"] == updated.model_name
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 10}
    model = sagemaker.describe_model(ModelName=updated.model_name)
    assert model["PrimaryContainer"]["Image"] == f"{image}:v2"
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://m/prod/model.tar.gz"

    # Same label, different settings: new names, so nothing existing is silently reused.
    resized = SageMakerTarget(endpoint, sagemaker_role, f"{image}:v2", memory_mb=2048)
    assert deploy_sagemaker(sagemaker, resized, "v2").model_name != updated.model_name


def test_sagemaker_busy_endpoint_and_bad_inputs_are_clear_errors(aws, sagemaker_role):
    from moto.sagemaker.models import sagemaker_backends

    sagemaker, endpoint = aws("sagemaker"), f"busy-{uuid.uuid4().hex[:8]}"
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/service"
    deploy_sagemaker(sagemaker, SageMakerTarget(endpoint, sagemaker_role, f"{image}:v1"), "v1")
    # moto creates endpoints InService at once; make this one look mid-update.
    sagemaker_backends["123456789012"][REGION].endpoints[endpoint].endpoint_status = "Updating"
    with pytest.raises(DeployError, match=f"endpoint '{endpoint}' is Updating; wait"):
        deploy_sagemaker(sagemaker, SageMakerTarget(endpoint, sagemaker_role, f"{image}:v2"), "v2")
    with pytest.raises(ValueError, match=r"version label 'v1\.2'"):
        deploy_sagemaker(
            sagemaker, SageMakerTarget(endpoint, sagemaker_role, f"{image}:v3"), "v1.2"
        )
