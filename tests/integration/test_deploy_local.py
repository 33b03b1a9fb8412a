"""`deploy --target local`: package the champion, run `bentoml serve` as a managed process,
report its status, and stop it (the whole process group). The server's state lives in the
store's folder, not in the working directory."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from flows.data_prep import DataPrepParams, GeneratedInput, data_prep
from flows.deployment import DeployParams, deploy
from flows.training import TrainingParams, train

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def test_start_status_stop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that anything written to the working directory shows
    store = str(tmp_path / "store")
    state = tmp_path / "store" / "serve" / "churn.json"
    data_prep(
        DataPrepParams(
            problem=CHURN, store=store, generated=GeneratedInput(rows=12_000, days=90, seed=40)
        )
    )
    assert train(TrainingParams(problem=CHURN, store=store, trials=0, cv_folds=0)).promoted

    def local(action: str) -> dict:
        return deploy(
            DeployParams(problem=CHURN, target="local", action=action, store=store, workers=1)
        )

    started = local("start")
    try:
        assert started["running"] is True
        assert state.exists()
        assert not (tmp_path / ".mlops").exists()
        assert httpx.get(f"{started['url']}/readyz", timeout=5).status_code == 200
        status = local("status")
        assert (status["running"], status["pid"]) == (True, started["pid"])
        with pytest.raises(RuntimeError, match="already served"):
            local("start")
    finally:
        stopped = local("stop")
    assert stopped["stopped"] is True
    assert not state.exists()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{started['url']}/readyz", timeout=1)
        except httpx.HTTPError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the server still answers after stop")
    assert local("status")["running"] is False
