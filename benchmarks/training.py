"""Orchestration overhead of the training flow against plain `xgboost.train`, side by side.

    .venv/bin/python benchmarks/training.py [--rows 1000000] [--trials 0] [--cv-folds 0]

Setup (not timed): generate `rows` labelled rows, validate them and write a snapshot.
Then, on the same snapshot, with the same parameters, seed and thread count:

- plain: read the snapshot, split it by time, build the DMatrix objects and call
  `xgboost.train` with early stopping on validation: the least any training must do;
- flow: the `training` Prefect flow with no tuning and no cross-validation by default
  (so it trains the same single model), plus everything it adds: evaluation on test,
  baseline, slices, plots, model card, checksummed registration, Prefect artifacts.

Both run in this process against one temporary Prefect server, started before timing
(its start-up is printed separately). Pass --trials/--cv-folds to time a full run as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def prepare(rows: int, store_dir: Path) -> str:
    from components.core.problem import load_problem
    from components.core.store import LocalStore
    from components.data import datagen, profiling
    from components.data.snapshot import write_snapshot
    from components.data.validation import validate_frame

    spec = load_problem(ROOT / "problems" / "churn.yaml")
    config = datagen.GeneratorConfig(rows=rows, days=90, start=date(2026, 1, 1), seed=1)
    frame = datagen.generate(config).frame.drop(columns=["label_time"])
    valid = validate_frame(frame, spec).valid
    manifest = write_snapshot(
        LocalStore(store_dir),
        spec,
        valid,
        source="benchmark",
        profile=profiling.profile_frame(valid[list(spec.features)]),
        quarantined_rows=0,
        quarantine_key=None,
        validation_key=None,
    )
    return manifest.snapshot_id


def plain(store_dir: Path, snapshot_id: str, seed: int, threads: int) -> tuple[float, int]:
    import xgboost as xgb

    from components.core.problem import load_problem
    from components.core.store import LocalStore
    from components.data.snapshot import read_snapshot
    from components.model import training

    spec = load_problem(ROOT / "problems" / "churn.yaml")
    params = training.TrainParams()
    start = time.perf_counter()
    parts = training.split_by_time(read_snapshot(LocalStore(store_dir), "churn", snapshot_id), spec)
    dtrain = xgb.QuantileDMatrix(
        training.features(parts.train, spec),
        training.target(parts.train, spec),
        enable_categorical=True,
        max_bin=params.max_bin,
        nthread=threads,
    )
    dvalid = xgb.QuantileDMatrix(
        training.features(parts.validation, spec),
        training.target(parts.validation, spec),
        enable_categorical=True,
        ref=dtrain,
        nthread=threads,
    )
    booster = xgb.train(
        training.xgb_params(spec, params, seed=seed, nthread=threads),
        dtrain,
        num_boost_round=params.num_boost_round,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=params.early_stopping_rounds,
        verbose_eval=False,
    )
    return time.perf_counter() - start, booster.best_iteration + 1


def flow(
    store_dir: Path, snapshot_id: str, seed: int, threads: int, trials: int, folds: int
) -> float:
    from flows.training import TrainingParams, train

    params = TrainingParams(
        problem=ROOT / "problems" / "churn.yaml",
        store=str(store_dir),
        snapshot_id=snapshot_id,
        trials=trials,
        cv_folds=folds,
        seed=seed,
        threads=threads,
        trial_threads=1,
        concurrency=2,
    )
    start = time.perf_counter()
    train(params)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trials", type=int, default=0, help="also time a run with tuning")
    parser.add_argument("--cv-folds", type=int, default=0, help="... and cross-validation")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs; best kept")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        print(f"preparing a snapshot of {args.rows:,} generated rows ...", flush=True)
        snapshot_id = prepare(args.rows, store_dir)
        started = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=120):
            server_s = time.perf_counter() - started
            plain_runs, flow_runs = [], []
            for _ in range(args.repeat):  # alternate, so drift in machine load hits both
                plain_s, rounds = plain(store_dir, snapshot_id, args.seed, args.threads)
                plain_runs.append(plain_s)
                flow_runs.append(flow(store_dir, snapshot_id, args.seed, args.threads, 0, 0))
            plain_s, flow_s = min(plain_runs), min(flow_runs)
            full_s = None
            if args.trials or args.cv_folds:
                full_s = flow(
                    store_dir, snapshot_id, args.seed, args.threads, args.trials, args.cv_folds
                )

    print(
        f"\n{args.rows:,} rows (70/15/15 split by time), {rounds} boosting rounds, "
        f"{os.cpu_count()} cores; Prefect server start-up {server_s:.1f} s (not counted)\n"
    )
    print(
        f"best of {args.repeat} alternating runs each; all runs: plain "
        f"{', '.join(f'{s:.1f}' for s in plain_runs)} s, flow "
        f"{', '.join(f'{s:.1f}' for s in flow_runs)} s\n"
    )
    print(f"{'run':<52}{'wall s':>9}{'x plain':>9}")
    print(f"{'plain xgboost.train (split + DMatrix + train)':<52}{plain_s:>9.1f}{1:>9.2f}")
    print(
        f"{'training flow, trials=0, cv=0 (same single model)':<52}{flow_s:>9.1f}"
        f"{flow_s / plain_s:>9.2f}"
    )
    if full_s is not None:
        label = f"training flow, trials={args.trials}, cv={args.cv_folds}"
        print(f"{label:<52}{full_s:>9.1f}{full_s / plain_s:>9.2f}")


if __name__ == "__main__":
    main()
