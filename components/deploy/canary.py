"""A weighted canary on a Lambda alias: start it, read its errors, judge it, finish it.

The ``live`` alias keeps its stable version and sends a fraction of the traffic to the new
one (weighted alias routing); the new version is judged on Lambda's CloudWatch metrics for
that version through the alias, then promoted (the alias moves to it) or rolled back (the
alias stays). :func:`run_canary` runs the whole watch; every wait goes through an injected
``sleep`` and ``clock``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from components.deploy.base import DeployError, _call, _code, _failure

if TYPE_CHECKING:
    from components.deploy.aws_lambda import LambdaTarget

METRIC_PERIOD_S = 60  # Lambda publishes its metrics at one-minute resolution.
_VERSION = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class CanaryVerdict:
    promote: bool
    errors: int
    invocations: int
    reason: str
    conclusive: bool = True  # False: too little traffic to tell yet; waiting may help


@dataclass(frozen=True)
class CanaryPolicy:
    """How a canary runs and is judged; validated on construction.

    The canary gets ``weight`` of the traffic and is looked at every ``poll_seconds``: a
    conclusive failure rolls back at once; a healthy canary is promoted once
    ``bake_seconds`` have passed; while there is not enough traffic the watch goes on until
    ``max_wait_seconds`` (None: ``bake_seconds``) and then rolls back.
    """

    weight: float = 0.1
    max_error_rate: float = 0.01
    min_invocations: int = 100
    bake_seconds: float = 600.0
    poll_seconds: float = 60.0
    max_wait_seconds: float | None = None

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


@dataclass(frozen=True)
class CanaryRun:
    """How a watched canary ended: ``outcome`` is "promoted" or "rolled_back"."""

    outcome: str
    live_version: str
    verdict: CanaryVerdict
    reasons: tuple[str, ...]


# ----------------------------------------------------------------------------- checks


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


# ------------------------------------------------------------------------------ alias


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


# ----------------------------------------------------------------------------- stages


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


def _metric_queries(target: LambdaTarget, version: str) -> list[dict[str, Any]]:
    dimensions = [
        {"Name": "FunctionName", "Value": target.function_name},
        {"Name": "Resource", "Value": f"{target.function_name}:{target.alias}"},
        {"Name": "ExecutedVersion", "Value": version},
    ]
    return [
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


def canary_error_rate(
    cloudwatch: Any, target: LambdaTarget, version: str, start: datetime, end: datetime
) -> tuple[int, int]:
    """(errors, invocations) of ``version`` served through the alias between start and end.

    Reads the ``AWS/Lambda`` metrics ``Errors`` and ``Invocations`` with the dimensions
    Lambda publishes per executed version of an alias: FunctionName, Resource
    ("<function>:<alias>") and ExecutedVersion, summed over the window. Lambda's metrics
    arrive late, so a window that ends "now" misses the most recent traffic.
    """
    _check_version(version)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("canary window times must be timezone-aware (e.g. datetime.now(UTC))")
    if end <= start:
        raise ValueError(f"canary window ends ({end}) before it starts ({start})")
    totals = {"errors": 0.0, "invocations": 0.0}
    kwargs: dict[str, Any] = {
        "MetricDataQueries": _metric_queries(target, version),
        "StartTime": start,
        "EndTime": end,
    }
    while True:
        page = _call(
            cloudwatch.get_metric_data, f"reading metrics of {target.function_name!r}", **kwargs
        )
        for result in page.get("MetricDataResults", []):
            totals[result["Id"]] += sum(result.get("Values", []))
        if not page.get("NextToken"):
            return round(totals["errors"]), round(totals["invocations"])
        kwargs["NextToken"] = page["NextToken"]


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


# ------------------------------------------------------------------------------ watch


def run_canary(
    lambda_client: Any,
    cloudwatch: Any,
    target: LambdaTarget,
    stable: str,
    new_version: str,
    policy: CanaryPolicy,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime],
) -> CanaryRun:
    """Start the canary, watch it under ``policy``, and promote or roll back.

    If watching fails, the canary is rolled back before the error is raised, so a version
    nobody could judge never keeps serving.
    """
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
    return CanaryRun(
        outcome="promoted" if verdict.promote else "rolled_back",
        live_version=live,
        verdict=verdict,
        reasons=(opening, *history, closing),
    )


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


__all__ = [
    "METRIC_PERIOD_S",
    "CanaryPolicy",
    "CanaryRun",
    "CanaryVerdict",
    "canary_error_rate",
    "finish_canary",
    "judge_canary",
    "run_canary",
    "start_canary",
]
