"""Capture and the profile job on S3 (moto's server): chunks, ledger, profile and lease
through boto3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from capture_cases import features

from components.core.s3_store import S3Store


@pytest.fixture
def store(s3_bucket: tuple[Any, str]) -> S3Store:
    client, bucket = s3_bucket
    return S3Store(bucket, "capture", client=client)


def test_captured_chunks_are_profiled_once_on_s3(store: S3Store) -> None:
    """Capture and the profile job on S3: chunks, ledger, profile and lease through boto3."""
    from datetime import UTC, datetime

    from components.capture.buffer import Capture
    from components.capture.readers import read_captures
    from components.core.problem import load_problem
    from components.data.profiling import profile_summary
    from components.monitoring.profile_job import (
        ProfileJobBusyError,
        _Lease,
        profile_captures,
        window_profiles,
    )

    spec = load_problem(Path(__file__).parents[2] / "problems" / "churn.yaml")
    now = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
    row = features(3, event_time=now)
    answer = {"model_version": "v1", "probability": 0.5, "label": 1}
    with Capture(store, spec, worker_id="w1", clock=lambda: now) as capture:
        capture.record([row] * 3, [{**answer, "prediction_id": f"p{i}"} for i in range(3)])
    assert len(read_captures(store, "churn")) == 3
    (done,) = profile_captures(store, spec, clock=lambda: now)
    assert (done.chunks, done.rows) == (1, 3)
    (profile,) = window_profiles(store, "churn", now.replace(minute=0))
    assert profile_summary(profile).loc["monthly_charges", "count"] == 3
    assert profile_captures(store, spec, clock=lambda: now)[0].rows == 0
    _Lease(store, "profiles/churn/_lease", 60, lambda: now)
    with pytest.raises(ProfileJobBusyError, match="holds s3://"):
        profile_captures(store, spec, clock=lambda: now)
