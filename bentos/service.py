"""The BentoML service: a thin HTTP adapter over `components.online.OnlineModel`.

BentoML runs the workers, the health and readiness probes (/healthz, /livez, /readyz),
metrics and packaging; the endpoints are a small FastAPI app mounted in the service so that
every client mistake gets the status it deserves (400, 401, 404, 409, 413, 422) with
field-level detail, and so that the request model, generated from the problem file at
start-up, validates bodies straight from bytes. Each endpoint calls one method of the
component. No adaptive batching: a predict request already carries a list of records, and a
single record at low load must not wait for a batch window.

Configuration comes from MLOPS_* variables (components.settings.Settings); the model is the
BentoML model MLOPS_MODEL_TAG (default mlops-model:latest), imported by `mlops package`.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import bentoml
import orjson
from fastapi import FastAPI, Request, Response

from bentos.guard import BodyTooLargeError, Guard, GuardConfig
from components.capture import Capture, CaptureConfig
from components.online import OnlineModel, ServingOptions
from components.problem import ProblemSpec
from components.serving import RequestError
from components.settings import Settings
from components.store import store_from_settings

api = FastAPI(title="mlops prediction service", docs_url=None, redoc_url=None)
guard = GuardConfig()  # set from the settings when the service starts in this process
api.add_middleware(Guard, config=guard)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _error(exc: RequestError) -> Response:
    return _json(exc.body(), exc.status)


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


# Read when BentoML loads this module, as its service configuration must be; see
# components.settings.Settings for what each variable means.
@bentoml.service(
    name="mlops_prediction",
    workers=int(os.environ.get("MLOPS_SERVE_WORKERS", "2")),
    traffic={"timeout": 30},
    logging={"access": {"enabled": _flag("MLOPS_SERVE_ACCESS_LOG", "true")}},
    metrics={"enabled": _flag("MLOPS_SERVE_METRICS", "true")},
)
@bentoml.asgi_app(api, path="/")
class PredictionService:
    model_ref = bentoml.models.BentoModel(os.environ.get("MLOPS_MODEL_TAG", "mlops-model:latest"))

    def __init__(self) -> None:
        settings = Settings()
        guard.update(max_body_bytes=settings.serve_max_body_bytes, api_key=settings.serve_api_key)
        options = ServingOptions(
            max_records=settings.serve_max_records,
            flag_unknown_categories=settings.serve_flag_unknown_categories,
            id_secret=settings.prediction_id_secret.encode()
            if settings.prediction_id_secret
            else None,
        )
        self.online = OnlineModel.open(self.model_ref.path, options=options)
        if settings.capture:
            # Built from the spec of the model just verified, not from a second read.
            self.online.capture = _capture(settings, self.online.spec)
            self.online.capture.start()

    @api.post("/predict")
    async def predict(self, request: Request) -> Response:
        try:
            return _json(self.online.predict(await request.body()))
        except RequestError as exc:
            return _error(exc)
        except BodyTooLargeError as exc:
            return _json({"error": str(exc), "detail": []}, 413)

    @api.post("/feedback")
    async def feedback(self, request: Request) -> Response:
        try:
            return _json(self.online.feedback(await request.body()))
        except RequestError as exc:
            return _error(exc)
        except BodyTooLargeError as exc:
            return _json({"error": str(exc), "detail": []}, 413)

    @api.get("/metadata")
    async def metadata(self) -> Response:
        return _json(self.online.metadata())

    @bentoml.on_shutdown
    def close(self) -> None:
        """Flush captured predictions before the worker exits (SIGTERM loses nothing)."""
        self.online.close()


def _capture(settings: Settings, spec: ProblemSpec) -> Capture:
    worker = f"{socket.gethostname()}-{os.getpid()}"
    return Capture(
        store_from_settings(settings),
        spec,
        worker_id=worker,
        config=CaptureConfig(flush_interval_s=settings.capture_flush_s),
        profile=settings.capture_profiles,
    )
