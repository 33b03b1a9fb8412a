"""A small real model on generated churn data, trained once for the modules that need one,
and a local store holding its snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from components.core.problem import ProblemSpec, load_problem
from components.core.store import LocalStore
from components.data import datagen
from components.data.snapshot import write_snapshot
from components.data.validation import validate_frame
from components.model import training

CHURN = Path(__file__).parents[3] / "problems" / "churn.yaml"
PROFILE = b"reference profile bytes"
FAST = training.TrainParams(num_boost_round=40, early_stopping_rounds=10, learning_rate=0.3)


@dataclass(frozen=True)
class Trained:
    spec: ProblemSpec
    rows: pd.DataFrame  # the validated rows, as the snapshot holds them
    parts: training.Split
    model: training.TrainedModel
    params: training.TrainParams


@pytest.fixture(scope="session")
def trained() -> Trained:
    spec = load_problem(CHURN)
    config = datagen.GeneratorConfig(rows=3000, days=30, start=date(2026, 1, 1), seed=5)
    rows = validate_frame(datagen.generate(config).frame.drop(columns=["label_time"]), spec).valid
    parts = training.split_by_time(rows, spec)
    model = training.train_model(parts.train, parts.validation, spec, FAST, seed=1, nthread=1)
    return Trained(spec, rows, parts, model, FAST)


@dataclass(frozen=True)
class Snapshot:
    store: LocalStore
    snapshot_id: str
    profile: bytes  # its reference profile


@pytest.fixture
def snapshot(tmp_path, trained) -> Snapshot:
    """A store holding the trained rows as a snapshot."""
    store = LocalStore(tmp_path / "store")
    manifest = write_snapshot(
        store,
        trained.spec,
        trained.rows,
        source="generated",
        profile=PROFILE,
        quarantined_rows=0,
        quarantine_key=None,
        validation_key=None,
        now=datetime(2026, 2, 1, tzinfo=UTC),
    )
    return Snapshot(store, manifest.snapshot_id, PROFILE)
