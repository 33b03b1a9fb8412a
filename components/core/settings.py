"""Typed settings, read from the environment with the prefix MLOPS_.

Every external endpoint can be overridden here, which is what lets tests point the same
code at moto's server or a local Prefect server on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ACCESS_LOG_MODES = ("all", "errors", "off")
# BentoML's request timeout in the service (traffic.timeout): a request still running after
# it is cancelled with a 504.
SERVE_TIMEOUT_S = 30.0
# How an environment flag says yes or no (a subset of what pydantic reads as booleans).
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_ACCESS_LOG_ALIASES = {**dict.fromkeys(TRUE_WORDS, "all"), **dict.fromkeys(FALSE_WORDS, "off")}


def access_log_mode(value: object) -> str:
    """MLOPS_SERVE_ACCESS_LOG as one of ACCESS_LOG_MODES (booleans as the flag it was)."""
    text = str(value).strip().lower()
    mode = _ACCESS_LOG_ALIASES.get(text, text)
    if mode not in ACCESS_LOG_MODES:
        raise ValueError(
            f"MLOPS_SERVE_ACCESS_LOG={value!r}: expected one of {', '.join(ACCESS_LOG_MODES)} "
            "(or true/false)"
        )
    return mode


class Settings(BaseSettings):
    """Where things live. Built by `Settings()` in a flow or CLI command, never at import."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    store: str = Field(
        "./.mlops/store",
        description="Where artifacts live: a local folder or s3://bucket/prefix.",
    )
    problem: Path = Field(Path("problems/churn.yaml"), description="The default problem file.")
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint override (moto, MinIO, LocalStack); None means AWS."
    )
    aws_region: str = Field("us-east-1", description="Region for the AWS clients.")
    aws_endpoint_url: str | None = Field(
        None,
        description="Endpoint override for Lambda, ECR, CloudWatch, SageMaker and SNS "
        "(moto, LocalStack); None means AWS.",
    )
    s3_max_attempts: int = Field(5, ge=1, description="botocore retries for transient errors.")

    # Serving (read by the BentoML service in each worker).
    model_tag: str = Field("mlops-model:latest", description="BentoML model the service loads.")
    serve_workers: int = Field(2, ge=1, description="BentoML worker processes.")
    serve_access_log: str = Field(
        "errors",
        description="BentoML's access log: 'all' (a line per request), 'errors' (only "
        "responses that are not a success, 2xx or 3xx) or 'off'; true and false mean all "
        "and off. Requests that succeed are counted by the metrics and, for predictions, "
        "stored by the capture.",
    )
    serve_metrics: bool = Field(True, description="BentoML Prometheus metrics at /metrics.")
    serve_tracing: bool = Field(
        False,
        description="BentoML's OpenTelemetry spans for the API routes (configure an exporter "
        "in BentoML's configuration); off, the routes skip the span tree BentoML records.",
    )
    serve_max_records: int = Field(1000, ge=1, description="Records per predict request.")
    serve_max_body_bytes: int = Field(1_048_576, ge=1024, description="Request body limit (413).")
    serve_body_timeout_s: float = Field(
        10.0,
        gt=0,
        lt=SERVE_TIMEOUT_S,
        description="How long a client may take to send a request body before a 408 "
        f"(bentos.guard); under BentoML's request timeout ({SERVE_TIMEOUT_S:g} s), which "
        "would answer 504 instead.",
    )
    serve_api_key: str | None = Field(
        None,
        description="When set, predict and feedback need it in the X-API-Key header (else 401).",
    )
    serve_flag_unknown_categories: bool = Field(
        False, description="Accept unknown categories and flag them instead of answering 422."
    )
    capture: bool = Field(True, description="Capture predictions and feedback to the store.")
    capture_flush_s: float = Field(
        5.0,
        gt=0,
        description="Capture flush interval: a worker killed outright (SIGKILL, OOM) loses "
        "at most the rows answered since its last flush.",
    )
    prediction_id_secret: str | None = Field(None, description="HMAC key for prediction ids.")
    alert_channels: str | None = Field(
        None,
        description="Alert channels as a JSON list, in place of the problem file's "
        '(e.g. [{"type": "slack", "webhook_url_env": "SLACK_URL"}]).',
    )

    @field_validator("serve_access_log", mode="before")
    @classmethod
    def _access_log(cls, value: object) -> str:
        return access_log_mode(value)

    @property
    def store_is_s3(self) -> bool:
        return self.store.startswith("s3://")
