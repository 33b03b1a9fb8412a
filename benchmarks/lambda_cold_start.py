"""Cold and warm invocation times of the Lambda handler (Mangum over the BentoML service).

    .venv/bin/python benchmarks/lambda_cold_start.py [--containers 3]

Each "container" is a fresh Python process that imports bentos.lambda_handler and handles
API Gateway v2 events (tests/integration/lambda_invoke.py): the first invocation pays the
service's start-up (imports, model load and checksum verification), the next ones do not.
Side by side: the process's import of the handler module, the cold invocation, and the
warm invocations (1-record predict, metadata). No capture (no store to write to).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENTOML_HOME"] = str(Path(tmp) / "bentoml")
        from serving import import_to_bentoml, make_model

        model_dir, records = make_model(Path(tmp) / "model")
        tag = import_to_bentoml(model_dir)
        env = {
            **os.environ,
            "MLOPS_MODEL_TAG": tag,
            "MLOPS_CAPTURE": "false",
            "MLOPS_SERVE_API_KEY": "",
            "PYTHONPATH": str(ROOT),
        }
        colds, warms, walls = [], [], []
        for _ in range(args.containers):
            start = time.perf_counter()
            run = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "tests/integration/lambda_invoke.py"),
                    json.dumps(records[:1]),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            walls.append(time.perf_counter() - start)
            result = json.loads(run.stdout.split("RESULT", 1)[1])
            colds.append(result["seconds"][0])
            warms.extend(result["seconds"][1:])
    print(f"\n{args.containers} fresh containers (processes), {os.cpu_count()} cores\n")
    print(f"{'':<44}{'median s':>10}{'max s':>8}")
    print(
        f"{'process start to exit (imports included)':<44}{statistics.median(walls):>10.2f}"
        f"{max(walls):>8.2f}"
    )
    print(
        f"{'cold invocation (service start-up + request)':<44}"
        f"{statistics.median(colds):>10.3f}{max(colds):>8.3f}"
    )
    print(f"{'warm invocation':<44}{statistics.median(warms):>10.4f}{max(warms):>8.4f}")
    print(f"\ncold / warm: {statistics.median(colds) / statistics.median(warms):.0f}x")


if __name__ == "__main__":
    main()
