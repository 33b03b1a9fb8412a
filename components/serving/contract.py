"""Online and batch prediction on one contract (lifecycle stage 5).

`record_model(spec)` builds the pydantic model of one request record from the problem
file: declared types (strict), ranges, categories, nullability; unknown keys are refused.
The BentoML service validates requests with it and batch scoring validates its chunks with
the same model, so both refuse exactly the same inputs.

`Predictor` turns validated records into predictions without pandas on the hot path: the
feature matrix is filled column by column in NumPy, categories as the spec's codes (the
same codes `training.features` produces through pandas), and scored with XGBoost's
`inplace_predict`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

import numpy as np
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from components.core.problem import Feature, ProblemSpec

UNKNOWN_CATEGORY_FLAG = "unknown_categories"


class RequestError(ValueError):
    """A client's mistake, with the HTTP status that says so and field-level detail."""

    def __init__(self, status: int, message: str, detail: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or []

    def body(self) -> dict:
        return {"error": self.message, "detail": self.detail}


def _field(feature: Feature, flag_unknown: bool) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of one feature: a Literal of its categories (or any string
    when unknown categories are flagged, not refused), else its type with its range."""
    options: dict[str, Any] = {"description": feature.description}
    if feature.is_categorical and flag_unknown:
        kind: Any = str
    elif feature.categories is not None:
        kind = Literal[tuple(feature.categories)]
    else:
        kind = {"int": int, "float": float, "bool": bool}[feature.type]
        options.update(strict=True, ge=feature.min, le=feature.max)
        if feature.type == "float":
            options["allow_inf_nan"] = False
    if feature.nullable:
        return kind | None, Field(None, **options)
    return kind, Field(..., **options)


def record_model(spec: ProblemSpec, *, flag_unknown_categories: bool = False) -> type[BaseModel]:
    """The pydantic model of one record: every input feature, plus the id and event time
    (both optional: a client may not know them, the service then assigns them)."""
    fields: dict[str, Any] = {
        spec.id_column: (str | None, Field(None, max_length=200)),
        spec.event_time_column: (datetime | None, Field(None)),
    }
    for name in spec.input_features:
        fields[name] = _field(spec.features[name], flag_unknown_categories)
    return create_model(
        f"{spec.name.title().replace('-', '').replace('_', '')}Record",
        __config__=ConfigDict(extra="forbid", frozen=True),
        **fields,
    )


class Validator:
    """Parses and validates a request body {"records": [...]}, raising RequestError with the
    status a client's mistake deserves: 400 malformed JSON, 413 too many records, 422 any
    invalid field (every one listed, with the record's position)."""

    def __init__(self, spec: ProblemSpec, *, max_records: int = 1000, flag_unknown: bool = False):
        self.spec = spec
        self.max_records = max_records
        self.record = record_model(spec, flag_unknown_categories=flag_unknown)
        self._request = create_model(
            "PredictRequest",
            __config__=ConfigDict(extra="forbid"),
            records=(list[self.record], Field(..., min_length=1, max_length=max_records)),
        )

    def parse(self, body: bytes) -> list[BaseModel]:
        try:
            return self._request.model_validate_json(body).records
        except ValidationError as exc:
            raise _request_error(exc, self.max_records) from None

    def validate_each(self, records: Sequence[Any]) -> tuple[list[BaseModel], dict[int, str]]:
        """Batch variant: valid records, and for each invalid record's position its reasons."""
        valid, errors = [], {}
        for i, raw in enumerate(records):
            try:
                valid.append(self.record.model_validate(raw))
            except ValidationError as exc:
                errors[i] = "; ".join(
                    f"{d['field']}: {d['message']}" for d in map(_detail, exc.errors())
                )
        return valid, errors


def _request_error(exc: ValidationError, max_records: int) -> RequestError:
    errors = exc.errors()
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds or "json_type" in kinds:
        return RequestError(400, f"request body is not valid JSON: {errors[0]['msg']}")
    if any(e["type"] == "too_long" and tuple(e["loc"]) == ("records",) for e in errors):
        return RequestError(
            413,
            f"too many records in one request; the limit is "
            f"{max_records} (MLOPS_SERVE_MAX_RECORDS)",
        )
    if any(e["type"] == "too_short" and tuple(e["loc"]) == ("records",) for e in errors):
        return RequestError(422, "records is empty: send at least one record")
    detail = [_detail(e) for e in errors]
    return RequestError(422, f"{len(detail)} invalid field(s)", detail)


def _detail(error: dict) -> dict:
    loc = [str(p) for p in error["loc"]]
    if loc and loc[0] == "records":
        loc.pop(0)
    index = int(loc.pop(0)) if loc and loc[0].isdigit() else None
    whole = "(record)" if index is not None else "(request)"
    out = {"field": ".".join(loc) or whole, "message": error["msg"], "type": error["type"]}
    if index is not None:
        out["record"] = index
    return out


class Scored(NamedTuple):
    """A request's records scored: the answers, and what they came from."""

    answers: list[dict]
    ids: Sequence[str]
    matrix: np.ndarray  # features in spec order, categories as codes (Predictor.matrix)
    scores: np.ndarray
    labels: np.ndarray | None  # a classifier's labels at the model's threshold


class Predictor:
    """Scores validated records with one model version."""

    def __init__(
        self,
        spec: ProblemSpec,
        booster: xgb.Booster,
        *,
        version: str,
        threshold: float | None,
        new_ids: Callable[[int], list[str]] = lambda n: [uuid.uuid4().hex for _ in range(n)],
        flag_unknown: bool = True,
    ):
        """flag_unknown: look for unknown categories to flag; needless when validation
        refuses them, as it does unless they are accepted and flagged."""
        self.spec = spec
        self.new_ids = new_ids
        self.flag_unknown = flag_unknown
        self.booster = booster
        self.version = version
        self.threshold = threshold
        self._codes = {
            name: {c: float(i) for i, c in enumerate(spec.features[name].categories or [])}
            for name in spec.categorical_features
        }
        self._categories = {name: tuple(codes) for name, codes in self._codes.items()}

    def categories(self, name: str) -> tuple:
        """The categories of a categorical feature, in the order of their codes in
        `matrix()` (code i is categories[i]; null and unknown categories are NaN)."""
        return self._categories[name]

    def matrix(self, records: Iterable[BaseModel]) -> np.ndarray:
        """Features in spec order, categories as codes, null and unknown as NaN. float64,
        so the values a client sent survive exactly (capture stores them from here)."""
        rows = [r.__dict__ for r in records]
        out = np.empty((len(rows), len(self.spec.input_features)), dtype=np.float64)
        for j, name in enumerate(self.spec.input_features):
            codes = self._codes.get(name)
            if codes is not None:
                out[:, j] = [codes.get(row[name], np.nan) for row in rows]
            else:
                out[:, j] = [np.nan if row[name] is None else row[name] for row in rows]
        return out

    def scores(self, records: Sequence[BaseModel]) -> np.ndarray:
        return self.booster.inplace_predict(self.matrix(records))

    def predict(self, records: Sequence[BaseModel]) -> list[dict]:
        """One answer per record: prediction id, score, label, model version, flags."""
        return self.predict_batch(records).answers

    def predict_batch(self, records: Sequence[BaseModel]) -> Scored:
        """The answers, and what they came from (kept for capture)."""
        matrix = self.matrix(records)
        scores = self.booster.inplace_predict(matrix)
        ids = self.new_ids(len(records))
        labels = self.labels(scores) if self.spec.is_classification else None
        return Scored(self._answers(records, scores, ids, labels), ids, matrix, scores, labels)

    def _answers(
        self,
        records: Sequence[BaseModel],
        scores: np.ndarray,
        ids: Sequence[str],
        labels: np.ndarray | None,
    ) -> list[dict]:
        answers = []
        classification = labels is not None
        labels = labels.tolist() if classification else None
        for i, (record, score, prediction_id) in enumerate(zip(records, scores, ids, strict=True)):
            answer = {"prediction_id": prediction_id, "model_version": self.version}
            if classification:
                answer["probability"] = float(score)
                answer["label"] = labels[i]
            else:
                answer["value"] = float(score)
            unknown = self._unknown_categories(record) if self.flag_unknown else None
            if unknown:
                answer["flags"] = {UNKNOWN_CATEGORY_FLAG: unknown}
            answers.append(answer)
        return answers

    def labels(self, scores: np.ndarray) -> np.ndarray:
        """A classifier's labels (int64): 1 where the score reaches the model's threshold
        (0.5 without one)."""
        threshold = self.threshold if self.threshold is not None else 0.5
        return (np.asarray(scores) >= threshold).astype(np.int64)

    def _unknown_categories(self, record: BaseModel) -> list[str]:
        values = record.__dict__
        return [
            name
            for name, codes in self._codes.items()
            if values[name] is not None and values[name] not in codes
        ]
