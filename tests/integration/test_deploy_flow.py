"""The deploy flow's AWS wiring, against moto's server on 127.0.0.1: clients are built from
the settings (MLOPS_AWS_ENDPOINT_URL), the Lambda target gets its first version behind the
alias `live`, and the champion becomes a SageMaker Serverless endpoint."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest

from components.deploy.aws_lambda import ensure_repository
from flows.data_prep import DataPrepParams, GeneratedInput, data_prep
from flows.deployment import DeployParams, deploy
from flows.training import TrainingParams, train

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def _role(iam, service: str) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": f"{service}.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    name = f"{service}-{uuid.uuid4().hex[:8]}"
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


@pytest.fixture
def aws(moto_server, monkeypatch):
    monkeypatch.setenv("MLOPS_AWS_ENDPOINT_URL", moto_server)
    return lambda service: boto3.client(service, endpoint_url=moto_server, region_name="us-east-1")


def test_lambda_first_deploy_goes_live(aws, tmp_path):
    repository = f"mlops/churn-{uuid.uuid4().hex[:6]}"
    image = f"{ensure_repository(aws('ecr'), repository)}:churn-v1"
    function = f"churn-{uuid.uuid4().hex[:6]}"
    result = deploy(
        DeployParams(
            problem=CHURN,
            target="lambda",
            store=str(tmp_path / "store"),
            image_uri=image,
            role_arn=_role(aws("iam"), "lambda"),
            function_name=function,
            repository=repository,
        )
    )
    assert result["outcome"] == "first_deploy"
    alias = aws("lambda").get_alias(FunctionName=function, Name="live")
    assert alias["FunctionVersion"] == "1"
    config = aws("lambda").get_function_configuration(FunctionName=function)
    assert config["Environment"]["Variables"]["MLOPS_STORE"]


def test_lambda_needs_its_parameters(aws, tmp_path):
    with pytest.raises(ValueError, match="--image-uri, --role-arn, --function-name"):
        deploy(DeployParams(problem=CHURN, target="lambda", store=str(tmp_path)))


def test_sagemaker_serves_the_champion(aws, tmp_path):
    store = str(tmp_path / "store")
    data_prep(
        DataPrepParams(
            problem=CHURN, store=store, generated=GeneratedInput(rows=12_000, days=90, seed=30)
        )
    )
    assert train(TrainingParams(problem=CHURN, store=store, trials=0, cv_folds=0)).promoted
    endpoint = f"churn-{uuid.uuid4().hex[:6]}"
    result = deploy(
        DeployParams(
            problem=CHURN,
            target="sagemaker",
            store=store,
            endpoint_name=endpoint,
            image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/churn:v1",
            role_arn=_role(aws("iam"), "sagemaker"),
        )
    )
    assert result["outcome"] == "created"
    described = aws("sagemaker").describe_endpoint_config(
        EndpointConfigName=result["endpoint_config_name"]
    )
    assert "ServerlessConfig" in described["ProductionVariants"][0]
    assert "v1" in result["model_name"]
