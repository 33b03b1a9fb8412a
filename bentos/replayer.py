"""The capture replayer: a process beside each serving worker that turns the worker's
journal into captured rows and profiles (components.capture.journal), at idle CPU priority.

    python -m bentos.replayer --model-dir DIR --folder JOURNAL --owner PID

The service starts one per worker (`start`); it runs until its worker has exited and
every segment it may take is stored. Run by hand with the owner's PID of a worker that is
gone, it stores what that worker left behind (and any other dead writer's segments).
Store and capture settings come from the same MLOPS_* variables as the service's.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from components.capture.buffer import Capture
    from components.capture.journal import Entry
    from components.core.problem import ProblemSpec
    from components.serving.online import OnlineModel


logger = logging.getLogger("bentos.replayer")

_NO_LIMIT = 10**9


def start(model_dir: Path, folder: Path, owner: int) -> subprocess.Popen:
    """Start the replayer of worker ``owner`` in its own session (a signal to the server's
    process group must not stop it before its worker's last segment is stored), logging to
    ``<folder>/replayer.log``: not to the worker's output, a pipe that closes when the
    server stops while the replayer may still be storing."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "replayer.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentos.replayer",
                "--model-dir",
                str(model_dir),
                "--folder",
                str(folder),
                "--owner",
                str(owner),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def lower_priority() -> str:
    """Run only on CPU nothing else wants: SCHED_IDLE on Linux, else nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        os.nice(19)
        return "nice 19"


class _Models:
    """The worker's model, opened once per option the journal's segments were written with
    (all with no request limit: an entry was a request the service accepted, under a limit
    that may have been lowered since), capturing into one Capture."""

    def __init__(self, model_dir: Path, capture_for: Callable[[ProblemSpec], Capture]):
        self.model_dir = model_dir
        self._open: dict[bool, OnlineModel] = {}
        self.capture: Capture | None = None  # built from the first model's verified spec
        first = self.model(flag_unknown=False)  # verifies the model's files
        self.capture = first.capture = capture_for(first.spec)

    def model(self, *, flag_unknown: bool) -> OnlineModel:
        from components.serving.online import OnlineModel, ServingOptions

        online = self._open.get(flag_unknown)
        if online is None:
            options = ServingOptions(max_records=_NO_LIMIT, flag_unknown_categories=flag_unknown)
            online = OnlineModel.open(self.model_dir, options=options)
            online.capture = self.capture
            self._open[flag_unknown] = online
        return online

    def replay(self, entry: Entry, meta: dict) -> None:
        online = self.model(flag_unknown=bool(meta.get("flag_unknown_categories", False)))
        if meta.get("version") != online.predictor.version:
            raise ValueError(
                f"entry of model version {meta.get('version')!r}, replayer serves "
                f"{online.predictor.version!r}"
            )
        online.replay(entry.body, entry.ids, entry.scores, entry.received_at)


def run(model_dir: Path, folder: Path, owner: int, *, poll_s: float = 0.5) -> None:
    # Imported here, not at the top: main() must handle signals before these imports.
    from components.capture.buffer import Capture, CaptureConfig
    from components.capture.journal import Replayer, process_alive
    from components.core.settings import Settings
    from components.core.store import store_from_settings

    settings = Settings()
    models = _Models(
        model_dir,
        lambda spec: Capture(
            store_from_settings(settings),
            spec,
            worker_id=f"replayer-{os.getpid()}",
            config=CaptureConfig(max_buffered_rows=_NO_LIMIT, close_timeout_s=0),
            profile=settings.capture_profiles,
        ),
    )
    replayer = Replayer(folder, models.replay, models.capture.flush_as, owner=owner)
    while True:
        stored = replayer.run_once()
        if not process_alive(owner) and not replayer.claimable():
            return
        if not stored:
            time.sleep(poll_s)


def _finish_first(signum: int, _frame: object) -> None:
    logger.info("signal %d: stopping once the worker's journal is stored", signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--folder", type=Path, required=True, help="the journal's folder")
    parser.add_argument("--owner", type=int, required=True, help="the worker's process id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The server's process manager sends its stop signal to each worker's children too,
    # while the worker is waiting for this process to store its last segment: finish
    # instead (the loop ends once the worker is gone and nothing is left to store).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _finish_first)
    priority = lower_priority()
    logger.info("replaying %s for worker %d (%s)", args.folder, args.owner, priority)
    run(args.model_dir, args.folder, args.owner)


if __name__ == "__main__":
    main()
