"""Shared fixtures. Prefect runs against one temporary server for the whole session."""

from __future__ import annotations

import os

import pytest

# No telemetry from the temporary Prefect server: tests only ever contact 127.0.0.1.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect API (SQLite in a temp folder), started once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
