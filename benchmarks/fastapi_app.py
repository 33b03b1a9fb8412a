"""The comparison server for benchmarks/serving.py: a minimal FastAPI app on uvicorn that
serves the same model with the same component (validation + scoring), without BentoML and
without capture. Run: MODEL_DIR=... uvicorn benchmarks.fastapi_app:app --workers 2
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request, Response

from components.serving.contract import RequestError
from components.serving.online import OnlineModel

state: dict = {}


@asynccontextmanager
async def lifespan(_app):
    state["model"] = OnlineModel.open(os.environ["MODEL_DIR"])
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/predict")
async def predict(request: Request) -> Response:
    try:
        payload, status = state["model"].predict(await request.body()), 200
    except RequestError as exc:
        payload, status = exc.body(), exc.status
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")
