"""What the retraining policy reads (lifecycle stage 7): the monitoring history of the
champion, when it was trained, the retraining runs so far and the labels that arrived since;
and the record each retraining run keeps of itself in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from components.capture.feedback import read_feedback
from components.core import keys
from components.core.problem import ProblemSpec
from components.core.store import Store
from components.data.snapshot import read_manifest
from components.model.registry import Registry
from components.monitoring.monitor import report_history
from components.retraining.policy import WindowSignal


@dataclass(frozen=True)
class PolicyInputs:
    champion: str
    signals: list[WindowSignal]
    trained_at: datetime
    retrainings: list[datetime]
    new_labelled_rows: int


def policy_inputs(
    store: Store, registry: Registry, spec: ProblemSpec, champion: str
) -> PolicyInputs:
    """The champion's monitored windows (oldest first), its registration time, the start of
    every retraining run of the problem, and the labels observed after the later of the
    champion's training data cut (its snapshot's lineage ``as_of``, else its creation time)
    and the last run's start."""
    signals = [
        WindowSignal(report.window_start, report.conditions, report.created_at)
        for report in report_history(store, spec.name)
        if report.champion == champion
    ]
    entry = next(v for v in registry.versions() if v.version == champion)
    manifest = read_manifest(store, spec.name, registry.metadata(champion)["snapshot_id"])
    cut = pd.Timestamp((manifest.lineage or {}).get("as_of") or manifest.created_at)
    runs = retraining_starts(store, spec.name)
    if runs:  # a run used every label observed before it started
        cut = max(cut, pd.Timestamp(runs[-1]))
    feedback = read_feedback(store, spec.name)
    return PolicyInputs(
        champion=champion,
        signals=signals,
        trained_at=datetime.fromisoformat(entry.created_at),
        retrainings=runs,
        new_labelled_rows=int((feedback["observed_at"] > cut).sum()),
    )


def retraining_starts(store: Store, problem: str) -> list[datetime]:
    found = (keys.retraining_run_start(k) for k in store.list(keys.retraining_runs_prefix(problem)))
    return sorted(s for s in found if s is not None)


def record_run(
    store: Store, problem: str, started_at: datetime, run_id: str, doc: dict[str, Any]
) -> str:
    """The run's record, created when it starts (create-only) and rewritten by
    :func:`finish_run` with its outcome; returns its key."""
    key = keys.retraining_run(problem, started_at, run_id)
    store.put_json(key, {"started_at": started_at.isoformat(), **doc}, create_only=True)
    return key


def finish_run(store: Store, key: str, outcome: dict[str, Any]) -> None:
    store.put_json(key, {**store.get_json(key), **outcome})
