"""Known answers for a packaged model's smoke test (lifecycle stage 5): request records
drawn from a version's own snapshot and the registry model's predictions on them, computed
through pandas, a different path from the service's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.core.problem import ProblemSpec
from components.core.store import Store
from components.data.snapshot import read_snapshot
from components.model import training
from components.model.registry import Registry


@dataclass(frozen=True)
class KnownAnswers:
    """Request records and, aligned with them, the probability (classification) or value
    (regression) the registry model gives each."""

    records: list[dict[str, Any]]
    expected: np.ndarray


def known_answers(
    store: Store, registry: Registry, spec: ProblemSpec, version: str, rows: int
) -> KnownAnswers:
    """Up to ``rows`` rows sampled (seeded) from the snapshot ``version`` was trained on."""
    meta = registry.metadata(version)
    frame = read_snapshot(store, spec.name, meta["snapshot_id"])
    sample = frame.sample(n=min(rows, len(frame)), random_state=0)
    booster = training.load_model(registry.read_file(version, "model.ubj"))
    expected = training.predict(booster, sample, spec)
    return KnownAnswers([request_record(row, spec) for _, row in sample.iterrows()], expected)


def request_record(row: pd.Series, spec: ProblemSpec) -> dict[str, Any]:
    """The input features of one row as a JSON request carries them: plain Python values
    of each feature's declared type, None for a missing value."""
    out: dict[str, Any] = {}
    for name in spec.input_features:
        value = row[name]
        kind = spec.features[name].type
        if pd.isna(value):
            out[name] = None
        elif kind == "int":
            out[name] = int(value)
        elif kind == "float":
            out[name] = float(value)
        elif kind == "bool":
            out[name] = bool(value)
        else:
            out[name] = value
    return out
