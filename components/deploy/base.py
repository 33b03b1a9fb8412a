"""What every deploy target shares: the error it raises when AWS does not reach the state a
deploy needs, the typed result every deploy returns, and the boto3 error helpers.

Nothing here calls AWS or blocks: the clients are passed in by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/\S+$")
_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
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


class DeployError(RuntimeError):
    """AWS did not reach the state a deploy needs (an update failed, a wait timed out, a
    resource changed under us). The message names the resource and what to do."""


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """The result of one deploy. ``outcome`` names what happened (each target lists its
    values); :meth:`as_dict` gives a JSON-ready dict for printing or storing."""

    outcome: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------- AWS errors


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", "")) or str(err)


def _failure(what: str, err: ClientError, hint: str = "") -> Exception:
    """ValueError when AWS says the request was wrong (the caller can fix it), else
    DeployError; the message names the resource, AWS's code and message, and a hint."""
    text = f"{what}: {_code(err)}: {_message(err)}" + (f" ({hint})" if hint else "")
    return ValueError(text) if _code(err) in _CALLER_MISTAKES else DeployError(text)


def _call(method: Callable[..., Any], what: str, **kwargs: Any) -> Any:
    """``method(**kwargs)``, with a ClientError turned into :func:`_failure`'s error."""
    try:
        return method(**kwargs)
    except ClientError as err:
        raise _failure(what, err) from err


# ------------------------------------------------------------------- target validation


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


__all__ = ["ROLE_ARN", "DeployError", "Deployment", "utc_now"]
