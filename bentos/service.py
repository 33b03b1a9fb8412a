"""The BentoML service: a thin HTTP adapter over `components.serving.online.OnlineModel`.

BentoML runs the workers, the health and readiness probes (/healthz, /livez, /readyz),
metrics and packaging; the endpoints are a small Starlette app mounted in the service so
that every client mistake gets the status it deserves (400, 401, 404, 408, 409, 413, 422) with
field-level detail, and so that the request model, generated from the problem file at
start-up, validates bodies straight from bytes. Each endpoint calls one method of the
component. No adaptive batching: a predict request already carries a list of records, and a
single record at low load must not wait for a batch window.

Where the worker's time goes (measured, see benchmarks/serving.py) decided four things here:
- The routes are plain functions, not methods of the service class. BentoML binds a route
  method's `self` through a synchronous FastAPI dependency, which runs in the thread pool:
  a thread hop on every request.
- The mounted app is Starlette, not FastAPI: the routes take the raw body and return bytes,
  so FastAPI's dependency solving and response handling would be work for nothing.
- BentoML records an OpenTelemetry span tree for every request even with no exporter; the
  API routes are left out of it unless MLOPS_SERVE_TRACING asks for traces.
- BentoML's access log keeps only the responses that were not a success unless
  MLOPS_SERVE_ACCESS_LOG=all: a line for every request costs measurable server CPU
  (benchmarks/README.md), and successes are counted by the metrics and by capture.

Capture runs in each worker (components.capture.buffer): rows are flushed to the store every
MLOPS_CAPTURE_FLUSH_S and on shutdown, with the counts of the rows refused on predict (400,
413, 422) by reason; whylogs profiles are made later by the profile job.

Configuration comes from MLOPS_* variables (components.core.settings.Settings); the model is the
BentoML model MLOPS_MODEL_TAG (default mlops-model:latest), imported by `mlops package`.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from typing import Any

import bentoml
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bentos.guard import BodyTooLargeError, Guard, GuardConfig
from components.capture.buffer import Capture, CaptureConfig
from components.core.problem import ProblemSpec
from components.core.settings import SERVE_TIMEOUT_S, TRUE_WORDS, Settings, access_log_mode
from components.core.store import Store, store_from_settings
from components.serving.contract import RequestError
from components.serving.online import OnlineModel, ServingOptions

logger = logging.getLogger(__name__)

API_ROUTES = ("/predict", "/feedback", "/metadata")
guard = GuardConfig()  # set from the settings when the service starts in this process


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _online(request: Request) -> OnlineModel:
    """The component the service instance put on the app's state when it started."""
    return request.app.state.online


async def predict(request: Request) -> Response:
    return await _call(request, "predict")


async def feedback(request: Request) -> Response:
    return await _call(request, "feedback")


async def _call(request: Request, method: str) -> Response:
    try:
        return _json(getattr(_online(request), method)(await request.body()))
    except RequestError as exc:
        return _json(exc.body(), exc.status)
    except BodyTooLargeError as exc:  # counted as a rejection by the guard's on_too_large
        return _json({"error": str(exc), "detail": []}, 413)


async def metadata(request: Request) -> Response:
    return _json(_online(request).metadata())


api = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/metadata", metadata, methods=["GET"]),
    ],
    middleware=[Middleware(Guard, config=guard)],
)


ACCESS_LOGGER = "bentoml.access"


class FailuresOnly(logging.Filter):
    """Lets through BentoML's access-log lines of responses that were not a success (2xx or
    3xx): the lines worth reading, for a fraction of the CPU of logging every request.
    BentoML logs
    ``"%s (%s) (%s) %.3fms" % (address, request, "status=NNN,...", latency)``; a line of any
    other shape is let through, so a change on BentoML's side logs too much, never too
    little."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if type(args) is tuple and len(args) == 4 and type(args[2]) is str:
            return not args[2].startswith(("status=2", "status=3"))
        return True


def _log_failures_only(access_logger: logging.Logger) -> None:
    if not any(isinstance(f, FailuresOnly) for f in access_logger.filters):
        access_logger.addFilter(FailuresOnly())


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in TRUE_WORDS


def _tracing(enabled: bool) -> dict:
    """BentoML wraps every request in OpenTelemetry spans that it always records, even with
    no exporter configured: the largest part of BentoML's own time per request in our
    profile. Unless tracing is wanted (MLOPS_SERVE_TRACING, with an exporter in BentoML's
    configuration), the API routes are excluded from it."""
    return {} if enabled else {"excluded_urls": [f"{route}$" for route in API_ROUTES]}


# Read when BentoML loads this module, as its service configuration must be; see
# components.core.settings.Settings for what each variable means.
@bentoml.service(
    name="mlops_prediction",
    workers=int(os.environ.get("MLOPS_SERVE_WORKERS", "2")),
    # BentoML cancels a request still running after this and answers 504; a client that
    # sends its body too slowly gets the guard's 408 before (MLOPS_SERVE_BODY_TIMEOUT_S).
    traffic={"timeout": SERVE_TIMEOUT_S},
    logging={
        "access": {
            "enabled": access_log_mode(os.environ.get("MLOPS_SERVE_ACCESS_LOG", "errors")) != "off"
        }
    },
    metrics={"enabled": _flag("MLOPS_SERVE_METRICS", "true")},
    tracing=_tracing(_flag("MLOPS_SERVE_TRACING", "false")),
)
@bentoml.asgi_app(api, path="/")
class PredictionService:
    model_ref = bentoml.models.BentoModel(os.environ.get("MLOPS_MODEL_TAG", "mlops-model:latest"))

    def __init__(self) -> None:
        settings = Settings()
        if settings.serve_access_log == "errors":
            _log_failures_only(logging.getLogger(ACCESS_LOGGER))
        guard.update(
            max_body_bytes=settings.serve_max_body_bytes,
            api_key=settings.serve_api_key,
            body_timeout_s=settings.serve_body_timeout_s,
        )
        store = store_from_settings(settings) if settings.capture else None
        options = ServingOptions(
            max_records=settings.serve_max_records,
            flag_unknown_categories=settings.serve_flag_unknown_categories,
            id_secret=settings.prediction_id_secret.encode()
            if settings.prediction_id_secret
            else None,
            id_store=store,
        )
        self.online = OnlineModel.open(self.model_ref.path, options=options)
        if settings.capture:
            # Built from the spec of the model just verified, not from a second read.
            self.online.capture = _capture(store, settings, self.online.spec)
            self.online.capture.start()
        api.state.online = self.online
        guard.on_too_large = self._too_large
        # What is alive now (modules, the model, the request model) lives as long as the
        # worker: frozen out of the garbage collector's sight, so that full collections scan
        # only what requests leave, not the whole heap.
        gc.freeze()

    def _too_large(self, path: str) -> None:
        if path.endswith("/predict"):
            self.online.record_too_large()  # a refused prediction: a rejection

    @bentoml.on_shutdown
    def close(self) -> None:
        """Write what was answered before the worker exits (SIGTERM loses nothing)."""
        self.online.close()


def _capture(store: Store, settings: Settings, spec: ProblemSpec) -> Capture:
    worker = f"{socket.gethostname()}-{os.getpid()}"
    return Capture(
        store,
        spec,
        worker_id=worker,
        config=CaptureConfig(flush_interval_s=settings.capture_flush_s),
    )
