"""The problem definition (lifecycle stage 1): one YAML file, loaded into a ProblemSpec.

Everything downstream is derived from the spec: the Pandera schema, the service's request
model, the drift checks, the gate. `load_problem` turns every mistake in the file into a
`ProblemSpecError` whose lines name the file, the key and what is wrong.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Task = Literal["binary_classification", "regression"]
FeatureType = Literal["int", "float", "category", "bool"]

CLASSIFICATION_METRICS = {"roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "f1"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}
# Metrics where smaller is better; the gate and floors read them the other way round.
LOWER_IS_BETTER = {"log_loss", "brier", "rmse", "mae"}
# Metrics bounded to [0, 1], whose floors must lie in that interval.
UNIT_INTERVAL_METRICS = {"roc_auc", "pr_auc", "brier", "precision", "recall", "f1"}


class ProblemSpecError(ValueError):
    """A problem file that cannot be used, with one line per problem found."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid problem file {self.path}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One declared column: its type, the values it may take and whether it may be null."""

    type: FeatureType
    min: float | None = None
    max: float | None = None
    categories: list[str | int] | None = None
    nullable: bool = False
    monotone: Literal["increasing", "decreasing"] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check_domain(self) -> Feature:
        if self.categories is not None and len(self.categories) == 0:
            raise ValueError("categories is empty: list at least one allowed value")
        if self.categories is not None and len(set(self.categories)) != len(self.categories):
            raise ValueError("categories has duplicates")
        if self.type == "category" and self.categories is None:
            raise ValueError("a category feature needs 'categories'")
        if self.type in ("category", "bool") and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max do not apply to a {self.type} feature")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.monotone and self.type not in ("int", "float"):
            raise ValueError("monotone applies only to int or float features")
        return self

    @property
    def is_categorical(self) -> bool:
        return self.type == "category"


class ThresholdPolicy(_Strict):
    """How the decision threshold is chosen on validation data."""

    strategy: Literal["cost", "f1"] = "f1"
    false_positive_cost: float = Field(1.0, gt=0)
    false_negative_cost: float = Field(1.0, gt=0)


class MetricSpec(_Strict):
    primary: str
    floors: dict[str, float] = Field(default_factory=dict)
    champion_margin: float = Field(0.0, ge=0)
    threshold: ThresholdPolicy = ThresholdPolicy()

    @property
    def higher_is_better(self) -> bool:
        return self.primary not in LOWER_IS_BETTER


class SliceSpec(_Strict):
    """A slice to report metrics on: a categorical column, or a numeric one cut into bins."""

    column: str
    bins: list[float] | None = None
    name: str | None = None

    @field_validator("bins")
    @classmethod
    def _bins_increase(cls, bins: list[float] | None) -> list[float] | None:
        if bins is not None and (len(bins) < 2 or any(a >= b for a, b in pairwise(bins))):
            raise ValueError("bins must be at least two strictly increasing edges")
        return bins

    @property
    def label(self) -> str:
        return self.name or self.column


class DataQualitySpec(_Strict):
    max_quarantined_fraction: float = Field(0.05, ge=0, le=1)
    extra_columns: Literal["error", "ignore"] = "error"


class FeatureDriftSpec(_Strict):
    """PSI of each feature against the champion's reference profile: numbers over the
    reference's quantile bins, categories over their values."""

    psi_warn: float = Field(0.10, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    bins: int = Field(10, ge=2, le=100)
    epsilon: float = Field(1e-4, gt=0, lt=0.01)

    @model_validator(mode="after")
    def _warn_below_alert(self) -> FeatureDriftSpec:
        if self.psi_warn > self.psi_alert:
            raise ValueError(f"psi_warn ({self.psi_warn}) is above psi_alert ({self.psi_alert})")
        return self


class PredictionDriftSpec(_Strict):
    """The window's scores against the champion's score reference: a warning when both the
    KS test and the mean shift say so (a large window makes KS significant for nothing)."""

    ks_p_value: float = Field(1e-3, gt=0, lt=1)
    min_mean_shift: float = Field(0.02, ge=0)


class QualityMonitorSpec(_Strict):
    """Data quality of served traffic, from the window's profile, the spec and rejections."""

    null_rate_factor: float = Field(2.0, ge=1)
    null_rate_p_value: float = Field(1e-4, gt=0, lt=1)
    max_rejection_rate: float = Field(0.005, ge=0, le=1)


class PerformanceSpec(_Strict):
    """Performance once labels arrive, and its estimate from the scores until then."""

    min_labelled_rows: int = Field(1000, ge=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    calibration_z: float = Field(3.9, gt=0)
    trailing_windows: int = Field(3, ge=1)
    degradation_p_value: float = Field(1e-3, gt=0, lt=1)
    estimated_drop_warn: float = Field(0.02, gt=0)


class MonitoringSpec(_Strict):
    window: str = Field("1d", pattern=r"^\d+[mhd]$")
    min_rows: int = Field(500, ge=1)
    drift: FeatureDriftSpec = FeatureDriftSpec()
    prediction: PredictionDriftSpec = PredictionDriftSpec()
    quality: QualityMonitorSpec = QualityMonitorSpec()
    performance: PerformanceSpec = PerformanceSpec()


class TrainingDataSpec(_Strict):
    """What a retraining trains on: the reference snapshot's rows and the labelled
    production rows, of the most recent ``window_days`` (None: all), each weighted by its
    age (halved every ``recency_half_life_days``; None: equal weights)."""

    window_days: float | None = Field(None, gt=0)
    recency_half_life_days: float | None = Field(None, gt=0)
    holdout_min_rows: int = Field(1000, ge=1)  # the held-out recent windows hold at least this


class ShadowSpec(_Strict):
    """Limits on how far the challenger's answers on the last window's traffic may move from
    the champion's before promotion is blocked (None: reported, never blocking)."""

    max_changed_labels: float | None = Field(None, ge=0, le=1)  # share of rows
    max_mean_shift: float | None = Field(None, ge=0)  # |mean score change|


class RetrainingSpec(_Strict):
    on_drift_alert: bool = True
    on_performance_alert: bool = True
    schedule: str | None = None
    min_new_labels: int = Field(1000, ge=0)
    cooldown_hours: float = Field(24, ge=0)
    max_per_week: int = Field(3, ge=1)
    training_data: TrainingDataSpec = TrainingDataSpec()
    shadow: ShadowSpec = ShadowSpec()

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(value, datetime.now(UTC))
            except CronSimError as exc:
                raise ValueError(f"not a cron expression ({exc})") from None
        return value


Severity = Literal["info", "warn", "alert"]


class _Channel(_Strict):
    min_severity: Severity | None = None


class LogChannel(_Channel):
    type: Literal["log"]


class JsonlChannel(_Channel):
    type: Literal["jsonl"]
    path: str


class SlackChannel(_Channel):
    type: Literal["slack"]
    webhook_url: str | None = None
    webhook_url_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SlackChannel:
        if (self.webhook_url is None) == (self.webhook_url_env is None):
            raise ValueError("give exactly one of webhook_url or webhook_url_env")
        return self


class SnsChannel(_Channel):
    type: Literal["sns"]
    topic_arn: str | None = None
    topic_arn_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SnsChannel:
        if (self.topic_arn is None) == (self.topic_arn_env is None):
            raise ValueError("give exactly one of topic_arn or topic_arn_env")
        return self


class PrefectBlockChannel(_Channel):
    """A Prefect notification block saved on the Prefect server, by its name."""

    type: Literal["prefect"]
    block: str = Field(min_length=1)


Channel = Annotated[
    LogChannel | JsonlChannel | SlackChannel | SnsChannel | PrefectBlockChannel,
    Field(discriminator="type"),
]


class AlertSpec(_Strict):
    min_severity: Severity = "warn"
    channels: list[Channel] = Field(default_factory=lambda: [LogChannel(type="log")])


class ProblemSpec(_Strict):
    """A problem, as declared in problems/<name>.yaml."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str
    task: Task
    target: str
    id_column: str
    event_time_column: str
    label_delay_days: int = Field(0, ge=0)
    features: dict[str, Feature] = Field(min_length=2)
    metric: MetricSpec
    slices: list[SliceSpec] = Field(default_factory=list)
    data_quality: DataQualitySpec = DataQualitySpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    retraining: RetrainingSpec = RetrainingSpec()
    alerts: AlertSpec = AlertSpec()
    schema_version: int = Field(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _moved_sections(cls, data: object) -> object:
        if isinstance(data, dict) and "drift" in data and "monitoring" not in data:
            raise ValueError(
                "drift: this section is now monitoring (window, min_rows, drift, prediction, "
                "quality, performance); see problems/churn.yaml"
            )
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> ProblemSpec:
        problems = [
            *self._column_problems(),
            *self._target_problems(),
            *self._metric_problems(),
            *self._slice_problems(),
        ]
        if problems:
            # One line per problem; _describe splits them back into separate messages.
            raise ValueError("\n".join(problems))
        return self

    def _column_problems(self) -> list[str]:
        out = []
        for key in ("id_column", "event_time_column"):
            column = getattr(self, key)
            if column in self.features:
                out.append(f"{key}: '{column}' must not also be declared under features")
        if self.id_column == self.event_time_column:
            out.append("event_time_column: names the same column as id_column")
        return out

    def _target_problems(self) -> list[str]:
        if self.target not in self.features:
            declared = ", ".join(self.features)
            return [f"target: '{self.target}' is not declared under features ({declared})"]
        target = self.features[self.target]
        if target.nullable:
            return [f"features.{self.target}.nullable: the target must not be nullable"]
        if self.task == "binary_classification" and not (
            target.type == "bool" or sorted(target.categories or []) == [0, 1]
        ):
            return [
                f"features.{self.target}: the target of a binary_classification task must be "
                "bool or declare categories [0, 1]"
            ]
        if self.task == "regression" and target.type not in ("int", "float"):
            return [
                f"features.{self.target}.type: the target of a regression task must be int or float"
            ]
        if not self.input_features:
            return ["features: no input features are declared besides the target"]
        return []

    def _metric_problems(self) -> list[str]:
        allowed = CLASSIFICATION_METRICS if self.is_classification else REGRESSION_METRICS
        choices = ", ".join(sorted(allowed))
        out = []
        if self.metric.primary not in allowed:
            out.append(
                f"metric.primary: '{self.metric.primary}' does not apply to task {self.task} "
                f"(choose from {choices})"
            )
        for name, floor in self.metric.floors.items():
            key = f"metric.floors.{name}"
            if name not in allowed:
                out.append(f"{key}: not a metric of task {self.task} (choose from {choices})")
            elif not math.isfinite(floor):
                out.append(f"{key}: must be a finite number")
            elif name in UNIT_INTERVAL_METRICS and not 0 <= floor <= 1:
                out.append(f"{key}: {floor} is outside [0, 1]")
        return out

    def _slice_problems(self) -> list[str]:
        out = []
        for i, s in enumerate(self.slices):
            feature = self.features.get(s.column)
            if feature is None or s.column == self.target:
                out.append(f"slices.{i}.column: '{s.column}' is not an input feature")
            elif s.bins is None and feature.type in ("int", "float") and feature.categories is None:
                out.append(f"slices.{i}.bins: a slice on numeric column '{s.column}' needs bins")
        return out

    @property
    def is_classification(self) -> bool:
        return self.task == "binary_classification"

    @property
    def input_features(self) -> list[str]:
        """The model's inputs: every declared feature except the target, in file order."""
        return [name for name in self.features if name != self.target]

    @property
    def categorical_features(self) -> list[str]:
        return [n for n in self.input_features if self.features[n].is_categorical]


def load_problem(path: str | Path) -> ProblemSpec:
    """Read and validate a problem file; raise ProblemSpecError naming every problem in it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProblemSpecError(path, ["file not found"]) from None
    except OSError as exc:
        raise ProblemSpecError(path, [f"cannot be read: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f"line {where.line + 1}, column {where.column + 1}: " if where else ""
        problem = f"{at}not valid YAML ({getattr(exc, 'problem', exc)})"
        raise ProblemSpecError(path, [problem]) from None
    if not isinstance(raw, dict):
        raise ProblemSpecError(path, ["the top level must be a mapping of keys to values"])
    return parse_problem(raw, source=path)


def parse_problem(raw: dict, source: str | Path = "<problem>") -> ProblemSpec:
    """Validate an already-parsed mapping (used by load_problem and by tests)."""
    try:
        return ProblemSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [line for err in exc.errors() for line in _describe(err)]
        raise ProblemSpecError(source, problems) from None


def _describe(err: dict) -> list[str]:
    # Discriminated unions add the tag to the location ("channels.0.slack.webhook_url");
    # keep the path as the user wrote it.
    loc = ".".join(str(p) for p in err["loc"] if p not in ("log", "jsonl", "slack", "sns"))
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        msg = "unknown key (check its spelling; see problems/churn.yaml for the allowed keys)"
    elif kind == "missing":
        msg = "required key is missing"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    elif "input" in err and len(repr(err["input"])) <= 60:
        msg = f"{msg} (got {err['input']!r})"
    # A model-level check reports several problems, each already prefixed with its key.
    return [f"{loc}: {line}" if loc else line for line in msg.splitlines()]
