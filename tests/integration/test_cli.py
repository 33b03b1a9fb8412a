"""The `mlops` command line: help everywhere, data generation, and data prep's exit codes."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from capture_cases import answer, features
from typer.testing import CliRunner

from flows.cli import app

CHURN = Path(__file__).parents[2] / "problems" / "churn.yaml"
runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group)
    yield prefix
    for name, command in getattr(click_group, "commands", {}).items():
        if hasattr(command, "commands"):
            for sub in command.commands:
                yield (*prefix, name, sub)
        yield (*prefix, name)


@pytest.mark.parametrize("command", sorted(set(_commands(app))), ids=" ".join)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_console_script_is_installed():
    mlops = Path(sys.executable).with_name("mlops")
    run = subprocess.run([str(mlops), "data", "--help"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "generate" in run.stdout
    assert "prep" in run.stdout


def test_generate_training_csv(tmp_path):
    out = tmp_path / "train.csv"
    result = runner.invoke(app, ["data", "generate", "--rows", "2000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert len(frame) < 2000  # the last 30 days have no label yet
    assert "have no label yet" in result.output
    assert "churned" in frame.columns
    assert "label_time" not in frame.columns


def test_generate_traffic_by_day(tmp_path):
    out = tmp_path / "days"
    args = [
        "data",
        "generate",
        "--rows",
        "1000",
        "--days",
        "5",
        "--kind",
        "traffic",
        "--by-day",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"2026-01-0{d}.parquet" for d in range(1, 6)]
    day = pd.read_parquet(out / files[0])
    assert "churned" not in day.columns
    assert sum(len(pd.read_parquet(out / f)) for f in files) == 1000


def test_generate_labels_as_of(tmp_path):
    out = tmp_path / "labels.parquet"
    args = [
        "data",
        "generate",
        "--rows",
        "1000",
        "--days",
        "10",
        "--kind",
        "labels",
        "--as-of",
        "2026-02-05",
        "--out",
        str(out),
    ]
    assert runner.invoke(app, args).exit_code == 0
    labels = pd.read_parquet(out)
    assert list(labels.columns) == ["customer_id", "churned", "label_time"]
    assert labels["label_time"].max() <= pd.Timestamp("2026-02-05", tz="UTC")


def test_generate_rejects_unknown_suffix(tmp_path):
    result = runner.invoke(app, ["data", "generate", "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert "use a .csv or .parquet file name" in result.output


def test_generate_rejects_unknown_scenario(tmp_path):
    args = ["data", "generate", "--scenario", "meteor", "--out", str(tmp_path / "x.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "meteor" in result.output


def test_prep_with_a_bad_problem_file_fails_before_prefect(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: churn\n")
    result = runner.invoke(app, ["data", "prep", "--problem", str(bad)])
    assert result.exit_code == 2
    assert "invalid problem file" in result.output
    assert "task: required key is missing" in result.output


def test_prep_missing_input_is_a_clear_error(tmp_path):
    args = [
        "data",
        "prep",
        "--problem",
        str(CHURN),
        "--input",
        str(tmp_path / "none.csv"),
        "--store",
        str(tmp_path / "store"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "none.csv: input file not found" in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("prefect_server")
def test_prep_generated_data(tmp_path):
    args = [
        "data",
        "prep",
        "--problem",
        str(CHURN),
        "--rows",
        "2000",
        "--store",
        str(tmp_path / "store"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "snapshot " in result.output
    assert list((tmp_path / "store" / "snapshots" / "churn").glob("*/manifest.json"))


def test_profile_captures_profiles_new_chunks_once(tmp_path):
    from components.capture.buffer import Capture
    from components.capture.windows import utc_now
    from components.core.problem import load_problem
    from components.core.store import LocalStore
    from components.data.profiling import profile_summary
    from components.monitoring.profile_job import _Lease, profile_windows, window_profiles

    store = LocalStore(tmp_path / "store")
    spec = load_problem(CHURN)
    with Capture(store, spec, worker_id="w1") as capture:
        records = pd.read_csv(_generated(tmp_path)).head(7)
        records = records[[spec.id_column, spec.event_time_column, *spec.input_features]]
        rows = records.to_dict("records")
        answers = [
            {"prediction_id": f"p{i}", "model_version": "v1", "probability": 0.5, "label": 1}
            for i in range(len(rows))
        ]
        capture.record(rows, answers)
    args = ["profile-captures", "--store", str(tmp_path / "store"), "--problem", str(CHURN)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "| 1 | 7 | profiles/churn/window=" in first.output
    (start,) = profile_windows(store, "churn")
    (profile,) = window_profiles(store, "churn", start)
    assert profile_summary(profile).loc["probability", "count"] == 7
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "| 0 | 0 | nothing new |" in again.output
    bad = runner.invoke(app, [*args, "--window", "90s"])
    assert bad.exit_code == 2
    assert "90s" in bad.output
    _Lease(store, "profiles/churn/_lease", 600, utc_now)  # another run in progress
    busy = runner.invoke(app, args)
    assert busy.exit_code == 2
    assert "another profile-captures run" in busy.output


def _generated(tmp_path) -> Path:
    out = tmp_path / "traffic.csv"
    result = runner.invoke(
        app, ["data", "generate", "--rows", "2000", "--kind", "traffic", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_monitor_states_what_is_wrong(tmp_path):
    from components.capture.buffer import Capture
    from components.core.problem import load_problem
    from components.core.store import LocalStore

    both = runner.invoke(app, ["monitor", "--window", "2026-11-01", "--since", "2026-11-01"])
    assert both.exit_code == 2
    assert "give --window or --since, not both" in both.output
    store = LocalStore(tmp_path / "store")
    args = ["monitor", "--store", str(tmp_path / "store"), "--problem", str(CHURN)]
    spec = load_problem(CHURN)
    with Capture(store, spec, worker_id="w1") as capture:
        at = datetime(2026, 11, 1, 12, tzinfo=UTC)
        capture.record([features(0)], [answer("p0")], received_at=at)
    no_champion = runner.invoke(app, args)  # checked before Prefect starts
    assert no_champion.exit_code == 2
    assert "has no champion: train and promote a model first" in no_champion.output
    bad_day = runner.invoke(app, [*args, "--window", "yesterday"])
    assert bad_day.exit_code == 2
    assert "window" in bad_day.output
