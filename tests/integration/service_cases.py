"""Client mistakes and the answer each must get: shared by the in-process (to_asgi) tests
and the real `bentoml serve` test, so both exercise exactly the same cases."""

from __future__ import annotations

import json

GOOD = {
    "tenure_months": 5,
    "contract": "one-year",
    "plan": "basic",
    "monthly_charges": 50.0,
    "total_charges": None,
    "payment_method": "credit-card",
    "region": "north",
    "support_calls": 1,
    "usage_hours": 30.5,
    "tickets_open": 0,
    "discount_pct": 0.0,
}


def _body(*records) -> bytes:
    return json.dumps({"records": list(records)}).encode()


def _without(name):
    return {k: v for k, v in GOOD.items() if k != name}


# (case id, path, body, status, a fragment the JSON answer must contain)
BAD_REQUESTS = [
    ("missing field", "/predict", _body(_without("region")), 422, '"field":"region"'),
    ("wrong type", "/predict", _body({**GOOD, "tenure_months": "five"}), 422, '"type":"int_type"'),
    (
        "out of range",
        "/predict",
        _body({**GOOD, "monthly_charges": -3}),
        422,
        '"field":"monthly_charges"',
    ),
    (
        "unknown category",
        "/predict",
        _body({**GOOD, "region": "atlantis"}),
        422,
        '"type":"literal_error"',
    ),
    ("unknown field", "/predict", _body({**GOOD, "colour": "red"}), 422, '"field":"colour"'),
    ("empty list", "/predict", _body(), 422, "records is empty"),
    ("malformed JSON", "/predict", b'{"records": [', 400, "not valid JSON"),
    ("not an object", "/predict", b"[1, 2]", 422, "invalid field"),
    ("too many records", "/predict", _body(*[GOOD] * 1001), 413, "the limit is 1000"),
    ("oversized body", "/predict", b" " * 1_100_000, 413, "exceeds the limit"),
    (
        "feedback for unknown id",
        "/feedback",
        json.dumps({"prediction_id": "f" * 48, "label": 1}).encode(),
        404,
        "unknown prediction",
    ),
    (
        "feedback bad label",
        "/feedback",
        json.dumps({"prediction_id": "x", "label": 7}).encode(),
        422,
        '"field":"label"',
    ),
    ("feedback malformed", "/feedback", b"{", 400, "invalid feedback"),
]
