"""Run in a fresh interpreter by test_lambda_handler.py (a Lambda container is one too):
invokes bentos.lambda_handler.handler with API Gateway HTTP API (v2) events and prints
what happened as JSON: statuses, bodies, how often the model was loaded, timings."""

from __future__ import annotations

import base64
import json
import os
import sys
import time


def event(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    encode: bool = False,
) -> dict:
    text = None
    if body is not None:
        text = base64.b64encode(body).decode() if encode else body.decode()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "abc.execute-api.aws",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "domainName": "abc.execute-api.aws",
            "domainPrefix": "abc",
            "requestId": "r1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795000000000,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "test",
            },
        },
        "body": text,
        "isBase64Encoded": encode,
    }


def main() -> None:
    records = json.loads(sys.argv[1])
    import components.serving.online as online

    loads = []
    original = online.OnlineModel.open.__func__

    def counting(cls, *args, **kwargs):
        loads.append(time.time())
        return original(cls, *args, **kwargs)

    online.OnlineModel.open = classmethod(counting)
    from bentos import lambda_handler

    body = json.dumps({"records": records}).encode()
    calls = [
        event("POST", "/predict", body),
        event("POST", "/predict", body, encode=True),
        event("GET", "/metadata"),
        event("POST", "/predict", b'{"records": ['),
        event("GET", "/readyz"),
    ]
    out = {"responses": [], "seconds": []}
    for call in calls:
        start = time.perf_counter()
        response = lambda_handler.handler(call, None)
        out["seconds"].append(time.perf_counter() - start)
        out["responses"].append({"status": response["statusCode"], "body": response["body"]})
    out["model_loads"] = len(loads)
    out["same_container"] = lambda_handler._container is not None
    print("RESULT" + json.dumps(out), flush=True)
    # Lambda may end a frozen container without a signal: no shutdown, no flush at exit.
    os._exit(0)


if __name__ == "__main__":
    main()
