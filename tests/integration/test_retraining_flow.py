"""The retraining flow on a real (test) Prefect API: after a concept drift the policy asks,
the challenger beats the champion on the held-out window and is promoted, with its lineage,
card and references; a refused challenger alerts with the gate's reasons; two runs at once
promote once."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from retraining_cases import Timeline, problem_file

from components.core.problem import load_problem
from components.core.store import LocalStore
from components.data.snapshot import read_manifest
from components.model.registry import Registry
from components.monitoring.monitor import champion_references
from flows.retraining import RetrainingParams, retrain

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

CHURN = load_problem(Path(__file__).parents[2] / "problems" / "churn.yaml")


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """A store after 12 days of production, a concept drift from day 5 (labels 3 days late):
    the champion v1's performance alert has fired."""
    folder = tmp_path_factory.mktemp("drifted")
    timeline = Timeline(LocalStore(folder / "store"), CHURN, scenario="concept")
    timeline.train_champion()
    reports = timeline.run_days(0, 12)
    assert "performance-degraded" in reports[-1].conditions
    return folder / "store", timeline.now


@pytest.fixture()
def store(drifted, tmp_path):
    """A copy of the drifted store of its own for each test."""
    source, _ = drifted
    shutil.copytree(source, tmp_path / "store")
    return LocalStore(tmp_path / "store")


def _params(store, tmp_path, now, sections=None, **changes) -> RetrainingParams:
    problem = problem_file(CHURN, tmp_path, **(sections or {}))
    return RetrainingParams(
        problem=problem, store=str(store.root), now=now, **{"trials": 2, "seed": 1, **changes}
    )


def test_a_concept_drift_retrains_and_promotes_a_fair_winner(drifted, store, tmp_path):
    _, now = drifted
    result = retrain(_params(store, tmp_path, now))
    assert result.retrain and any("performance-degraded" in r for r in result.reasons)
    assert result.outcome == "promoted", result.gate_reasons
    assert (result.champion_before, result.champion_after) == ("v1", "v2")
    assert result.metrics["roc_auc"] > result.champion_metrics["roc_auc"]
    registry = Registry(store, "churn")
    assert registry.alias("champion") == "v2"
    # Lineage: the parent is v1's snapshot; the comparison ran on the held-out rows.
    metadata = registry.metadata("v2")
    manifest = read_manifest(store, "churn", metadata["snapshot_id"])
    assert manifest.lineage["parent_snapshot"] == registry.metadata("v1")["snapshot_id"]
    assert metadata["split"]["test"] == manifest.lineage["holdout"]["rows"] >= 1000
    assert "held out" in metadata["evaluated_on"]
    card = registry.read_file("v2", "model_card.md").decode()
    assert "## Shadow check" in card and "## Evaluated on" in card
    assert any(r.startswith("pass: shadow") for r in result.gate_reasons)
    # Monitoring now compares with v2's references: its own training data's profile.
    references = champion_references(registry, CHURN)
    assert references.version == "v2"
    assert registry.read_file("v2", "reference_profile.bin") == store.get_bytes(
        manifest.profile_key
    )
    record = json.loads(store.get_bytes(result.run.split(str(store.root) + "/")[-1]))
    assert record["outcome"] == "promoted" and record["version"] == "v2"
    # The same day again: v2 has no monitored window yet, and the cooldown would hold.
    again = retrain(_params(store, tmp_path, now))
    assert not again.retrain and again.version is None


def test_a_refused_challenger_alerts_with_the_gate_reasons(drifted, store, tmp_path):
    _, now = drifted
    result = retrain(_params(store, tmp_path, now, {"metric": {"champion_margin": 0.5}}))
    assert result.outcome == "refused" and not result.promoted
    assert Registry(store, "churn").alias("champion") == "v1"
    assert [v.status for v in Registry(store, "churn").versions()] == ["registered", "rejected"]
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [a["condition"] for a in alerts] == ["promotion-refused"]
    assert any("required margin" in reason for reason in alerts[0]["reasons"])
    assert "v1 stays" in alerts[0]["title"]


def test_the_shadow_check_can_block_a_promotion(drifted, store, tmp_path):
    _, now = drifted
    params = _params(store, tmp_path, now, {"retraining": {"shadow": {"max_changed_labels": 0.0}}})
    result = retrain(params)
    assert result.outcome == "refused"
    assert any(r.startswith("FAIL: shadow") for r in result.gate_reasons)
    assert result.shadow["changed_labels"] > 0


def test_two_runs_at_once_promote_once(drifted, store, tmp_path):
    _, now = drifted
    params = [_params(store, tmp_path, now, reason=f"run {i}", seed=i) for i in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(retrain, params))
    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count("promoted") == 1, [r.gate_reasons for r in results]
    assert set(outcomes) <= {"promoted", "superseded", "refused"}
    history = Registry(store, "churn").history("champion")
    assert [e.to_version for e in history][:1] == ["v1"] and len(history) == 2


def test_mlops_retrain_prints_the_decision(store, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    problem = problem_file(CHURN, tmp_path)
    base = ["retrain", "--problem", str(problem), "--store", str(store.root), "--trials", "0"]
    done = CliRunner().invoke(app, [*base, "--reason", "new pricing launched"])
    assert done.exit_code == 0, done.output
    assert "policy: retrain: asked by hand: new pricing launched" in done.output
    assert "snapshot " in done.output and "v2" in done.output
    empty = CliRunner().invoke(app, [*base[:3], "--store", str(tmp_path / "empty")])
    assert empty.exit_code == 2
    assert "error:" in empty.output and "no champion" in empty.output
    assert "Traceback" not in empty.output


def test_a_promoted_challenger_replaces_the_running_service(drifted, store, tmp_path):
    import httpx

    from components.deploy.local import local_status, local_stop
    from flows.deployment import DeployParams, deploy

    _, now = drifted
    params = _params(store, tmp_path, now, deploy="local", workers=1, trials=0)
    state = tmp_path / "serve.json"
    params = params.model_copy(update={"state_file": state})
    first = deploy(
        DeployParams(problem=params.problem, store=params.store, workers=1, state_file=state)
    )
    try:
        assert httpx.get(f"{first['url']}/metadata", timeout=10).json()["version"] == "v1"
        result = retrain(params)
        assert result.outcome == "promoted", result.gate_reasons
        assert result.deployed["url"] == first["url"]
        assert httpx.get(f"{first['url']}/metadata", timeout=10).json()["version"] == "v2"
        assert local_status(state).pid == result.deployed["pid"] != first["pid"]
    finally:
        local_stop(state)
