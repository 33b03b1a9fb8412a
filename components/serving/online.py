"""The online model: what the BentoML service adapts to HTTP, with no web framework here.

`OnlineModel.open(model_dir, ...)` loads a packaged model version (the registry's files:
model.ubj, problem.json, metadata.json), verifies every checksum, and answers:

- `predict(body)`: validate a JSON body, score it, capture it (off the request path); a
  refused body is counted by capture as a rejection (its rows and reasons);
- `feedback(body)`: store an observed label for a prediction id, idempotently;
- `metadata()`: version, problem, metrics.

Every client mistake raises `serving.RequestError` with its status. Prediction ids carry an
HMAC tag, so any worker (or a restarted one) can tell an id this deployment issued from an
unknown one without shared state: feedback for an unknown id is a 404.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import from_json

from components.capture.buffer import Capture
from components.capture.chunks import FeatureMatrix
from components.capture.feedback import FeedbackConflictError
from components.capture.rejections import BODY
from components.core.problem import ProblemSpec
from components.core.store import Store
from components.model import training
from components.serving.contract import Predictor, RequestError, Scored, Validator
from components.serving.ids import PredictionIds, problem_secret


class ModelFilesError(RuntimeError):
    """A packaged model whose files are missing or do not match their checksums."""


@dataclass(frozen=True)
class ServingOptions:
    max_records: int = 1000
    flag_unknown_categories: bool = False
    id_secret: bytes | None = None  # an explicit secret (settings), else the store's
    # The store holding the problem's prediction-id secret (keys.prediction_id_secret);
    # None and no id_secret: a secret derived from the model (ids die with the version).
    id_store: Store | None = None


class OnlineModel:
    def __init__(
        self,
        spec: ProblemSpec,
        metadata: dict,
        predictor: Predictor,
        validator: Validator,
        ids: PredictionIds,
        capture: Capture | None,
    ):
        self.spec = spec
        self._metadata = metadata
        self.predictor = predictor
        self.validator = validator
        self.ids = ids
        self.capture = capture
        self._feedback = _feedback_model(spec)
        # The layouts of the feature matrix given to capture, one object each per model
        # (capture stacks matrices of one layout at flush time): all of it, categories as
        # codes; or, when unknown categories are flagged (NaN in the matrix, so kept as
        # sent instead), its numeric columns only.
        self._matrix_names = tuple(spec.input_features)
        self._matrix_categories = {n: predictor.categories(n) for n in spec.categorical_features}
        self._numeric = [
            j for j, n in enumerate(spec.input_features) if not spec.features[n].is_categorical
        ]
        self._numeric_names = tuple(self._matrix_names[j] for j in self._numeric)

    @classmethod
    def open(
        cls,
        model_dir: str | Path,
        *,
        options: ServingOptions = ServingOptions(),
        capture: Capture | None = None,
        nthread: int = 1,
    ) -> OnlineModel:
        """Load and verify a packaged model version from a folder."""
        folder = Path(model_dir)
        metadata = _verified_metadata(folder)
        spec = ProblemSpec.model_validate_json((folder / "problem.json").read_bytes())
        booster = training.load_model((folder / "model.ubj").read_bytes(), nthread=nthread)
        ids = _prediction_ids(options, spec, metadata)
        predictor = Predictor(
            spec,
            booster,
            version=metadata["version"],
            threshold=metadata.get("threshold"),
            new_ids=ids.new_many,
            flag_unknown=options.flag_unknown_categories,
        )
        validator = Validator(
            spec, max_records=options.max_records, flag_unknown=options.flag_unknown_categories
        )
        return cls(spec, metadata, predictor, validator, ids, capture)

    def predict(self, body: bytes) -> dict:
        try:
            records = self.validator.parse(body)
        except RequestError as exc:
            if self.capture is not None:
                self.capture.record_rejection(*_refused(exc, body))
            raise
        scored = self.predictor.predict_batch(records)
        if self.capture is not None:
            columns, features = self._columns(records, scored)
            self.capture.record_columns(columns, len(records), matrix=features)
        return {"predictions": scored.answers}

    def record_too_large(self) -> None:
        """Count a predict body refused before it reached predict() for being too large to
        read (413): one row, reason ("(body)", "too_large"); nothing with capture off."""
        if self.capture is not None:
            self.capture.record_rejection(1, [(BODY, "too_large")])

    def _columns(self, records, scored: Scored) -> tuple[dict, FeatureMatrix]:
        """A request for capture: the model's matrix as it is (numbers as sent, categories
        as codes), ids and times as sent, outputs as arrays. With unknown categories
        flagged, categories are kept as sent (an unknown one is NaN in the matrix) and the
        matrix gives the numbers only."""
        spec = self.spec
        # Tuples: once the garbage collector has seen that they hold only strings, times
        # and None, it stops walking them while they wait in the buffer (lists it walks on
        # every collection).
        columns: dict = {
            "prediction_id": tuple(scored.ids),
            "model_version": self.predictor.version,
        }
        # A column straight from the records' attributes: no dict per record first.
        for name in (spec.id_column, spec.event_time_column):
            columns[name] = tuple(map(attrgetter(name), records))
        if spec.is_classification:
            columns["probability"] = scored.scores
            columns["label"] = scored.labels
        else:
            columns["value"] = scored.scores
        if not self.predictor.flag_unknown:
            return columns, FeatureMatrix(
                scored.matrix, self._matrix_names, self._matrix_categories
            )
        columns["flags"] = [
            json.dumps(a["flags"], sort_keys=True) if "flags" in a else None for a in scored.answers
        ]
        for name in spec.categorical_features:
            columns[name] = tuple(map(attrgetter(name), records))
        return columns, FeatureMatrix(scored.matrix[:, self._numeric], self._numeric_names)

    def feedback(self, body: bytes) -> dict:
        try:
            item = self._feedback.model_validate_json(body)
        except ValidationError as exc:
            detail = [
                {
                    "field": ".".join(map(str, e["loc"])) or "(request)",
                    "message": e["msg"],
                    "type": e["type"],
                }
                for e in exc.errors()
            ]
            status = 400 if any(e["type"] == "json_invalid" for e in exc.errors()) else 422
            raise RequestError(status, "invalid feedback", detail) from None
        if not self.ids.issued(item.prediction_id):
            raise RequestError(
                404,
                f"unknown prediction id {item.prediction_id!r}: it was not issued for "
                f"problem '{self.spec.name}' here (ids from a model version served before "
                "the problem's id secret existed are recognised only by that version)",
            )
        if self.capture is None:
            raise RequestError(503, "feedback is not stored: capture is off in this service")
        try:
            created = self.capture.record_feedback(item.prediction_id, item.label)
        except FeedbackConflictError as exc:
            raise RequestError(409, str(exc)) from None
        return {
            "prediction_id": item.prediction_id,
            "stored": created,
            "status": "recorded" if created else "already recorded",
        }

    def metadata(self) -> dict:
        keys = (
            "version",
            "created_at",
            "snapshot_id",
            "metrics",
            "baseline",
            "threshold",
            "code_version",
        )
        return {
            **{k: self._metadata.get(k) for k in keys},
            "problem": self.spec.name,
            "task": self.spec.task,
            "target": self.spec.target,
            "features": {
                n: self.spec.features[n].model_dump(exclude_none=True)
                for n in self.spec.input_features
            },
            "max_records": self.validator.max_records,
        }

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()


def _refused(exc: RequestError, body: bytes) -> tuple[int, list[tuple[str, str]]]:
    """The rows and reasons of a refused predict body, as rejections count them
    (:mod:`components.capture.rejections`). Not JSON (400): one row, ("(body)",
    "json_invalid"). Otherwise every record of the body's list (at least one row), for the
    (field, check) of each detail entry; a refusal without detail is about the number of
    records: ("(request)", "too_long") for too many (413), ("(request)", "too_short") for
    none (422)."""
    if exc.status == 400:
        return 1, [(BODY, "json_invalid")]
    reasons = [(d["field"], d["type"]) for d in exc.detail]
    if not reasons:
        reasons = [("(request)", "too_long" if exc.status == 413 else "too_short")]
    # Parsed a second time, on refusals only: the validator's error does not say how many
    # records the body held.
    try:
        records = from_json(body).get("records")
    except (ValueError, AttributeError):  # not JSON, or not an object
        return 1, reasons
    return (len(records) if isinstance(records, list) and records else 1), reasons


def _feedback_model(spec: ProblemSpec) -> type[BaseModel]:
    target = spec.features[spec.target]
    label: Any = float
    if spec.is_classification:
        label = int
    options: dict[str, Any] = {"strict": True}
    if spec.is_classification:
        options.update(ge=0, le=1)
    elif target.min is not None or target.max is not None:
        options.update(ge=target.min, le=target.max)
    return create_model(
        "Feedback",
        __config__=ConfigDict(extra="forbid"),
        prediction_id=(str, Field(..., min_length=1, max_length=100)),
        label=(label, Field(..., **options)),
    )


def _verified_metadata(folder: Path) -> dict:
    try:
        metadata = json.loads((folder / "metadata.json").read_bytes())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFilesError(f"{folder}/metadata.json: cannot be read ({exc})") from None
    problems = []
    for name in ("model.ubj", "problem.json"):
        expected = metadata.get("files", {}).get(name)
        path = folder / name
        if expected is None or not path.is_file():
            problems.append(f"{name}: missing")
            continue
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected["sha256"]:
            problems.append(
                f"{name}: sha256 {actual[:12]}… does not match "
                f"{expected['sha256'][:12]}… in metadata.json"
            )
    if problems:
        raise ModelFilesError(
            f"{folder}: refusing to serve a tampered or incomplete model: " + "; ".join(problems)
        )
    return metadata


def _prediction_ids(options: ServingOptions, spec: ProblemSpec, metadata: dict) -> PredictionIds:
    """Ids under the explicit secret, else the problem's secret in the store, else one
    derived from the model. Ids this model issued under its derived secret (before the
    problem had one) are still recognised."""
    derived = _derived_secret(metadata)
    if options.id_secret:
        return PredictionIds(options.id_secret, also_accepted=(derived,))
    if options.id_store is not None:
        secret = problem_secret(options.id_store, spec.name)
        return PredictionIds(secret, also_accepted=(derived,))
    return PredictionIds(derived)


def _derived_secret(metadata: dict) -> bytes:
    # Stable for one model version in every worker and restart; MLOPS_PREDICTION_ID_SECRET
    # overrides it (ids then survive a model change, and cannot be forged by clients).
    seed = f"{metadata.get('problem')}:{metadata['files']['model.ubj']['sha256']}"
    return hashlib.sha256(seed.encode()).digest()
