"""infra/aws/lambda.yaml: cfn-lint finds nothing, and the security-relevant structure holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import REGIONS, ManualArgs, decode_str, lint_file

TEMPLATE = Path(__file__).parents[3] / "infra" / "aws" / "lambda.yaml"
ROUTES = {"POST /predict", "POST /feedback", "GET /metadata", "GET /readyz", "GET /healthz"}
# Every region, errors, warnings and informational findings. Only cfn-lint's experimental
# rules are left out (their one finding, I4010, asks for free-text architecture metadata).
LINT = ManualArgs(include_checks=["I"], regions=REGIONS)


def _findings(path: Path, config: ManualArgs = LINT) -> list[str]:
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in lint_file(path, config)]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    return decoded


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def _one(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = _of_type(resources, kind).values()
    return found["Properties"]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.slow  # about 4 s: every region's resource specs
def test_cfn_lint_finds_nothing_in_any_region():
    assert _findings(TEMPLATE) == []


def test_cfn_lint_does_catch_a_broken_template(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("PackageType: Image", "PackageType: Box"))
    findings = _findings(broken, ManualArgs(regions=["us-east-1"]))
    assert any(finding.startswith("E3030") for finding in findings)


def test_parameters_are_per_stage(template):
    parameters = template["Parameters"]
    assert parameters["Stage"]["AllowedValues"] == ["dev", "staging", "prod"]
    for name in ("ImageUri", "ModelBucketName", "MemorySize", "CanaryPercentage"):
        assert name in parameters
    assert (parameters["MemorySize"]["MinValue"], parameters["MemorySize"]["MaxValue"]) == (
        128,
        10240,
    )


def test_bucket_is_encrypted_versioned_and_private(resources):
    bucket = _one(resources, "AWS::S3::Bucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_bucket_policy_denies_requests_without_tls(resources):
    statements = _one(resources, "AWS::S3::BucketPolicy")["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(deny[0]["Resource"]) == 2  # the bucket and its objects


def _function_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    function = _one(resources, "AWS::Lambda::Function")
    role = resources[function["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert "ManagedPolicyArns" not in role  # everything it may do is spelled out here
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def test_function_role_is_least_privilege(resources):
    statements = _function_statements(resources)
    actions = [a for s in statements for a in _listed(s["Action"])]
    assert not [a for a in actions if "*" in a]
    assert all(s["Effect"] == "Allow" for s in statements)
    assert not [s for s in statements if "*" in _listed(s["Resource"])]
    by_action = {a: s for s in statements for a in _listed(s["Action"])}
    assert set(by_action) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
    }
    assert by_action["logs:PutLogEvents"]["Resource"] == {"Fn::GetAtt": ["FunctionLogGroup", "Arn"]}
    assert by_action["s3:GetObject"]["Resource"] == {"Fn::Sub": "${ModelBucket.Arn}/models/*"}
    assert [r["Fn::Sub"] for r in by_action["s3:PutObject"]["Resource"]] == [
        "${ModelBucket.Arn}/captures/*",
        "${ModelBucket.Arn}/feedback/*",
    ]
    prefixes = by_action["s3:ListBucket"]["Condition"]["StringLike"]["s3:prefix"]
    assert prefixes == ["models/", "models/*"]


def test_function_runs_the_image_with_the_bucket_as_store(resources):
    function = _one(resources, "AWS::Lambda::Function")
    assert function["PackageType"] == "Image"
    assert function["Code"] == {"ImageUri": {"Ref": "ImageUri"}}
    assert function["Environment"]["Variables"]["MLOPS_STORE"] == {"Fn::Sub": "s3://${ModelBucket}"}
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": "FunctionLogGroup"}}
    assert _one(resources, "AWS::Logs::LogGroup")["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_alias_live_shifts_traffic_through_a_codedeploy_canary(resources):
    (alias,) = _of_type(resources, "AWS::Lambda::Alias").values()
    assert alias["Properties"]["Name"] == "live"
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    group = resources[update["DeploymentGroupName"]["Ref"]]["Properties"]
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    canary = _one(resources, "AWS::CodeDeploy::DeploymentConfig")["TrafficRoutingConfig"]
    assert canary["Type"] == "TimeBasedCanary"
    assert _of_type(resources, "AWS::Lambda::Version")["FunctionVersion"]["DeletionPolicy"] == (
        "Retain"
    )


def test_canary_alarm_reads_the_same_metrics_as_the_canary(resources):
    metrics = _one(resources, "AWS::CloudWatch::Alarm")["Metrics"]
    stats = {
        m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]
        for m in metrics
        if "MetricStat" in m
    }
    assert set(stats) == {"Errors", "Invocations"}
    for stat in stats.values():
        assert stat["Metric"]["Namespace"] == "AWS/Lambda"
        names = [d["Name"] for d in stat["Metric"]["Dimensions"]]
        assert names == ["FunctionName", "Resource", "ExecutedVersion"]


def test_http_api_routes_every_endpoint_to_the_alias(resources):
    routes = _of_type(resources, "AWS::ApiGatewayV2::Route").values()
    assert {r["Properties"]["RouteKey"] for r in routes} == ROUTES
    integration = _one(resources, "AWS::ApiGatewayV2::Integration")
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["IntegrationUri"] == {"Ref": "LiveAlias"}
    assert {r["Properties"]["Target"]["Fn::Sub"] for r in routes} == {
        "integrations/${LiveIntegration}"
    }
    permission = _one(resources, "AWS::Lambda::Permission")
    assert permission["FunctionName"] == {"Ref": "LiveAlias"}
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert "${HttpApi}" in permission["SourceArn"]["Fn::Sub"]


def test_outputs(template):
    assert {"ApiUrl", "ModelBucketName", "FunctionArn"} <= set(template["Outputs"])
