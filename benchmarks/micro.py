"""The small costs that comments in the code give as reasons, measured side by side.

    .venv/bin/python benchmarks/micro.py [--rows 100000]

- whylogs profiling of generated churn rows with our fast paths against whylogs' own code
  (components/data/profiling.py);
- starting a whylogs profile against adding a 1-row frame to a started one
  (RunningProfile);
- a prediction id's tag with the hmac module against keyed BLAKE2b, keyed per id and
  keyed once then copied (components/serving/ids.py).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(fn: Callable[[], object], number: int, repeat: int = 5) -> float:
    """Seconds per call, the best of `repeat` runs of `number` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def whylogs_own(profile: Callable[[], object]) -> object:
    """Run `profile` with whylogs' own code in place of every fast path."""
    from components.data.profiling import whylogs_own_code

    with whylogs_own_code():
        return profile()


def profiling(rows: int) -> None:
    from components.data import datagen
    from components.data.profiling import RunningProfile, profile_frame, warm_up

    frame = datagen.generate(datagen.GeneratorConfig(rows=rows, days=30)).frame
    warm_up()
    started = time.perf_counter()
    profile_frame(frame)
    fast = time.perf_counter() - started
    started = time.perf_counter()
    whylogs_own(lambda: profile_frame(frame))
    own = time.perf_counter() - started
    print(
        f"profile {rows:,} rows: fast paths {fast:.2f} s, whylogs' own {own:.2f} s "
        f"({own / fast:.1f}x)"
    )
    one = frame.iloc[:1]
    start = best_of(lambda: RunningProfile().track(one), 20)
    running = RunningProfile()
    running.track(one)
    add = best_of(lambda: running.track(one), 50)
    print(
        f"start a profile with 1 row {start * 1e3:.1f} ms; add 1 row to a started one "
        f"{add * 1e3:.1f} ms ({start / add:.1f}x)"
    )
    start_own = whylogs_own(lambda: best_of(lambda: RunningProfile().track(one), 5))
    print(f"start a profile, whylogs' own namespace lookups: {start_own * 1e3:.1f} ms")


def ids() -> None:
    from components.serving.ids import PredictionIds

    secret, token = os.urandom(32), os.urandom(16).hex().encode()
    keyed = hashlib.blake2b(key=secret, digest_size=8)

    def with_hmac() -> str:
        return hmac.new(secret, token, "sha256").hexdigest()[:16]

    def keyed_per_id() -> str:
        return hashlib.blake2b(token, key=secret, digest_size=8).hexdigest()

    def keyed_once() -> str:
        mac = keyed.copy()
        mac.update(token)
        return mac.hexdigest()

    n = 100_000
    for name, fn in (
        ("hmac (sha256)", with_hmac),
        ("blake2b keyed per id", keyed_per_id),
        ("blake2b keyed once, copied", keyed_once),
    ):
        print(f"id tag, {name}: {best_of(fn, n) * 1e6:.2f} µs")
    issuer = PredictionIds(secret)
    print(
        f"PredictionIds.new_many(100): {best_of(lambda: issuer.new_many(100), 2000) * 1e6:.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    ids()
    profiling(args.rows)


if __name__ == "__main__":
    main()
