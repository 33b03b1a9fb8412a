"""`mlops train` and `mlops models ...` through the command line, on one small store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
runner = CliRunner()
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def _run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def store(tmp_path_factory, prefect_server):
    folder = str(tmp_path_factory.mktemp("cli") / "store")
    assert _run("data", "prep", "--rows", "20000", "--store", folder).exit_code == 0
    for seed in ("1", "2"):
        result = _run(
            "train",
            "--store",
            folder,
            "--trials",
            "2",
            "--cv-folds",
            "0",
            "--seed",
            seed,
            "--no-promote",
        )
        assert result.exit_code == 0, result.output
    return folder


def test_train_without_promotion_leaves_a_challenger(store):
    listing = _run("models", "list", "--store", store)
    assert listing.exit_code == 0
    assert "v1" in listing.output and "v2" in listing.output
    show = _run("models", "show", "challenger", "--store", store)
    assert show.exit_code == 0, show.output
    assert '"version": "v2"' in show.output
    assert "files verified" in show.output
    missing = _run("models", "show", "champion", "--store", store)
    assert missing.exit_code == 2
    assert "no champion yet" in missing.output


def test_promote_then_rollback_moves_the_champion_back(store):
    assert _run("models", "promote", "v1", "--store", store).exit_code == 0
    promoted = _run("models", "promote", "v2", "--store", store)
    assert promoted.exit_code == 0
    assert "champion: v1 -> v2" in promoted.output
    rolled = _run("models", "rollback", "--reason", "bad canary", "--store", store)
    assert rolled.exit_code == 0, rolled.output
    assert "champion: v2 -> v1" in rolled.output
    history = _run("models", "history", "--store", store)
    assert "bad canary" in history.output


def test_unknown_version_is_a_clear_error(store):
    result = _run("models", "promote", "v99", "--store", store)
    assert result.exit_code == 2
    assert "v99" in result.output


def test_tampered_model_is_refused(store):
    model = Path(store) / "models" / "churn" / "versions" / "v2" / "model.ubj"
    original = model.read_bytes()
    model.write_bytes(original[:-10])  # truncated
    try:
        result = _run("models", "show", "v2", "--store", store)
        assert result.exit_code == 2
        assert "model.ubj" in result.output
        assert "Traceback" not in result.output
        assert _run("models", "promote", "v2", "--store", store).exit_code == 2
    finally:
        model.write_bytes(original)
