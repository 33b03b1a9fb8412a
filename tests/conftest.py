"""Shared fixtures. Prefect runs against one temporary server for the whole session;
BentoML keeps its models and bentos in a temporary home, never the developer's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

# No telemetry from the temporary Prefect server: tests only ever contact 127.0.0.1.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Its start-up can pass Prefect's 20 s limit on a busy 2-core machine (as the Makefile says).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
# BentoML reads its home when first imported: point it at a throwaway folder before that.
_BENTOML_HOME = tempfile.mkdtemp(prefix="bentoml-home-")
os.environ["BENTOML_HOME"] = _BENTOML_HOME
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
MODEL_TAG = "mlops-model:test"
ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_BENTOML_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt-get when missing and allowed (root),
    as the CI machine starts without it."""
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        for commands in ([install], [["apt-get", "update", "-q"], install]):
            for command in commands:
                subprocess.run(command, capture_output=True, timeout=900, check=False)
            if path := shutil.which("chromium"):
                break
    if path is None:
        pytest.skip("Debian's chromium is missing and apt-get could not install it")
    return path


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect API (SQLite in a temp folder), started once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass(frozen=True)
class ServedModel:
    tag: str
    folder: Path
    records: list[dict]  # 100 valid request records
    expected: list[float]  # the model's own predictions for them (pandas path)
    threshold: float


@pytest.fixture(scope="session")
def served_model(tmp_path_factory) -> ServedModel:
    """A small trained model laid out as a packaged version and imported into BentoML."""
    import bentoml

    from components.core import provenance
    from components.core.problem import load_problem
    from components.data import datagen
    from components.data.validation import validate_frame
    from components.model import training
    from components.model.known_answers import request_record

    spec = load_problem(ROOT / "problems" / "churn.yaml")
    config = datagen.GeneratorConfig(rows=8000, days=60, start=date(2026, 1, 1), seed=12)
    valid = validate_frame(datagen.generate(config).frame.drop(columns=["label_time"]), spec).valid
    parts = training.split_by_time(valid, spec)
    model = training.train_model(
        parts.train, parts.validation, spec, training.TrainParams(num_boost_round=60), seed=1
    )
    files = {
        "model.ubj": training.model_bytes(model.booster),
        "problem.json": spec.model_dump_json().encode(),
    }
    metadata = {
        "version": "v7",
        "problem": spec.name,
        "threshold": 0.3,
        "snapshot_id": "test",
        "metrics": {"roc_auc": 0.8},
        "files": {
            n: {"sha256": provenance.sha256_hex(d), "bytes": len(d)} for n, d in files.items()
        },
    }
    folder = tmp_path_factory.mktemp("model")
    with bentoml.models.create(MODEL_TAG) as bento_model:
        for target in (folder, Path(bento_model.path)):
            for name, data in files.items():
                (target / name).write_bytes(data)
            (target / "metadata.json").write_text(json.dumps(metadata))
    rows = parts.test.head(100)
    records = [request_record(row, spec) for _, row in rows.iterrows()]
    expected = training.predict(model.booster, rows, spec).tolist()
    return ServedModel(MODEL_TAG, folder, records, expected, 0.3)
