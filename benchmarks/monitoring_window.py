"""Monitoring one window of captured rows against profiling the same rows alone.

The issue's target: monitoring a window of 1,000,000 captured rows (the profile job over
its chunks, then every check) takes no more than twice profiling the same rows. Both sides
run in this process on the same rows: the baseline profiles the in-memory frame of the
columns the profile job profiles; "monitoring" runs `profile_captures` over the stored
chunks (reading Parquet included), then `gather_window` (which also reads the window's
captures for the scores and the label join) and `assess_window`.

    .venv/bin/python benchmarks/monitoring_window.py --rows 1000000
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.capture.buffer import Capture, CaptureConfig  # noqa: E402
from components.capture.chunks import outputs_of  # noqa: E402
from components.core.problem import load_problem  # noqa: E402
from components.core.store import LocalStore  # noqa: E402
from components.data import profiling  # noqa: E402
from components.data.datagen import GeneratorConfig, generate, true_churn_probability  # noqa: E402
from components.monitoring.monitor import References, assess_window, gather_window  # noqa: E402
from components.monitoring.performance_checks import Baseline  # noqa: E402
from components.monitoring.profile_job import profile_captures  # noqa: E402

DAY = date(2026, 11, 1)
START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)


def traffic(rows: int, spec) -> pd.DataFrame:
    frame = generate(GeneratorConfig(rows=rows, days=1, start=DAY, seed=3)).frame
    frame["probability"] = true_churn_probability(frame)
    frame["label"] = (frame["probability"] >= 0.5).astype(np.int64)
    return frame


def capture(store: LocalStore, spec, frame: pd.DataFrame, batch: int) -> None:
    """Record the rows as the service does: requests of ``batch`` rows given as columns."""
    names = [*spec.input_features, spec.id_column, spec.event_time_column]
    columns = {n: frame[n].to_numpy() for n in names if n in frame}
    ids = np.array([f"p{i}" for i in range(len(frame))], dtype=object)
    config = CaptureConfig(flush_interval_s=3600, max_buffered_rows=4 * len(frame))
    with Capture(store, spec, worker_id="bench", config=config) as cap:
        at = START + timedelta(hours=12)
        for lo in range(0, len(frame), batch):
            hi = min(lo + batch, len(frame))
            part = {n: v[lo:hi] for n, v in columns.items()}
            part.update(
                prediction_id=ids[lo:hi],
                model_version="v1",
                probability=frame["probability"].to_numpy()[lo:hi],
                label=frame["label"].to_numpy()[lo:hi],
            )
            cap.record_columns(part, hi - lo, received_at=at)


def references(spec, rows: int) -> References:
    old = traffic(rows, spec)
    scores = profiling.column_sketches(profiling.profile_frame(old[["probability"]]))
    return References(
        version="v1",
        features=profiling.column_sketches(profiling.profile_frame(old[spec.input_features])),
        scores=scores["probability"],
        baseline=Baseline(metrics={"roc_auc": 0.8}, threshold=0.5),
    )


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000, help="rows per captured request")
    parser.add_argument("--repeat", type=int, default=2, help="baseline/monitoring pairs")
    args = parser.parse_args()
    spec = load_problem(ROOT / "problems" / "churn.yaml")
    frame = traffic(args.rows, spec)
    refs = references(spec, 100_000)
    profiled = frame[[*spec.input_features, *outputs_of(spec)]]
    profiling.warm_up()
    print(f"{args.rows:,} rows, requests of {args.batch:,}; {args.repeat} pairs, side by side")
    print("| pair | profiling alone (s) | monitoring (s) | of it: profile job | checks | ratio |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for pair in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(Path(tmp) / "store")
            capture(store, spec, frame, args.batch)
            t0 = time.perf_counter()
            profiling.profile_frame(profiled)
            alone = time.perf_counter() - t0
            t0 = time.perf_counter()
            profile_captures(store, spec, window="1d")
            job = time.perf_counter() - t0
            report = assess_window(spec, refs, gather_window(store, spec, START), now=START)
            total = time.perf_counter() - t0
        ratios.append(total / alone)
        print(
            f"| {pair + 1} | {alone:.2f} | {total:.2f} | {job:.2f} | {total - job:.2f} | "
            f"{total / alone:.2f}x |"
        )
    print(
        f"median ratio {np.median(ratios):.2f}x (target at most 2x); report status "
        f"{report.status}, {report.rows:,} rows; peak RSS {peak_mib():,.0f} MiB"
    )


if __name__ == "__main__":
    main()
