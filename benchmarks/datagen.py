"""Speed and peak memory of the churn generator, against a plain NumPy baseline.

    .venv/bin/python benchmarks/datagen.py [--rows 1000000 5000000] [--scenario quality]

Each size runs in its own subprocess so its peak resident set size (getrusage via
os.wait4) is its own. The baseline draws the same number of float64 values per row as the
generator has columns, the least any generator of this table must do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GENERATE = """
import time
from components.data import datagen
start = time.perf_counter()
datagen.generate(datagen.GeneratorConfig(rows={rows}, scenario={scenario!r}))
print(time.perf_counter() - start)
"""
BASELINE = """
import time
import numpy as np
from components.data import datagen
start = time.perf_counter()
rng = np.random.default_rng(0)
columns = [rng.random({rows}) for _ in datagen.COLUMNS]
print(time.perf_counter() - start)
"""


def run(code: str) -> tuple[float, float]:
    """Seconds the child reports and its peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    out = child.stdout.read() if child.stdout else b""
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the child failed: {code}")
    return float(out), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--scenario", default="none")
    args = parser.parse_args()
    header = ("rows", "generate s", "numpy s", "ratio", "peak MiB", "numpy MiB")
    print("{:>10} {:>11} {:>8} {:>6} {:>9} {:>10}".format(*header))
    for rows in args.rows:
        started = time.perf_counter()
        seconds, peak = run(GENERATE.format(rows=rows, scenario=args.scenario))
        base_s, base_peak = run(BASELINE.format(rows=rows))
        print(
            f"{rows:>10,} {seconds:>11.2f} {base_s:>8.2f} {seconds / base_s:>5.1f}x "
            f"{peak:>9.0f} {base_peak:>10.0f}   ({time.perf_counter() - started:.0f} s wall)",
            flush=True,
        )


if __name__ == "__main__":
    main()
