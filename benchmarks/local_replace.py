"""Replacing the local server under load: what clients see, `local_replace` side by side with
stop-then-start in the same run.

    .venv/bin/python benchmarks/local_replace.py [--rounds 3] [--clients 6] [--workers 2]

Two bentos are built in a throwaway BentoML home around one small model, trained on
generated rows as tests/conftest.py's `served_model` fixture does (a few seconds), imported
as two registry versions (v1, v2) so that /metadata tells which one answers. In each round
and mode v1 is started with `local_start` (`bentos.packaging.serve`, capture off); a client
process (not this one, whose polling it would slow down) runs threads that POST one-record
/predict requests to 127.0.0.1 in a loop (keep-alive, 30 s timeout; a thread whose request
failed waits 10 ms before the next one) to the URL in the state file, which it re-reads
every 5 ms; after `--before` s v1 is replaced by v2:

  stop-then-start   `local_stop`, wait until the old server has exited, `local_start` on the
                    same port: what the deploy flow offered before `replace`
  replace           `local_replace` onto the same URL (a trial start beside v1, then the port
                    handed over)
  replace-new-port  `local_replace` onto another free port (true overlap); the clients
                    follow the new URL once the state file names it, which a client that
                    only knows the old URL would not

The clients go on for `--after` s. Printed per round and as the median over rounds: requests
sent, failed (connection refused; other transport errors such as a reset or a closed
keep-alive connection; 5xx), the longest failure window (from the start of a failed request
to the end of the last failed one, with no request started in between succeeding), the
span from the first failure to the last, the slowest answer, and the wall time of the
replacement call(s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODES = ("stop-then-start", "replace", "replace-new-port")


def make_bentos() -> tuple[list[str], dict]:
    """Two bentos (registry versions v1 and v2 of one small model) and a request record."""
    import bentoml

    from bentos.packaging import build_bento
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
    sums = {n: {"sha256": provenance.sha256_hex(d), "bytes": len(d)} for n, d in files.items()}
    bentos = []
    for version in ("v1", "v2"):
        metadata = {"version": version, "problem": spec.name, "threshold": 0.3, "files": sums}
        with bentoml.models.create(f"mlops-model:bench-{version}") as bento_model:
            for name, data in files.items():
                (Path(bento_model.path) / name).write_bytes(data)
            (Path(bento_model.path) / "metadata.json").write_text(json.dumps(metadata))
        bentos.append(build_bento(f"mlops-model:bench-{version}", version_label=f"bench-{version}"))
    return bentos, request_record(parts.test.iloc[0], spec)


@dataclass
class Outcome:
    start: float
    end: float
    kind: str  # ok, refused, dropped, 5xx


class Clients:
    """Threads POSTing /predict to ``self.url`` until stopped; the URL may be changed."""

    def __init__(self, url: str, record: dict, count: int) -> None:
        self.url, self.body = url, json.dumps({"records": [record]}).encode()
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(count)]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=30, trust_env=False) as http:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    response = http.post(f"{self.url}/predict", content=self.body, headers=headers)
                    kind = "5xx" if response.status_code >= 500 else "ok"
                except httpx.ConnectError:
                    kind = "refused"
                except httpx.TransportError:
                    kind = "dropped"
                self.outcomes.append(Outcome(start, time.monotonic(), kind))
                if kind != "ok":
                    time.sleep(0.01)


def run_clients(state: Path, record: dict, count: int, stop, results) -> None:
    """The client process: ``count`` threads sending to the URL recorded in ``state``."""
    with Clients(json.loads(state.read_text())["url"], record, count) as clients:
        while not stop.wait(0.005):
            with contextlib.suppress(OSError, ValueError):  # between stop and start
                clients.url = json.loads(state.read_text())["url"]
    results.put([(o.start, o.end, o.kind) for o in clients.outcomes])


@contextlib.contextmanager
def client_process(state: Path, record: dict, count: int):
    """Yields a list that holds the clients' outcomes once the block has ended."""
    context = multiprocessing.get_context("spawn")
    stop, results, outcomes = context.Event(), context.Queue(), []
    process = context.Process(target=run_clients, args=(state, record, count, stop, results))
    process.start()
    try:
        yield outcomes
    finally:
        stop.set()
        outcomes.extend(Outcome(*o) for o in results.get(timeout=120))
        process.join()


def failure_windows(outcomes: list[Outcome]) -> tuple[float, float]:
    """The longest run of failures (by start time, no success started in between), from its
    first request's start to its last one's end; and the first failure to the last."""
    longest, run_start, run_end = 0.0, None, None
    failed = [o for o in outcomes if o.kind != "ok"]
    for outcome in sorted(outcomes, key=lambda o: o.start):
        if outcome.kind == "ok":
            run_start = None
            continue
        if run_start is None:
            run_start, run_end = outcome.start, outcome.end
        run_end = max(run_end, outcome.end)
        longest = max(longest, run_end - run_start)
    span = max(o.end for o in failed) - min(o.start for o in failed) if failed else 0.0
    return longest, span


def wait_exit(pid: int, timeout: float = 120) -> None:
    """Until ``pid`` (a child of this process: it is reaped) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    sys.exit(f"pid {pid} still runs {timeout:g} s after SIGTERM")


def replace(mode: str, bento: str, state: Path, serve_kw: dict):
    from bentos.packaging import free_port
    from components.deploy.local import local_replace, local_start, local_status, local_stop

    if mode == "stop-then-start":
        old = local_status(state)
        local_stop(state)
        wait_exit(old.pid)
        port = int(old.url.rsplit(":", 1)[1])
        return local_start(bento, state, port=port, **serve_kw)
    if mode == "replace":
        return local_replace(bento, state, **serve_kw)
    return local_replace(bento, state, port=free_port(), **serve_kw)


def run_round(mode: str, bentos: list[str], record: dict, tmp: Path, args) -> dict:
    from bentos.packaging import serve
    from components.deploy.local import local_start, local_stop

    state = tmp / f"{mode}.json"
    env = {"MLOPS_CAPTURE": "false", "MLOPS_STORE": str(tmp / "store"), "MLOPS_SERVE_API_KEY": ""}
    serve_kw = {"serve": serve, "workers": args.workers, "env": env}
    local_start(bentos[0], state, **serve_kw)
    with client_process(state, record, args.clients) as outcomes:
        time.sleep(args.before)
        start = time.monotonic()
        new = replace(mode, bentos[1], state, serve_kw)
        wall = time.monotonic() - start
        time.sleep(args.after)
    version = httpx.get(f"{new.url}/metadata", timeout=10).json()["version"]
    local_stop(state)
    wait_exit(new.pid)
    kinds = [o.kind for o in outcomes]
    longest, span = failure_windows(outcomes)
    return {
        "sent": len(outcomes),
        "failed": sum(k != "ok" for k in kinds),
        "refused": kinds.count("refused"),
        "dropped": kinds.count("dropped"),
        "5xx": kinds.count("5xx"),
        "longest_ms": longest * 1000,
        "span_ms": span * 1000,
        "slowest_ms": max(o.end - o.start for o in outcomes if o.kind == "ok") * 1000,
        "wall_s": wall,
        "answers": version,
    }


COLUMNS = (
    ("sent", "{:>7.0f}"),
    ("failed", "{:>7.0f}"),
    ("refused", "{:>8.0f}"),
    ("dropped", "{:>8.0f}"),
    ("5xx", "{:>5.0f}"),
    ("longest_ms", "{:>11.0f}"),
    ("span_ms", "{:>9.0f}"),
    ("slowest_ms", "{:>11.0f}"),
    ("wall_s", "{:>7.1f}"),
)


def print_row(label: str, row: dict) -> None:
    cells = "".join(fmt.format(row[name]) for name, fmt in COLUMNS)
    print(f"{label:<24}{cells}  {row.get('answers', '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--before", type=float, default=2.0)
    parser.add_argument("--after", type=float, default=2.0)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-replace-") as tmp:
        os.environ["BENTOML_HOME"] = str(Path(tmp) / "bentoml")
        os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
        bentos, record = make_bentos()
        rows: dict[str, list[dict]] = {mode: [] for mode in modes}
        header = "".join(f"{name:>{len(fmt.format(0))}}" for name, fmt in COLUMNS)
        print(f"\n{args.clients} clients, {args.workers} workers, {os.cpu_count()} cores\n")
        print(f"{'mode, round':<24}{header}  answers")
        for n in range(args.rounds):
            for mode in modes:  # every mode once per round, back to back
                rows[mode].append(run_round(mode, bentos, record, Path(tmp), args))
                print_row(f"{mode} {n + 1}", rows[mode][-1])
        print(f"\nmedian over {args.rounds} rounds\n{'mode':<24}{header}")
        for mode in modes:
            print_row(mode, {k: statistics.median(r[k] for r in rows[mode]) for k, _ in COLUMNS})


if __name__ == "__main__":
    main()
