"""The deploy family without AWS: the canary decision, input validation, and the wait for
Lambda (moto reports every update finished at once, so the polling is tested on a small
fake)."""

from __future__ import annotations

import pytest

from components.deploy.aws_lambda import LambdaDeployment, LambdaTarget, deploy_image
from components.deploy.base import DeployError
from components.deploy.canary import CanaryPolicy, CanaryVerdict, judge_canary, start_canary
from components.deploy.sagemaker import SageMakerDeployment, SageMakerTarget

ROLE = "arn:aws:iam::123456789012:role/service"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/service:v1"


def judge(errors: int, invocations: int, rate: float = 0.01, minimum: int = 100):
    return judge_canary(errors, invocations, max_error_rate=rate, min_invocations=minimum)


def test_healthy_canary_is_promoted_with_its_numbers():
    assert judge(1, 200) == CanaryVerdict(
        True, 1, 200, "promote: error rate 0.50% (1/200 invocations) is within the limit 1.00%"
    )


def test_rate_exactly_at_the_limit_promotes_and_above_rolls_back():
    assert judge(2, 200).promote
    verdict = judge(3, 200)
    assert verdict == CanaryVerdict(
        False, 3, 200, "roll back: error rate 1.50% (3/200 invocations) exceeds the limit 1.00%"
    )
    assert verdict.conclusive


def test_too_little_traffic_is_inconclusive_and_not_promoted():
    verdict = judge(0, 99)
    assert not verdict.promote
    assert not verdict.conclusive
    assert verdict.reason == (
        "not enough traffic: 99 invocations of the new version, at least 100 are needed to "
        "judge it (0 errors so far)"
    )


def test_errors_beyond_the_whole_budget_roll_back_before_enough_traffic():
    # 1% of 100 invocations allows 1 error; 2 errors fail even if the next 90 succeed.
    assert judge(1, 10).conclusive is False
    verdict = judge(2, 10)
    assert (verdict.promote, verdict.conclusive) == (False, True)
    assert verdict.reason == (
        "roll back: 2 errors in only 10 invocations already exceed the limit 1.00% of the 100 "
        "invocations required (at most 1)"
    )


def test_no_minimum_and_no_traffic_promotes():
    assert judge(0, 0, minimum=0).promote


@pytest.mark.parametrize(
    ("errors", "invocations", "rate", "minimum", "message"),
    [
        (0, 10, 1.5, 1, "max_error_rate 1.5 must be between 0 and 1"),
        (0, 10, float("nan"), 1, "max_error_rate nan"),
        (0, 10, 0.01, -1, "min_invocations -1 must not be negative"),
        (-1, 10, 0.01, 1, "counts must not be negative"),
    ],
)
def test_judge_rejects_bad_inputs(errors, invocations, rate, minimum, message):
    with pytest.raises(ValueError, match=message):
        judge(errors, invocations, rate, minimum)


@pytest.mark.parametrize("weight", [0, 1, 1.5, -0.1])
def test_canary_weight_must_be_strictly_between_0_and_1(weight):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        CanaryPolicy(weight=weight)
    target = LambdaTarget("svc", ROLE, "mlops/service")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        start_canary(object(), target, "2", weight)  # refused before any AWS call


def test_canary_policy_rejects_negative_waits():
    with pytest.raises(ValueError, match="poll_seconds must be positive"):
        CanaryPolicy(poll_seconds=0)
    with pytest.raises(ValueError, match="must not be negative"):
        CanaryPolicy(bake_seconds=-1)


def test_start_canary_needs_a_published_version():
    target = LambdaTarget("svc", ROLE, "mlops/service")
    with pytest.raises(ValueError, match=r"'\$LATEST' is not a published Lambda version"):
        start_canary(object(), target, "$LATEST", 0.1)


def test_lambda_target_lists_every_problem():
    with pytest.raises(ValueError) as raised:
        LambdaTarget(
            "bad name!",
            "not-an-arn",
            "Upper",
            alias="7",
            memory_mb=64,
            timeout_s=901,
            environment={"AWS_REGION": "x", "1X": "y"},
            architecture="sparc",
        )
    message = str(raised.value)
    for expected in (
        "function_name must be 1-64",
        "alias '7' must be",
        "role_arn 'not-an-arn'",
        "repository 'Upper'",
        "memory_mb=64 is outside Lambda's range 128..10240",
        "timeout_s=901 is outside Lambda's range 1..900",
        "'AWS_REGION' is reserved by Lambda",
        "environment name '1X'",
        "architecture 'sparc'",
    ):
        assert expected in message


def test_lambda_memory_bounds_are_inclusive():
    assert LambdaTarget("svc", ROLE, "mlops/service", memory_mb=128).memory_mb == 128
    assert LambdaTarget("svc", ROLE, "mlops/service", memory_mb=10240).memory_mb == 10240
    with pytest.raises(ValueError, match="memory_mb=10241"):
        LambdaTarget("svc", ROLE, "mlops/service", memory_mb=10241)


def test_sagemaker_target_validation():
    assert SageMakerTarget("churn", ROLE, IMAGE).memory_mb == 2048
    with pytest.raises(ValueError) as raised:
        SageMakerTarget("churn_prod", ROLE, "no-tag", "http://x", memory_mb=1500, max_concurrency=0)
    message = str(raised.value)
    for expected in (
        "endpoint_name must be",
        "image_uri 'no-tag' needs a tag",
        "must be an s3:// URL",
        "memory_mb=1500 must be one of (1024, 2048, 3072, 4096, 5120, 6144)",
        "max_concurrency=0 is outside Serverless's range 1..200",
    ):
        assert expected in message


class FakeLambda:
    """Answers get_function_configuration with the next (State, LastUpdateStatus) given."""

    def __init__(self, *states: tuple[str, str | None], package: str = "Image") -> None:
        self.states, self.package, self.calls = list(states), package, []

    def get_function_configuration(self, **kwargs) -> dict:
        state, update = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {
            "PackageType": self.package,
            "State": state,
            "LastUpdateStatus": update,
            "LastUpdateStatusReason": "image manifest is for arm64",
            "RevisionId": "rev-7",
            "Role": ROLE,
            "MemorySize": 2048,
            "Timeout": 30,
        }

    def update_function_code(self, **kwargs) -> dict:
        self.calls.append(("update_function_code", kwargs))
        return {}

    def publish_version(self, **kwargs) -> dict:
        self.calls.append(("publish_version", kwargs))
        return {"Version": "3"}


def test_deploy_image_waits_for_the_update_then_publishes_that_revision():
    fake, slept = (
        FakeLambda(
            ("Active", "Successful"), *[("Active", "InProgress")] * 2, ("Active", "Successful")
        ),
        [],
    )
    target = LambdaTarget("svc", ROLE, "mlops/service")
    assert deploy_image(fake, target, IMAGE, sleep=slept.append, poll_seconds=5) == "3"
    assert slept == [5, 5]
    assert [name for name, _ in fake.calls] == ["update_function_code", "publish_version"]
    assert fake.calls[1][1]["RevisionId"] == "rev-7"


def test_deploy_image_reports_a_failed_update_with_lambdas_reason():
    fake = FakeLambda(("Active", "Successful"), ("Active", "Failed"))
    target = LambdaTarget("svc", ROLE, "mlops/service")
    with pytest.raises(DeployError, match=r"failed to deploy .*image manifest is for arm64"):
        deploy_image(fake, target, IMAGE, sleep=lambda s: None)
    assert [name for name, _ in fake.calls] == ["update_function_code"]  # nothing published


def test_deploy_image_gives_up_after_max_polls():
    fake, slept = FakeLambda(("Active", "Successful"), ("Pending", "InProgress")), []
    target = LambdaTarget("svc", ROLE, "mlops/service")
    with pytest.raises(DeployError, match=r"still State=Pending.*after 3 polls"):
        deploy_image(fake, target, IMAGE, sleep=slept.append, max_polls=3)
    assert len(slept) == 3


def test_deploy_image_refuses_to_replace_a_zip_function():
    target = LambdaTarget("svc", ROLE, "mlops/service")
    with pytest.raises(ValueError, match="is a Zip function"):
        deploy_image(FakeLambda(("Active", None), package="Zip"), target, IMAGE)
    with pytest.raises(ValueError, match="must name an ECR image with a tag or digest"):
        deploy_image(FakeLambda(("Active", None)), target, "service")


def test_deployments_are_frozen_and_serialise_to_plain_dicts():
    verdict = CanaryVerdict(True, 0, 200, "promote")
    done = LambdaDeployment(
        outcome="promoted",
        function="svc",
        alias="live",
        image_uri=IMAGE,
        previous_version="1",
        new_version="2",
        live_version="2",
        verdict=verdict,
        reasons=("canary", "promoted"),
    )
    assert done.as_dict()["verdict"] == {
        "promote": True,
        "errors": 0,
        "invocations": 200,
        "reason": "promote",
        "conclusive": True,
    }
    with pytest.raises(AttributeError):
        done.outcome = "rolled_back"  # type: ignore[misc]
    made = SageMakerDeployment(
        outcome="created",
        endpoint_name="churn",
        model_name="churn-v1-abc",
        endpoint_config_name="churn-v1-abc",
        previous_endpoint_config_name=None,
    )
    assert made.as_dict()["outcome"] == "created"
