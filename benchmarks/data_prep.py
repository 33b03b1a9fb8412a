"""Data-prep throughput and peak memory, side by side with a plain-pandas baseline.

    .venv/bin/python benchmarks/data_prep.py [--rows 1000000] [--format parquet|csv]

1. Generates `rows` labelled rows of churn data into a file (not timed).
2. Baseline: a subprocess that reads the file with pandas and writes it back as Parquet,
   the least any data stage must do.
3. `mlops data prep --input FILE` in a subprocess: the real CLI, Prefect's ephemeral API
   included (its start-up is part of what a user waits for).
4. The same components in-process without Prefect, timed step by step, to show where the
   time goes.

Peak memory is the child's maximum resident set size (getrusage via os.wait4); the
ephemeral Prefect server is a separate process and is not counted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = """
import sys, pandas as pd
src, dst = sys.argv[1], sys.argv[2]
frame = pd.read_csv(src, dtype=str) if src.endswith(".csv") else pd.read_parquet(src)
frame.to_parquet(dst, index=False, compression="zstd")
"""


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """Run a command; return (seconds, peak RSS in MiB, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(proc.stderr.read().decode()[-3000:])
    return seconds, usage.ru_maxrss / 1024, code


def make_input(rows: int, fmt: str, folder: Path) -> Path:
    from components.data import datagen

    config = datagen.GeneratorConfig(rows=rows, days=90, start=date(2026, 1, 1), seed=1)
    frame = datagen.generate(config).frame.drop(columns=["label_time"])
    path = folder / f"input.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def in_process_breakdown(path: Path, store_dir: Path) -> dict[str, float]:
    from components.core.problem import load_problem
    from components.core.store import LocalStore
    from components.data import ingest, profiling
    from components.data.snapshot import content_id, write_quarantine, write_snapshot
    from components.data.validation import validate_frame

    spec = load_problem(ROOT / "problems" / "churn.yaml")
    store = LocalStore(store_dir)
    steps: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        steps[name] = time.perf_counter() - start
        return out

    frame = timed("read", lambda: ingest.read_table(str(path)))
    result = timed("validate", lambda: validate_frame(frame, spec, source=str(path)))
    keys = timed(
        "quarantine",
        lambda: write_quarantine(
            store, spec, content_id(frame), result.quarantined, result.report.to_dict()
        ),
    )
    profile = timed("profile", lambda: profiling.profile_frame(result.valid[list(spec.features)]))
    timed(
        "snapshot",
        lambda: write_snapshot(
            store,
            spec,
            result.valid,
            source=str(path),
            profile=profile,
            quarantined_rows=result.report.rows_quarantined,
            quarantine_key=keys[1],
            validation_key=keys[0],
        ),
    )
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    args = parser.parse_args()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    mlops = str(Path(sys.executable).with_name("mlops"))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"generating {args.rows:,} rows as {args.format} ...", flush=True)
        path = make_input(args.rows, args.format, folder)
        size_mb = path.stat().st_size / 2**20

        base = run_measured(
            [sys.executable, "-c", BASELINE, str(path), str(folder / "copy.parquet")], env
        )
        prep = run_measured(
            [mlops, "data", "prep", "--input", str(path), "--store", str(folder / "store")], env
        )
        if prep[2] != 0:
            sys.exit(f"mlops data prep failed with exit code {prep[2]}")
        steps = in_process_breakdown(path, folder / "store2")

    rows = args.rows
    print(
        f"\ninput: {rows:,} rows, {args.format}, {size_mb:.1f} MiB; machine: "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}\n"
    )
    print(f"{'run':<34}{'wall s':>9}{'rows/s':>12}{'peak MiB':>10}{'x baseline':>12}")
    for name, (secs, rss, _) in [
        ("baseline: pandas read + write", base),
        ("mlops data prep (CLI, Prefect)", prep),
    ]:
        print(f"{name:<34}{secs:>9.1f}{rows / secs:>12,.0f}{rss:>10,.0f}{secs / base[0]:>12.1f}")
    total = sum(steps.values())
    print(f"\nin-process components (no Prefect): {total:.1f} s, {rows / total:,.0f} rows/s")
    for name, secs in steps.items():
        print(f"  {name:<12}{secs:>7.1f} s  {secs / total:>6.0%}")


if __name__ == "__main__":
    main()
