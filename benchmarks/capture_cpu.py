"""Where capture's CPU goes inside real serving workers, capture on against capture off.

    .venv/bin/python benchmarks/capture_cpu.py [--rounds 10] [--seconds 5] [--records 100]
        [--clients 32] [--also PATH ...]

Starts `bentoml serve` from this checkout twice, capture on (whylogs left to the scheduled
job, the default) and capture off, both with the probe in benchmarks/probe on PYTHONPATH,
and drives them with `hey` in alternating rounds (the order rotates). `--also PATH` adds a
capture-on server from another checkout of this repository, e.g. a `git worktree` of an
older commit, to compare code versions in one run.

Per request and server it prints the server's CPU (all its processes) and, summed over
its workers' threads: capture's request-path steps (OnlineModel._columns and
Capture.record_columns), the flusher (Capture._flush: the Arrow table, Parquet, the store
write) and garbage collection.
Capture's direct cost is request path + flusher over the capture-off server's CPU per
request; the garbage collection it adds is shown beside it. benchmarks/serving.py's paired
differences count every indirect effect too, but swing by ±10% from round to round on
this machine; these figures are steadier, and a lower bound of capture's cost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import serving as bench

PROBE = Path(__file__).resolve().parent / "probe"
PARTS = ("request_path", "flusher", "arrow_table", "parquet", "store_write", "gc")


def probed(folder: Path) -> dict[str, float]:
    """The probe's totals, summed over a server's processes."""
    out = dict.fromkeys((*PARTS, "calls"), 0.0)
    for path in folder.glob("*.json"):
        for key, value in json.loads(path.read_text()).items():
            if key in out:
                out[key] += value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5, help="per server and round")
    parser.add_argument("--records", type=int, default=100, help="records per request")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--also", action="append", default=[], metavar="PATH", help="another checkout"
    )
    args = parser.parse_args()
    binary = bench.ensure_hey()
    servers = [("capture on", bench.ROOT, True), ("capture off", bench.ROOT, False)]
    servers += [(f"capture on, {p}", Path(p).resolve(), True) for p in args.also]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
        model_dir, records = bench.make_model(tmp / "model")
        tag = bench.import_to_bentoml(model_dir)
        body = tmp / "body.json"
        body.write_text(json.dumps({"records": records[: args.records]}))
        running = {}
        try:
            for i, (name, root, capture) in enumerate(servers):
                probe_dir = tmp / f"probe{i}"
                probe_dir.mkdir()
                env = {
                    **os.environ,
                    "MLOPS_MODEL_TAG": tag,
                    "MLOPS_SERVE_WORKERS": str(args.workers),
                    "MLOPS_STORE": str(tmp / f"store{i}"),
                    "MLOPS_SERVE_API_KEY": "",
                    "MLOPS_CAPTURE": str(capture).lower(),
                    "MLOPS_PROBE_DIR": str(probe_dir),
                    "PYTHONPATH": os.pathsep.join(
                        filter(None, [str(PROBE), os.environ.get("PYTHONPATH")])
                    ),
                }
                port = bench.free_port()
                process = bench.start("bento", port, env, args.workers, cwd=root)
                running[name] = (process, f"http://127.0.0.1:{port}/predict", probe_dir)
            for process, url, _ in running.values():
                bench.wait_ready(url.removesuffix("/predict"), process)
                bench.hey(binary, url, body, args.clients, 5)  # warm-up
            time.sleep(7)  # the warm-up's last flushes (every 5 s) land before the baseline
            before = {name: probed(probe_dir) for name, (_, _, probe_dir) in running.items()}
            cpu = dict.fromkeys(running, 0.0)
            requests = dict.fromkeys(running, 0)
            for round_ in range(args.rounds):
                order = list(running)
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for name in order:
                    process, url, _ = running[name]
                    start = bench.server_cpu(process.pid)
                    result = bench.hey(binary, url, body, args.clients, args.seconds)
                    cpu[name] += bench.server_cpu(process.pid) - start
                    requests[name] += result["requests"]
                    print(f"  round {round_ + 1} {name:<30} {result['rps']:8.0f} req/s", flush=True)
            time.sleep(7)  # the last flushes, then the probe's next write
            after = {name: probed(probe_dir) for name, (_, _, probe_dir) in running.items()}
        finally:
            for process, _, _ in running.values():
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)

    off = cpu["capture off"] / requests["capture off"] * 1e6
    off_gc = (after["capture off"]["gc"] - before["capture off"]["gc"]) / requests["capture off"]
    print(
        f"\n{args.records}-record requests, {args.clients} clients, {args.rounds} rounds of "
        f"{args.seconds} s per server; µs of CPU per request (thread CPU time in the workers)\n"
    )
    header = ["server", "req/s", "CPU", "request path", "flusher", "table", "parquet", "write"]
    print(f"{header[0]:<34}" + "".join(f"{h:>13}" for h in header[1:]) + f"{'GC':>8}")
    for name in running:
        n = requests[name]
        per = {k: (after[name][k] - before[name][k]) / n * 1e6 for k in PARTS}
        print(
            f"{name:<34}{n / (args.rounds * args.seconds):>13.0f}{cpu[name] / n * 1e6:>13.0f}"
            + "".join(
                f"{per[k]:>13.1f}"
                for k in ("request_path", "flusher", "arrow_table", "parquet", "store_write")
            )
            + f"{per['gc']:>8.1f}"
        )
        if after[name]["calls"] - before[name]["calls"] and name != "capture off":
            direct = per["request_path"] + per["flusher"]
            print(
                f"  capture's direct cost {direct:.0f} µs = {direct / off:.1%} of the capture-off "
                f"server's CPU per request; garbage collection {per['gc'] - off_gc * 1e6:+.0f} µs "
                f"({(per['gc'] - off_gc * 1e6) / off:+.1%}); measured CPU difference "
                f"{cpu[name] / n * 1e6 / off - 1:+.1%}"
            )


if __name__ == "__main__":
    sys.exit(main())
