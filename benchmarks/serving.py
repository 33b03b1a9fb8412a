"""Serving throughput and latency, side by side in one run, measured with `hey`.

    .venv/bin/python benchmarks/serving.py [--seconds 5] [--repeat 2] [--workers 2]
        [--clients 1,8,32] [--sizes 1,100] [--servers bento+capture,bento]

Servers, each with 2 workers on this machine's cores (the `hey` client shares them), all
running for the whole measurement; each round measures every server once, back to back:
  bento+capture    `bentoml serve bentos.service:PredictionService`, capture on (in the
                   workers; whylogs profiles left to `mlops profile-captures`, the default)
  bento            the same, capture off
  bento+cap-alllog capture on, BentoML's access log for every request (MLOPS_SERVE_ACCESS_LOG=all;
                   the default logs only responses that are not 2xx/3xx)
  bento-lean(+cap) without BentoML's access log and Prometheus metrics (capture off / on)
  fastapi          benchmarks/fastapi_app.py on uvicorn[standard], same model and component
and, for reference, raw in-process `inplace_predict` on the same rows (no HTTP), and the
CPU time of an in-process predict call with capture off and on (all threads counted).

For 1-record and 100-record requests at 1, 8 and 32 concurrent clients it prints requests/s,
p50/p99 latency, non-2xx responses, requests/s as a ratio of the FastAPI app's, and the
server's CPU time per request (all its processes; the median over rounds). Capture's cost is
shown both ways: as lost requests/s, and as extra server CPU per request, the steadier of
the two on a machine whose neighbours take CPU time unpredictably; from 8 rounds on, with a
95% bootstrap interval of the median.
`hey` comes from Debian (apt-get install hey); the script installs it if missing and
allowed (root).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def free_port() -> int:
    from bentos.packaging import free_port as pick

    return pick()


def ensure_hey() -> str:
    found = shutil.which("hey")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "hey"], check=True, capture_output=True)
        return shutil.which("hey") or sys.exit("hey did not install")
    sys.exit("hey is needed: apt-get install hey")


def make_model(folder: Path) -> tuple[Path, list[dict]]:
    """Train a model on generated data and lay it out as the service's model folder."""
    from components.core import provenance
    from components.core.problem import load_problem
    from components.data import datagen
    from components.data.validation import validate_frame
    from components.model import training
    from components.model.known_answers import request_record

    spec = load_problem(ROOT / "problems" / "churn.yaml")
    config = datagen.GeneratorConfig(rows=60_000, days=60, start=date(2026, 1, 1), seed=2)
    valid = validate_frame(datagen.generate(config).frame.drop(columns=["label_time"]), spec).valid
    parts = training.split_by_time(valid, spec)
    model = training.train_model(parts.train, parts.validation, spec, training.TrainParams())
    folder.mkdir(parents=True)
    files = {
        "model.ubj": training.model_bytes(model.booster),
        "problem.json": spec.model_dump_json().encode(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    metadata = {
        "version": "bench",
        "problem": spec.name,
        "threshold": 0.3,
        "files": {
            n: {"sha256": provenance.sha256_hex(d), "bytes": len(d)} for n, d in files.items()
        },
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    records = [request_record(row, spec) for _, row in parts.test.head(100).iterrows()]
    return folder, records


def import_to_bentoml(model_dir: Path) -> str:
    import bentoml

    tag = "mlops-model:bench"
    with contextlib.suppress(bentoml.exceptions.NotFound):
        bentoml.models.delete(tag)
    with bentoml.models.create(tag) as model:
        for name in ("model.ubj", "problem.json", "metadata.json"):
            shutil.copy(model_dir / name, Path(model.path) / name)
    return tag


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited with {process.returncode}")
        try:
            if httpx.post(f"{url}/predict", content=b'{"records": []}', timeout=2).status_code:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    sys.exit(f"{url} not ready")


def start(kind: str, port: int, env: dict, workers: int, cwd: Path = ROOT) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    if kind == "fastapi":
        cmd = [
            str(bin_dir / "uvicorn"),
            "benchmarks.fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    else:
        cmd = [
            str(bin_dir / "bentoml"),
            "serve",
            "bentos.service:PredictionService",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def hey(binary: str, url: str, body: Path, clients: int, seconds: int) -> dict:
    out = subprocess.run(
        [
            binary,
            "-z",
            f"{seconds}s",
            "-c",
            str(clients),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            str(body),
            "-disable-keepalive=false",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"(\d+)%% in ([\d.]+) secs".replace("%%", "%"), out))
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = len(re.findall(r"Error distribution", out))
    non2xx = sum(n for c, n in codes.items() if not 200 <= c < 300)
    return {
        "requests": sum(codes.values()),
        "rps": rps,
        "p50": float(lat.get("50", "nan")) * 1000,
        "p99": float(lat.get("99", "nan")) * 1000,
        "non2xx": non2xx,
        "errors": errors,
    }


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server: its process, its workers and
    whatever they started."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def paired_ratios(runs: dict, key: tuple, base: tuple, field: str) -> list[float]:
    """Per round, key's figure divided by base's (cells of one round run back to back, so
    the ratio cancels most of the machine's drift)."""
    by_round = {r["round"]: r[field] for r in runs[base]}
    return [r[field] / by_round[r["round"]] for r in runs[key]]


def paired(runs: dict, key: tuple, base: tuple, field: str) -> float:
    """The median over rounds of the paired ratio."""
    return statistics.median(paired_ratios(runs, key, base, field))


def median_interval(values: list[float], resamples: int = 4000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median (percentile method, fixed seed): how far the
    median of this many rounds can be trusted on a machine whose single rounds swing by
    tens of percent."""
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def cost_cell(ratios: list[float], cost) -> str:
    """A capture cost, with its 95% interval once there are enough rounds for one."""
    text = f"{cost(statistics.median(ratios)):+.0%}"
    if len(ratios) >= 8:
        lo, hi = sorted(map(cost, median_interval(ratios)))
        text += f" (95% CI {lo:+.0%}..{hi:+.0%})"
    return text


def in_process(model_dir: Path, records: list[dict], seconds: float = 2.0) -> dict[int, float]:
    from components.serving.online import OnlineModel

    online = OnlineModel.open(model_dir)
    parsed = online.validator.validate_each(records)[0]
    out = {}
    for size in (1, 100):
        matrix = online.predictor.matrix(parsed[:size])
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            online.predictor.booster.inplace_predict(matrix)
            done += 1
        out[size] = done / (time.perf_counter() - start)
    return out


def capture_cpu(model_dir: Path, records: list[dict], store: Path, rounds: int = 8) -> dict:
    """CPU time per `OnlineModel.predict` call (all threads, the flusher included), capture
    off versus on. They run in alternating rounds (3,000 1-record or 300 100-record calls);
    every round ends by writing its rows, so each round pays for its own capture. The median
    round is shown: steadier than the HTTP figures, with no client and no server."""
    from components.capture.buffer import Capture
    from components.core.store import LocalStore
    from components.serving.online import OnlineModel

    out = {}
    for size in (1, 100):
        body = json.dumps({"records": records[:size]}).encode()
        calls = 3000 if size == 1 else 300
        models = {}
        for name in ("off", "on"):
            online = OnlineModel.open(model_dir)
            if name == "on":
                online.capture = Capture(
                    LocalStore(store / f"{size}-{name}"), online.spec, worker_id="bench"
                )
                online.capture.start()
            for _ in range(100):
                online.predict(body)
            models[name] = online
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(rounds):
            for name, online in models.items():
                start = time.process_time()
                for _ in range(calls):
                    online.predict(body)
                if online.capture is not None:
                    online.capture.flush()
                times[name].append((time.process_time() - start) / calls * 1e6)
        for name, online in models.items():
            online.close()
            out[(size, name)] = statistics.median(times[name])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the median is shown")
    parser.add_argument(
        "--servers", help="comma-separated subset of the servers (fastapi is always run)"
    )
    parser.add_argument("--sizes", default="1,100", help="records per request")
    args = parser.parse_args()
    binary = ensure_hey()
    clients = [int(c) for c in args.clients.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
        model_dir, records = make_model(tmp / "model")
        tag = import_to_bentoml(model_dir)
        bodies = {}
        for size in sizes:
            bodies[size] = tmp / f"body{size}.json"
            bodies[size].write_text(json.dumps({"records": records[:size]}))
        base_env = {
            **os.environ,
            "MLOPS_MODEL_TAG": tag,
            "MODEL_DIR": str(model_dir),
            "MLOPS_SERVE_WORKERS": str(args.workers),
            "MLOPS_STORE": str(tmp / "store"),
            "MLOPS_SERVE_API_KEY": "",
        }
        lean = {"MLOPS_SERVE_ACCESS_LOG": "false", "MLOPS_SERVE_METRICS": "false"}
        servers = {
            "bento+capture": {**base_env, "MLOPS_CAPTURE": "true"},
            "bento+cap-alllog": {
                **base_env,
                "MLOPS_CAPTURE": "true",
                "MLOPS_SERVE_ACCESS_LOG": "all",
            },
            "bento": {**base_env, "MLOPS_CAPTURE": "false"},
            "bento-lean+cap": {**base_env, **lean, "MLOPS_CAPTURE": "true"},
            "bento-lean": {**base_env, **lean, "MLOPS_CAPTURE": "false"},
            "fastapi": base_env,
        }
        if args.servers:
            wanted = {*args.servers.split(","), "fastapi"}
            unknown = wanted - servers.keys()
            if unknown:
                parser.error(f"unknown servers {sorted(unknown)}; choose from {sorted(servers)}")
            servers = {n: e for n, e in servers.items() if n in wanted}
        runs: dict[tuple, list[dict]] = {}
        processes: dict[str, tuple[subprocess.Popen, str]] = {}
        try:
            # Every server runs for the whole measurement and the cells interleave: each
            # round measures every server once, back to back, so a slow spell of this shared
            # machine hits the servers it is compared with too. Idle servers use no CPU.
            for name, env in servers.items():
                port = free_port()
                kind = "fastapi" if name == "fastapi" else "bento"
                process = start(kind, port, env, args.workers)
                processes[name] = (process, f"http://127.0.0.1:{port}")
            for process, url in processes.values():
                wait_ready(url, process)
                # Warm-up at full load: every worker started, imports done, caches warm.
                hey(binary, f"{url}/predict", bodies[sizes[0]], max(clients), 5)
                for body in bodies.values():
                    hey(binary, f"{url}/predict", body, 4, 1)
            for size in sizes:
                for c in clients:
                    for round_ in range(args.repeat):
                        order = list(processes)
                        shift = round_ % len(order)  # nobody always goes first
                        for name in order[shift:] + order[:shift]:
                            process, url = processes[name]
                            before = server_cpu(process.pid)
                            r = hey(binary, f"{url}/predict", bodies[size], c, args.seconds)
                            used = server_cpu(process.pid) - before
                            r["cpu_us"] = used / max(r["requests"], 1) * 1e6
                            r["round"] = round_
                            runs.setdefault((name, size, c), []).append(r)
                            print(
                                f"  round {round_ + 1} {name:<17}{size:>4} rec  c={c:<3}"
                                f"{r['rps']:>9.0f} req/s",
                                flush=True,
                            )
        finally:
            for process, _ in processes.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 15)
            for process, _ in processes.values():
                process.wait(30)
        # The run with the median throughput of each cell (the upper median, i.e. the
        # better run, when the number of rounds is even), with its latencies.
        results = {k: sorted(v, key=lambda r: r["rps"])[len(v) // 2] for k, v in runs.items()}
        # Server CPU per request, median over rounds on its own: steadier than req/s on a
        # shared machine (time stolen by neighbours is not counted).
        median_cpu = {k: statistics.median(r["cpu_us"] for r in v) for k, v in runs.items()}
        raw = in_process(model_dir, records)
        cpu = capture_cpu(model_dir, records, tmp / "cpu")

    print(
        f"\n{os.cpu_count()} cores, {args.workers} workers per server, {args.seconds} s per "
        f"cell, {args.repeat} rounds (every server once per round, back to back); req/s, "
        "latencies: upper median over rounds; ratios: median over rounds of the ratio within "
        "the round; hey on the same machine\n"
    )
    print(
        f"{'server':<15}{'records':>8}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'non-2xx':>9}{'x fastapi':>11}{'cpu us/req':>12}"
    )
    for (name, size, c), r in results.items():
        ratio = paired(runs, (name, size, c), ("fastapi", size, c), "rps")
        print(
            f"{name:<15}{size:>8}{c:>8}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
            f"{r['non2xx']:>9}{ratio:>11.2f}{median_cpu[(name, size, c)]:>12.0f}"
        )
    for size, rate in raw.items():
        print(
            f"{'in-process':<15}{size:>8}{1:>8}{rate:>10.0f}   (inplace_predict calls/s, "
            "no HTTP, no validation)"
        )
    for (size, name), micros in cpu.items():
        base = cpu[(size, "off")]
        print(
            f"in-process CPU per predict, {size:>3} rec, capture {name:<16}{micros:8.0f} us"
            + (f"  ({micros / base - 1:+.0%})" if name != "off" else "")
        )
    for on, off, label in (
        ("bento+capture", "bento", "capture cost"),
        ("bento-lean+cap", "bento-lean", "capture cost"),
        ("bento+cap-alllog", "bento+capture", "cost of logging every request"),
    ):
        if (on, sizes[0], clients[0]) not in results or (off, sizes[0], clients[0]) not in results:
            continue
        for field, what, cost in (
            ("rps", "1 - req/s ratio", lambda ratio: 1 - ratio),
            ("cpu_us", "server CPU per request", lambda ratio: ratio - 1),
        ):
            cells = [
                f"{size} rec c={c}: "
                + cost_cell(paired_ratios(runs, (on, size, c), (off, size, c), field), cost)
                for size in sizes
                for c in clients
            ]
            print(f"{label} ({on} vs {off}, {what}): {', '.join(cells)}")
    spread = {k: (min(r["rps"] for r in v), max(r["rps"] for r in v)) for k, v in runs.items()}
    print(
        "req/s range over rounds: "
        + "; ".join(f"{n} {s}r c{c}: {lo:.0f}-{hi:.0f}" for (n, s, c), (lo, hi) in spread.items())
    )


if __name__ == "__main__":
    main()
