"""The churn problem and an empty local store, for the unit tests that do not make their own."""

from __future__ import annotations

import pytest
from capture_cases import CHURN

from components.core.problem import load_problem
from components.core.store import LocalStore


@pytest.fixture(scope="module")
def spec():
    return load_problem(CHURN)


@pytest.fixture()
def store(tmp_path):
    return LocalStore(tmp_path / "store")
