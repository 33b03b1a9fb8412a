"""AWS Lambda entry point: Mangum over the BentoML service's ASGI app.

Mangum's `lifespan="auto"` runs the ASGI lifespan (BentoML's start-up: the service's
__init__, which loads and verifies the model) around every invocation. Here the lifespan is
entered once per container, on an event loop that lives as long as the container; Mangum
runs with `lifespan="off"` on that same loop and each invocation only handles its request.
The container is built lazily on the first invocation, never at import.

Lambda freezes a container between invocations and may end it without any signal, so the
capture's flusher thread cannot be counted on to write rows later: each invocation writes
the rows it captured before it returns (one small Parquet chunk per invocation that
predicted; an S3 write added to its duration). Window profiles come from the scheduled
`mlops profile-captures` job, which profiles the stored chunks.
"""

from __future__ import annotations

import asyncio
from typing import Any

_container: _Container | None = None


class _Container:
    def __init__(self) -> None:
        from asgi_lifespan import LifespanManager
        from mangum import Mangum

        from bentos.service import PredictionService

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.app = PredictionService.to_asgi()

        async def start() -> LifespanManager:
            manager = LifespanManager(self.app, startup_timeout=300, shutdown_timeout=60)
            await manager.__aenter__()
            return manager

        self.lifespan = self.loop.run_until_complete(start())
        # The manager's app passes the lifespan's state to each request, as a server does.
        self.handler = Mangum(self.lifespan.app, lifespan="off", api_gateway_base_path="/")

    def write_captured(self) -> None:
        """Store the rows this invocation captured (a failing store is logged by the
        capture, which keeps the rows for its next flush)."""
        from bentos.service import api

        online = getattr(api.state, "online", None)
        capture = online.capture if online is not None else None
        if capture is not None and capture.unwritten_rows:
            capture.flush()

    def close(self) -> None:
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The function's handler (image CMD: bentos.lambda_handler.handler)."""
    global _container
    if _container is None:
        _container = _Container()
    asyncio.set_event_loop(_container.loop)
    try:
        return _container.handler(event, context)
    finally:
        _container.write_captured()
