"""infra/prefect.yaml on a real `prefect server start` (SQLite, its own PREFECT_HOME):
`mlops prefect setup` creates the work pool and the promotion limit and deploys everything,
a process worker runs the runs, and a monitoring run that finds degraded performance
starts the retraining deployment through its event trigger, once for two alerting days,
and the challenger it trains becomes champion."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from retraining_cases import Timeline, problem_file

from components.core.problem import load_problem
from components.core.store import LocalStore
from components.model.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHURN = load_problem(ROOT / "problems" / "churn.yaml")
HISTORY, DAYS, UNMONITORED = 40, 12, 2
TRIGGER = "retrain-on-monitoring-alert"


def _production(folder: Path) -> LocalStore:
    """A champion and 12 days of production after a concept drift (from day 5), the last
    one yesterday; the last two days are served and labelled but not monitored yet."""
    store = LocalStore(folder / "store")
    first = datetime.now(UTC).date() - timedelta(days=HISTORY + DAYS)
    timeline = Timeline(
        store, CHURN, scenario="concept", history_days=HISTORY, days=DAYS, start=first
    )
    timeline.train_champion()
    timeline.run_days(0, DAYS - UNMONITORED)
    timeline.run_days(DAYS - UNMONITORED, DAYS, monitor=False)
    return store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(folder: Path, api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLOPS_"))}
    home = folder / "prefect-home"
    home.mkdir()
    return {
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # No scheduled runs: the test starts the runs it checks (the schedules are checked
        # on the deployments).
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
        # A run that names no store must not touch the checkout's .mlops.
        "MLOPS_STORE": str(folder / "default-store"),
    }


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # SIGINT restored: a background process otherwise ignores it (Prefect's worker does).
    return subprocess.Popen(
        command,
        env=env,
        cwd=log.parent,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _stop(process: subprocess.Popen, first: signal.Signals) -> None:
    """End the process and then whatever it started and left, each by its own PID."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(first)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    for child in children:
        if child.is_running():
            child.kill()


def _wait_healthy(api: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no answer from {api}/health in 90 s:\n{log.read_text()[-3000:]}")


def _wait_final(api: str, run_id: str, timeout: float, logs: list[Path]) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(1)
    tails = "\n".join(log.read_text()[-3000:] for log in logs)
    raise AssertionError(f"flow run {run_id} still {run['state']['type']}:\n{tails}")


def _deployment(api: str, name: str) -> dict:
    return httpx.get(f"{api}/deployments/name/{name}", timeout=10).raise_for_status().json()


def _events(api: str, name: str, since: datetime) -> list[dict]:
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since.isoformat()}}}
    response = httpx.post(f"{api}/events/filter", json=body, timeout=10)
    return response.raise_for_status().json()["events"]


def _limit_events(api: str, limit: str, since: datetime) -> list[dict]:
    """The acquired and released events of the global concurrency limit ``limit``, oldest
    first, once both are queryable."""
    names = ["prefect.concurrency-limit.acquired", "prefect.concurrency-limit.released"]
    found = [
        e
        for name in names
        for e in _events(api, name, since)
        if e["resource"].get("prefect.resource.name") == limit
    ]
    return sorted(found, key=lambda e: e["occurred"]) if len(found) >= 2 else []


def _runs_of(api: str, deployment: dict) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).raise_for_status().json()


@pytest.mark.slow
def test_a_monitoring_alert_retrains_through_the_deployment_trigger(tmp_path):
    began = time.monotonic()
    since = datetime.now(UTC)
    api = f"http://127.0.0.1:{_free_port()}/api"
    env = _environment(tmp_path, api)
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    problem = problem_file(CHURN, tmp_path)
    with ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        # The production history is built while the server starts and the deploy runs.
        built = pool.submit(_production, tmp_path)
        port = api.split(":")[-1].removesuffix("/api")
        server = _start(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
            env,
            server_log,
        )
        stack.callback(_stop, server, signal.SIGTERM)
        _wait_healthy(api, server, server_log)

        setup = subprocess.run(
            [str(BIN / "mlops"), "prefect", "setup"],
            cwd=ROOT,
            env={**env, "MLOPS_ROOT": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert "work pool mlops-process: created (process)" in setup.stdout
        assert "concurrency limit promotion-churn: created (1 slot)" in setup.stdout
        assert "deployed 6 deployments" in setup.stdout, setup.stdout

        # Worker after server (started) and before server (stopped: callbacks run last first).
        worker = _start(
            [str(BIN / "prefect"), "worker", "start", "--pool", "mlops-process"],
            env,
            worker_log,
        )
        stack.callback(_stop, worker, signal.SIGINT)

        _check_deployments(api)
        store = built.result()

        monitoring = _deployment(api, "monitor/monitoring")
        params = {"params": {"problem": str(problem), "store": str(store.root)}}
        created = httpx.post(
            f"{api}/deployments/{monitoring['id']}/create_flow_run",
            json={"parameters": params},
            timeout=10,
        ).raise_for_status()
        run = _wait_final(api, created.json()["id"], 300, [worker_log])
        assert run["state"]["type"] == "COMPLETED", worker_log.read_text()[-5000:]
        alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
        assert "performance-degraded" in {a["condition"] for a in alerts}

        retraining = _deployment(api, "retraining/retraining")
        deadline = time.monotonic() + 60
        while not (runs := _runs_of(api, retraining)) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(runs) == 1, runs  # two alerting windows, one run: the trigger's `within`
        (triggered,) = runs
        assert triggered["created_by"]["type"] == "AUTOMATION"
        assert triggered["created_by"]["display_value"] == TRIGGER
        got = triggered["parameters"]["params"]
        assert (got["problem"], got["store"]) == (str(problem), store.url)
        assert got["event"]["event"] == "mlops.model.performance-degraded"
        assert got["event"]["resource"] == "mlops.model.churn" and got["event"]["reasons"]
        assert got["event"]["champion"] == "v1" and "reason" not in got
        done = _wait_final(api, triggered["id"], 600, [worker_log])
        assert done["state"]["type"] == "COMPLETED", worker_log.read_text()[-5000:]
        assert Registry(store, "churn").alias("champion") == "v2"

        # The promotion held the limit `mlops prefect setup` created (its events are
        # queryable a few seconds after the run ends).
        deadline = time.monotonic() + 30
        while not (held := _limit_events(api, "promotion-churn", since)):
            assert time.monotonic() < deadline, "no concurrency-limit event of promotion-churn"
            time.sleep(1)
        assert [e["event"] for e in held] == [
            "prefect.concurrency-limit.acquired",
            "prefect.concurrency-limit.released",
        ]
        performance = _events(api, "mlops.model.performance-degraded", since)
        assert len(performance) == UNMONITORED
        assert _events(api, "prefect.automation.action.executed", since)
        assert _events(api, "prefect.automation.action.failed", since) == []
    print(f"\nPrefect deployments test: {time.monotonic() - began:.0f} s wall time")


def test_mlops_prefect_setup_says_what_is_missing(tmp_path):
    env = _environment(tmp_path, api="")
    del env["PREFECT_API_URL"]
    setup = [str(BIN / "mlops"), "prefect", "setup"]
    for api, message in (
        (None, "no Prefect API is configured"),
        (f"http://127.0.0.1:{_free_port()}/api", "cannot reach the Prefect API"),
    ):
        done = subprocess.run(
            setup,
            cwd=ROOT,
            env={**env, **({"PREFECT_API_URL": api} if api else {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("error: ") and message in done.stderr
        assert "Traceback" not in done.stderr
    elsewhere = subprocess.run(
        setup,
        cwd=tmp_path,
        env={**env, "PREFECT_API_URL": "http://127.0.0.1:4200/api"},  # not contacted
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert elsewhere.returncode == 2 and "run `mlops prefect setup` from the project root" in (
        elsewhere.stderr
    )


def _check_deployments(api: str) -> None:
    """The schedules, concurrency limits and pull step the file declares."""
    schedules = {
        name: [s["schedule"] for s in _deployment(api, name)["schedules"]]
        for name in ("training/training", "profile-captures/capture-profiles", "monitor/monitoring")
    }
    assert schedules["training/training"][0]["cron"] == "0 2 * * 1"
    assert schedules["profile-captures/capture-profiles"][0]["interval"] == 300
    assert schedules["monitor/monitoring"][0]["cron"] == "30 0 * * *"
    for name in ("data-prep/data-prep", "retraining/retraining", "batch-scoring/batch-scoring"):
        (step,) = _deployment(api, name)["pull_steps"]
        assert step["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
    limit = httpx.get(f"{api}/v2/concurrency_limits/promotion-churn", timeout=10).json()
    assert limit["limit"] == 1 and limit["active"]
