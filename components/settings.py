"""Typed settings, read from the environment with the prefix MLOPS_.

Every external endpoint can be overridden here, which is what lets tests point the same
code at moto's server or a local Prefect server on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    s3_max_attempts: int = Field(5, ge=1, description="botocore retries for transient errors.")

    @property
    def store_is_s3(self) -> bool:
        return self.store.startswith("s3://")
