"""`mlops package`, `mlops deploy` and `mlops score`: ship the champion and batch-score."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli._common import (
    PROBLEM_OPTION,
    STORE_OPTION,
    _fail,
    _ship_errors,
    _user_errors,
    console,
)

app = typer.Typer()


@app.command()
def package(
    version: str | None = typer.Option(None, help="Registry version (default: the champion)."),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Build the bento, smoke-test it on 127.0.0.1, then upload it to the store.

    The bento's generated Dockerfile is printed; with a Docker engine,
    `bentoml containerize <bento tag>` builds the image.
    """
    from flows.packaging import PackageParams
    from flows.packaging import package as package_flow

    try:
        result = package_flow(PackageParams(problem=problem, version=version, store=store))
    except (*_user_errors(), *_ship_errors()) as exc:
        raise _fail(exc) from None
    console.print(f"[green]{result.bento_tag}[/] ({result.model_tag}) stored at {result.bento_key}")
    for line in result.smoke:
        console.print(f"  smoke test: {line}")
    console.print(f"Dockerfile: {result.dockerfile}")
    console.print(f"container (needs Docker): bentoml containerize {result.bento_tag}")


@app.command()
def deploy(
    target: str = typer.Option("local", help="local | lambda | sagemaker"),
    action: str = typer.Option(
        "start", help="local only: start | status | stop | replace (the running service, same URL)"
    ),
    version: str | None = typer.Option(None, help="Registry version (default: the champion)."),
    port: int | None = typer.Option(None, help="local: port (default: a free one)."),
    workers: int = typer.Option(2, min=1, help="local: BentoML workers."),
    state_file: Path | None = typer.Option(
        None, help="local: the server's state file (default: <store>/serve/<problem>.json)."
    ),
    image_uri: str | None = typer.Option(None, help="lambda/sagemaker: the image to run."),
    role_arn: str | None = typer.Option(None, help="lambda/sagemaker: execution role ARN."),
    function_name: str | None = typer.Option(None, help="lambda: function name."),
    repository: str | None = typer.Option(None, help="lambda: ECR repository name."),
    canary_weight: float = typer.Option(0.1, help="lambda: share of traffic to the canary."),
    max_error_rate: float = typer.Option(0.01, help="lambda: error rate that rolls back."),
    min_invocations: int = typer.Option(100, help="lambda: invocations needed to judge."),
    bake_seconds: float = typer.Option(600, help="lambda: how long the canary runs."),
    poll_seconds: float = typer.Option(60, help="lambda: seconds between canary checks."),
    endpoint_name: str | None = typer.Option(None, help="sagemaker: endpoint name."),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Serve the champion locally, or roll it out to AWS Lambda or SageMaker Serverless."""
    import json

    from components.deploy.canary import CanaryPolicy
    from flows.deployment import DeployParams
    from flows.deployment import deploy as deploy_flow

    try:
        canary = CanaryPolicy(
            weight=canary_weight,
            max_error_rate=max_error_rate,
            min_invocations=min_invocations,
            bake_seconds=bake_seconds,
            poll_seconds=poll_seconds,
        )
        params = DeployParams(
            problem=problem,
            target=target,
            action=action,
            version=version,
            port=port,
            workers=workers,
            state_file=state_file,
            image_uri=image_uri,
            role_arn=role_arn,
            function_name=function_name,
            repository=repository,
            canary=canary,
            endpoint_name=endpoint_name,
            store=store,
        )
        result = deploy_flow(params)
    except (*_user_errors(), *_ship_errors()) as exc:
        raise _fail(exc) from None
    console.print_json(json.dumps(result, default=str))


@app.command()
def score(
    input: str | None = typer.Option(
        None, "--input", "-i", help="CSV/Parquet file or s3://bucket/key to score."
    ),
    snapshot: str | None = typer.Option(None, help="Score a snapshot from the store instead."),
    version: str | None = typer.Option(None, help="Registry version (default: the champion)."),
    output: str = typer.Option(
        "scores", help="A local .parquet file, or a key prefix in the store."
    ),
    chunk_rows: int = typer.Option(100_000, min=1, help="Rows per chunk (bounds memory)."),
    flag_unknown_categories: bool = typer.Option(
        False, help="Score unknown categories as missing and flag them, instead of rejecting."
    ),
    problem: Path = PROBLEM_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Batch-score a file or snapshot in chunks, with the service's model and validation."""
    from flows.batch_scoring import BatchScoringParams, batch_score

    try:
        summary = batch_score(
            BatchScoringParams(
                problem=problem,
                input=input,
                snapshot_id=snapshot,
                version=version,
                output=output,
                chunk_rows=chunk_rows,
                flag_unknown_categories=flag_unknown_categories,
                store=store,
            )
        )
    except (*_user_errors(), ValueError) as exc:
        raise _fail(exc) from None
    console.print(summary.to_markdown(), highlight=False)
