"""`mlops prefect setup`: make a Prefect server (self-hosted or Prefect Cloud) ready to run
the lifecycle: the work pools infra/prefect.yaml's deployments use, one promotion
concurrency limit per problem, then `prefect deploy --all` of that file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from flows.cli._common import _fail, _user_errors, console

app = typer.Typer(help="Run the lifecycle's deployments on a Prefect server or Prefect Cloud.")

PREFECT_FILE = Path("infra/prefect.yaml")


@app.command("setup")
def setup(
    pool_type: str = typer.Option(
        "process",
        help="Type of a missing work pool: process, or docker, kubernetes, ecs (with "
        "prefect-docker, prefect-kubernetes or prefect-aws installed).",
    ),
    problems: list[Path] | None = typer.Option(
        None, "--problem", help="Problems to create limits for (default: problems/*.yaml)."
    ),
    deploy: bool = typer.Option(
        True, "--deploy/--no-deploy", help="Run `prefect deploy --all` of the file after."
    ),
    prefect_file: Path = typer.Option(PREFECT_FILE, help="The deployments, relative to here."),
) -> None:
    """Create the work pools the deployments name (when missing) and each problem's
    promotion limit, then deploy everything in infra/prefect.yaml. Run it from the project
    root, with PREFECT_API_URL set (or after `prefect cloud login`); MLOPS_ROOT, if set,
    is where the code is on the machines that run the flows (default: here)."""
    from components.core.problem import load_problem
    from flows.limits import ensure_limit, promotion_limit

    root = Path.cwd()
    try:
        url = _api_url()
        pools = _work_pools(root / prefect_file)
        specs = [load_problem(p) for p in problems or sorted(root.glob("problems/*.yaml"))]
    except (*_user_errors(), ValueError) as exc:
        raise _fail(exc) from None
    console.print(f"Prefect API: {url}", highlight=False)
    _ensure_pools(url, pools, pool_type)
    for spec in specs:
        name = promotion_limit(spec.name)
        done = "created (1 slot)" if ensure_limit(name) else "exists"
        console.print(f"concurrency limit {name}: {done}")
    if not deploy:
        return
    run_root = os.environ.get("MLOPS_ROOT") or str(root)
    names = _deploy(root, prefect_file, run_root)
    console.print(
        f"deployed {len(names)} deployments: {', '.join(names)}", highlight=False, soft_wrap=True
    )
    for name in pools:
        console.print(
            f"next, on a machine with the code at {run_root}: prefect worker start --pool {name}",
            highlight=False,
            soft_wrap=True,
        )


def _api_url() -> str:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ValueError(
            "no Prefect API is configured, and the temporary one would vanish with this "
            "command: start a server (`prefect server start`) and set PREFECT_API_URL="
            "http://127.0.0.1:4200/api, or log in to Prefect Cloud (`prefect cloud login`)"
        )
    return url


def _work_pools(prefect_file: Path) -> list[str]:
    """The work pool names the file's deployments use, in order of first use."""
    import yaml

    if not prefect_file.is_file():
        raise ValueError(
            f"{prefect_file}: no such file; run `mlops prefect setup` from the project root "
            "(the folder holding infra/ and flows/) or pass --prefect-file"
        )
    doc = yaml.safe_load(prefect_file.read_text()) or {}
    names = [(d.get("work_pool") or {}).get("name") for d in doc.get("deployments") or []]
    if None in names or not names:
        raise ValueError(f"{prefect_file}: every deployment needs a work_pool with a name")
    return list(dict.fromkeys(names))


def _ensure_pools(url: str, pools: list[str], pool_type: str) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        if (down := client.api_healthcheck()) is not None:
            raise _fail(
                ValueError(
                    f"cannot reach the Prefect API at {url}: {down}. Start the server "
                    "(`prefect server start`) or check PREFECT_API_URL"
                )
            )
        for name in pools:
            console.print(f"work pool {name}: {_ensure_pool(client, name, pool_type)}")


def _ensure_pool(client, name: str, pool_type: str) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    try:
        return f"exists ({client.read_work_pool(name).type})"
    except ObjectNotFound:
        pass
    template = run_coro_as_sync(get_default_base_job_template_for_infrastructure_type(pool_type))
    if template is None:
        raise _fail(
            ValueError(
                f"--pool-type {pool_type!r}: Prefect knows no such work pool type here; use "
                "process, or install the integration (prefect-docker, prefect-kubernetes, "
                "prefect-aws) for docker, kubernetes or ecs"
            )
        )
    pool = WorkPoolCreate(name=name, type=pool_type, base_job_template=template)
    client.create_work_pool(pool)
    return f"created ({pool_type})"


def _deploy(root: Path, prefect_file: Path, run_root: str) -> list[str]:
    """`prefect deploy --all` of the file from ``root``, the pull step's folder being
    ``run_root``; the names deployed, or an error with the command's last lines."""
    import yaml

    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    command += ["--prefect-file", str(prefect_file)]
    console.print(f"deploying {prefect_file} with MLOPS_ROOT={run_root}", highlight=False)
    done = subprocess.run(
        command,
        cwd=root,
        env={**os.environ, "MLOPS_ROOT": run_root},
        capture_output=True,
        text=True,
        check=False,
    )
    names = [d["name"] for d in yaml.safe_load((root / prefect_file).read_text())["deployments"]]
    # `prefect deploy --all` can exit 0 having skipped a deployment: ask the server.
    missing = sorted(set(names) - _deployed(names))
    if done.returncode != 0 or missing:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        what = f"did not deploy {', '.join(missing)}" if missing else "failed"
        raise _fail(RuntimeError(f"`{' '.join(command[2:])}` {what}:\n{tail}"))
    return names


def _deployed(names: list[str]) -> set[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
        )
    return {d.name for d in found}
