"""Fixtures for tests against real servers on 127.0.0.1; every test here is `integration`."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

from components.core.s3_store import make_s3_client

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, so mark only the ones under this folder.
    for item in items:
        if Path(item.path).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def _serialized(put_object: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    @functools.wraps(put_object)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return put_object(*args, **kwargs)

    return locked


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free 127.0.0.1 port; yields its endpoint URL.

    Fake credentials are set for the session (child processes inherit them) and the
    previous environment is restored afterwards. PUTs are serialized in the server: moto
    5.2.5 checks If-Match / If-None-Match and then writes without a lock, so two threads of
    its server can both pass the check (reproduced as lost updates under a short GIL switch
    interval), whereas S3 applies a conditional write atomically.
    """
    no_aws_files = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # Keep a developer's real AWS profile, config and proxies out of the tests.
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", str(no_aws_files))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_aws_files))
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        env.setenv("no_proxy", "127.0.0.1,localhost")
        # Make moto's conditional PUT atomic, as it is on S3 (see the docstring).
        env.setattr(S3Response, "put_object", _serialized(S3Response.put_object))
        # Port 0: the OS picks a free port when the server binds it, so no other process can
        # grab it between choosing and binding.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(moto_server: str) -> tuple[Any, str]:
    """A fresh, uniquely named bucket on the moto server: (boto3 client, bucket name)."""
    client = make_s3_client(endpoint_url=moto_server, region="us-east-1")
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return client, name
