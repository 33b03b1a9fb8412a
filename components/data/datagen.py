"""Seeded, deterministic churn data with drift scenarios: the embedded default data source.

`generate(GeneratorConfig(...))` returns one row per customer observed on one day, with the
columns of `problems/churn.yaml` (in file order) between `customer_id`/`event_time` and
`label_time`: ints int64, floats float64 (NaN for nulls), categories plain strings (pandas
"str", not "category"), times `datetime64[us, UTC]`. Everything is vectorised NumPy; nothing
happens at import time. Its speed and
peak memory are measured by `benchmarks/datagen.py`.

Data-generating process (DGP)
-----------------------------
Calendar. Rows are spread over `days` daily batches starting at `start` (UTC). Each day
gets one row, and the rest are shared out in proportion to a weekly pattern (Mon and Fri
1.05, Tue-Thu 1.0, Sat 0.85, Sun 0.8) by largest remainder, so volume is deterministic and
every day has rows. `event_time` is uniform within its day (microseconds, `datetime64[us,
UTC]`); rows are sorted by it and `customer_id` ("C" + zero-padded row number, 8 digits or
more) follows that order, so ids are unique and identical across scenarios.

Features, in drawing order (t = tenure_months):

- tenure_months = min(floor(Exponential(mean 30)), 120); about 3 % are 0 (first month).
- contract ~ multinomial logit on tenure: scores 0 (month-to-month),
  -1.2 + 0.03 t (one-year), -2.6 + 0.05 t (two-year). New customers are ~73 % monthly;
  long-tenure ones mostly on two-year contracts.
- plan | contract: basic/standard/premium with probabilities (.45, .35, .20) for
  month-to-month, (.35, .38, .27) one-year, (.28, .40, .32) two-year.
- discount_pct: with probability .15 / .35 / .50 (by contract) a discount of
  clip(round(5 + Gamma(2, 6)), 5, 60) percent, else 0.
- monthly_charges = max(15, (plan price + add-ons) x (1 - discount/100)), plan prices
  25 / 55 / 95 USD, add-ons ~ Gamma(2, 8) (mean 16), rounded to cents. The 15 USD minimum
  bill keeps every charge >= 15, so a cents-for-dollars error (x100) always exceeds 500.
- total_charges = tenure x monthly_charges x LogNormal(0, 0.1), rounded to cents, clipped
  to 100000; null (NaN) for tenure 0.
- payment_method | contract: electronic-check is most common on month-to-month
  (credit-card, bank-transfer, electronic-check, mailed-check) = (.25, .20, .40, .15),
  (.33, .30, .22, .15) one-year, (.35, .33, .15, .17) two-year.
- region: (north, south, east, west, central) = (.22, .20, .20, .23, .15), independent.
- support_calls = min(Poisson(Gamma(2, 0.7) x (1 + 0.8 exp(-t / 12))), 50): overdispersed,
  higher for new customers.
- usage_hours = clip(LogNormal(log 80, 0.8) x (.85 / 1.0 / 1.1 by contract), 0, 744),
  rounded to 0.1 h.
- tickets_open = min(Binomial(support_calls, 0.25), 20).

Churn. With sigma the logistic function and [.] an indicator,

    eta = -3.4
          + 2.4 exp(-t / 10)                               decaying tenure effect
          + (0, -0.9, -1.7)[contract]
          + 1.5 [month-to-month] sigma((monthly_charges - 75) / 8)   interaction
          + 2.2 (1 - exp(-support_calls / 3))              saturating, strictly increasing
          + 0.15 min(tickets_open, 6)
          + 2.0 exp(-usage_hours / 20)                     low-usage effect
          + 0.55 [electronic-check]
          - 1.0 (1 - exp(-discount_pct / 15))              saturating discount effect
          + (0, 0.1, 0, 0, 0.2)[region]
    p(x)  = 0.02 + 0.96 sigma(eta)

The 2 % floor and 2 % ceiling are churn for reasons outside the data (moves, deaths,
accidental cancellations). churned = [u < p(x)] with u ~ U(0, 1) drawn once per row: the
Bernoulli draw is the only noise, so `true_churn_probability` is exactly P(churn | x).
The baseline churn rate is about 22 %; on 50k held-out rows the true p(x) scores ROC AUC
~0.835 and scikit-learn's HistGradientBoosting ~0.83-0.84 (a linear model ~0.82).

Scenarios (rows with day index >= drift_day; earlier rows are identical in all four)
-----------------------------------------------------------------------------------
Every base quantity, including u, is drawn from its own child stream of
`SeedSequence(seed)` regardless of the scenario; scenario randomness comes from separate
child streams. So for one seed:

- none: no drift.
- covariate: plan is re-drawn (own stream) from premium-heavy probabilities
  ((.25, .35, .40), (.18, .37, .45), (.12, .38, .50) by contract), list prices rise 20 %
  and monthly_charges / total_charges follow with the same add-on, discount and billing
  draws. Labels still come from the baseline p(x) on the drifted features: P(x) moves,
  P(churn | x) does not.
- concept: features are identical to none; labels come from the post-drift function
  eta + 0.3 + 2.5 [two-year] sigma((t - 36) / 6): a competitor targets long-tenure,
  two-year customers, plus a small general rise. P(churn | x) moves, P(x) does not.
- quality: round(quality_fraction x post-drift rows) rows (own stream) each get exactly
  one corrupted cell, split evenly across four kinds: null (tenure_months,
  monthly_charges or payment_method), out_of_range (tenure_months -1..-12 or
  support_calls 54..98), unit_change (monthly_charges x 100) and unseen_category
  (payment_method "crypto" or region "international"). Labels and every other cell are
  identical to none; `Generated.corruptions` lists each corrupted cell. In this scenario
  tenure_months is always nullable "Int64" (even when no null lands); other int columns
  stay int64 and total_charges keeps its NaN nulls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from components.data import corruption

SCENARIOS = ("none", "covariate", "concept", "quality")

ID = "customer_id"
EVENT_TIME = "event_time"
TARGET = "churned"
LABEL_TIME = "label_time"
FEATURES = (
    "tenure_months",
    "contract",
    "plan",
    "monthly_charges",
    "total_charges",
    "payment_method",
    "region",
    "support_calls",
    "usage_hours",
    "tickets_open",
    "discount_pct",
)
COLUMNS = (ID, EVENT_TIME, *FEATURES, TARGET, LABEL_TIME)

CONTRACTS = ("month-to-month", "one-year", "two-year")
PLANS = ("basic", "standard", "premium")
PAYMENT_METHODS = ("credit-card", "bank-transfer", "electronic-check", "mailed-check")
REGIONS = ("north", "south", "east", "west", "central")

_US_PER_DAY = 86_400_000_000
_WEEKDAY_WEIGHT = np.array([1.05, 1.0, 1.0, 1.0, 1.05, 0.85, 0.8])  # Monday first
_MAX_TENURE = 120
_MIN_BILL = 15.0
_PLAN_PRICE = np.array([25.0, 55.0, 95.0])
_PRICE_RISE = 1.2
# Rows: contract (month-to-month, one-year, two-year); columns: categories in order.
_PLAN_P = np.array([[0.45, 0.35, 0.20], [0.35, 0.38, 0.27], [0.28, 0.40, 0.32]])
_PLAN_P_DRIFTED = np.array([[0.25, 0.35, 0.40], [0.18, 0.37, 0.45], [0.12, 0.38, 0.50]])
_PAYMENT_P = np.array(
    [[0.25, 0.20, 0.40, 0.15], [0.33, 0.30, 0.22, 0.15], [0.35, 0.33, 0.15, 0.17]]
)
_REGION_P = np.array([[0.22, 0.20, 0.20, 0.23, 0.15]])  # one group: independent of all
_DISCOUNT_P = np.array([0.15, 0.35, 0.50])
_USAGE_FACTOR = np.array([0.85, 1.0, 1.1])
# Logit tables end with NaN so that code -1 (unknown category) gives NaN, not a value.
_CONTRACT_EFFECT = np.array([0.0, -0.9, -1.7, np.nan])
_REGION_EFFECT = np.array([0.0, 0.1, 0.0, 0.0, 0.2, np.nan])
_ECHECK = PAYMENT_METHODS.index("electronic-check")
_BASE_STREAMS = (
    "calendar",
    "tenure",
    "contract",
    "plan",
    "discount",
    "addons",
    "billing",
    "payment",
    "region",
    "support",
    "usage",
    "tickets",
    "label",
)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; every field is validated on construction (ValueError names it)."""

    rows: int = 100_000
    days: int = 90  # rows are spread over this many daily batches
    start: date = date(2026, 1, 1)  # first batch day (UTC)
    seed: int = 42
    scenario: str = "none"  # one of SCENARIOS
    drift_day: int = 60  # 0-based day index from which the scenario applies
    label_delay_days: int = 30  # labels arrive this long after the event time
    quality_fraction: float = 0.02  # share of post-drift rows corrupted (quality scenario)

    def __post_init__(self) -> None:
        problems = []
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario={self.scenario!r} is unknown; allowed: {SCENARIOS}")
        if not _is_int(self.days) or self.days < 1:
            problems.append(f"days={self.days!r} must be an integer >= 1")
        elif not _is_int(self.rows) or self.rows < self.days:
            problems.append(
                f"rows={self.rows!r} must be an integer >= days ({self.days}) "
                "so that every daily batch has rows"
            )
        if not _is_int(self.seed) or self.seed < 0:
            problems.append(f"seed={self.seed!r} must be an integer >= 0")
        if not isinstance(self.start, date) or isinstance(self.start, datetime):
            problems.append(f"start={self.start!r} must be a datetime.date (a day, not a time)")
        if not _is_int(self.drift_day) or self.drift_day < 0:
            problems.append(f"drift_day={self.drift_day!r} must be an integer >= 0")
        elif self.scenario in SCENARIOS[1:] and _is_int(self.days) and self.drift_day >= self.days:
            problems.append(
                f"drift_day={self.drift_day} must be < days ({self.days}) for scenario "
                f"{self.scenario!r}, or no row would drift"
            )
        if not _is_int(self.label_delay_days) or self.label_delay_days < 0:
            problems.append(f"label_delay_days={self.label_delay_days!r} must be an integer >= 0")
        if not isinstance(self.quality_fraction, int | float) or not (
            0.0 <= self.quality_fraction <= 1.0
        ):
            problems.append(f"quality_fraction={self.quality_fraction!r} must be in [0, 1]")
        if problems:
            raise ValueError("invalid GeneratorConfig: " + "; ".join(problems))

    @property
    def drift_start(self) -> datetime:
        """The UTC instant from which the scenario applies (midnight of day `drift_day`)."""
        start = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return start + timedelta(days=self.drift_day)


@dataclass(frozen=True, eq=False)
class Generated:
    """The generated rows, plus the corrupted cells (quality scenario only, else empty)."""

    frame: pd.DataFrame
    corruptions: pd.DataFrame  # columns customer_id, column, kind; one row per corrupted cell


def generate(config: GeneratorConfig) -> Generated:
    """Generate `config.rows` rows following the DGP and scenario in the module docstring."""
    rngs, covariate_ss, quality_ss = _streams(config.seed)
    day, time_us = _draw_calendar(config, rngs["calendar"])
    post = day >= config.drift_day if config.scenario != "none" else np.zeros(len(day), bool)
    x = _draw_features(rngs, config.rows)
    if config.scenario == "covariate":
        _apply_price_and_plan_drift(x, post, np.random.default_rng(covariate_ss))
    p = _probability(x, concept=False)
    if config.scenario == "concept":
        p[post] = _probability({k: v[post] for k, v in x.items()}, concept=True)
    churned = (rngs["label"].random(config.rows) < p).astype(np.int64)
    frame = _build_frame(config, time_us, x, churned)
    corruptions = corruption.no_corruptions(ID)
    if config.scenario == "quality":
        corruptions = corruption.corrupt(frame, ID, post, config.quality_fraction, quality_ss)
    return Generated(frame=frame, corruptions=corruptions)


def true_churn_probability(frame: pd.DataFrame, concept: bool = False) -> np.ndarray:
    """The DGP's P(churn | features) for each row: the baseline function, or with
    `concept=True` the post-concept-drift one. NaN where a feature is null or unknown."""
    x = {
        "tenure": _as_float(frame["tenure_months"]),
        "contract": _codes(frame["contract"], CONTRACTS),
        "monthly": _as_float(frame["monthly_charges"]),
        "payment": _codes(frame["payment_method"], PAYMENT_METHODS),
        "region": _codes(frame["region"], REGIONS),
        "calls": _as_float(frame["support_calls"]),
        "usage": _as_float(frame["usage_hours"]),
        "tickets": _as_float(frame["tickets_open"]),
        "discount": _as_float(frame["discount_pct"]),
    }
    return _probability(x, concept=concept)


def training_rows(frame: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Rows whose label has arrived by `as_of` (label_time <= as_of), without label_time:
    what a warehouse export for training holds. A naive `as_of` is read as UTC."""
    arrived = frame[LABEL_TIME] <= _utc(as_of)
    return frame.loc[arrived].drop(columns=[LABEL_TIME]).reset_index(drop=True)


def traffic_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """What production sees: id, event time and input features (no target, no label_time)."""
    return frame[[ID, EVENT_TIME, *FEATURES]].reset_index(drop=True)


def label_rows(frame: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Feedback labels arrived by `as_of` (label_time <= as_of): id, target, label_time."""
    arrived = frame[LABEL_TIME] <= _utc(as_of)
    return frame.loc[arrived, [ID, TARGET, LABEL_TIME]].reset_index(drop=True)


def daily_batches(frame: pd.DataFrame) -> Iterator[tuple[date, pd.DataFrame]]:
    """Yield (UTC day, rows with event_time on that day) in day order; the index is kept."""
    days = frame[EVENT_TIME].dt.floor("D")
    for day, batch in frame.groupby(days, sort=True):
        yield day.date(), batch


# --- drawing -------------------------------------------------------------------------------


def _streams(seed: int):
    """One generator per base quantity, plus the covariate and quality seed sequences.

    Base streams never depend on the scenario, so pre-drift rows match across scenarios."""
    base, covariate, quality = np.random.SeedSequence(seed).spawn(3)
    children = map(np.random.default_rng, base.spawn(len(_BASE_STREAMS)))
    rngs = dict(zip(_BASE_STREAMS, children, strict=True))
    return rngs, covariate, quality


def _draw_calendar(config: GeneratorConfig, rng: np.random.Generator):
    """Day index and UTC epoch microseconds per row, sorted by time."""
    counts = _rows_per_day(config)
    day = np.repeat(np.arange(config.days, dtype=np.int64), counts)
    offset = day * _US_PER_DAY + rng.integers(0, _US_PER_DAY, config.rows)
    offset.sort()  # stays grouped by day: the day is the leading part of the key
    start_us = (config.start - date(1970, 1, 1)).days * _US_PER_DAY
    return day, start_us + offset


def _rows_per_day(config: GeneratorConfig) -> np.ndarray:
    """One row per day, the rest by weekday weight with largest-remainder rounding."""
    weekday = (config.start.weekday() + np.arange(config.days)) % 7
    weight = _WEEKDAY_WEIGHT[weekday]
    share = (config.rows - config.days) * weight / weight.sum()
    counts = np.floor(share).astype(np.int64)
    short = config.rows - config.days - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:short]] += 1
    return counts + 1


def _draw_features(rngs: dict[str, np.random.Generator], n: int) -> dict[str, np.ndarray]:
    """The base feature draws (categories as integer codes), identical for every scenario."""
    tenure = np.minimum(np.floor(rngs["tenure"].exponential(30.0, n)), _MAX_TENURE)
    contract = _draw_contract(tenure, rngs["contract"])
    calls_rate = rngs["support"].gamma(2.0, 0.7, n) * (1.0 + 0.8 * np.exp(-tenure / 12.0))
    calls = np.minimum(rngs["support"].poisson(calls_rate), 50)
    usage = rngs["usage"].lognormal(np.log(80.0), 0.8, n) * _USAGE_FACTOR[contract]
    x = {
        "tenure": tenure,
        "contract": contract,
        "plan": _draw_by_group(_PLAN_P, contract, rngs["plan"].random(n)),
        "discount": _draw_discount(contract, rngs["discount"]),
        "addons": rngs["addons"].gamma(2.0, 8.0, n),
        "billing": rngs["billing"].lognormal(0.0, 0.1, n),
        "payment": _draw_by_group(_PAYMENT_P, contract, rngs["payment"].random(n)),
        "region": _draw_by_group(_REGION_P, np.zeros(n, np.int64), rngs["region"].random(n)),
        "calls": calls.astype(np.float64),
        "usage": np.round(np.clip(usage, 0.0, 744.0), 1),
        "tickets": np.minimum(rngs["tickets"].binomial(calls, 0.25), 20).astype(np.float64),
    }
    _price(x, np.ones(n, dtype=bool), rise=1.0)
    return x


def _draw_contract(tenure: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multinomial logit on tenure: scores 0, -1.2 + 0.03 t, -2.6 + 0.05 t."""
    one_year = np.exp(-1.2 + 0.03 * tenure)
    two_year = np.exp(-2.6 + 0.05 * tenure)
    total = 1.0 + one_year + two_year
    u = rng.random(len(tenure)) * total  # compare on the unnormalised scale
    return (u > 1.0).astype(np.int64) + (u > 1.0 + one_year)


def _draw_by_group(prob: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one category code per row from row `group` of `prob`."""
    cdf = np.cumsum(prob, axis=1)
    code = np.zeros(len(u), dtype=np.int64)
    for j in range(prob.shape[1] - 1):
        code += u > cdf[group, j]
    return code


def _draw_discount(contract: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(contract)
    has_discount = rng.random(n) < _DISCOUNT_P[contract]
    amount = np.clip(np.round(5.0 + rng.gamma(2.0, 6.0, n)), 5.0, 60.0)
    return np.where(has_discount, amount, 0.0)


def _price(x: dict[str, np.ndarray], rows: np.ndarray, rise: float) -> None:
    """(Re)compute monthly and total charges on `rows` from plan, add-ons and discount."""
    list_price = (_PLAN_PRICE[x["plan"][rows]] + x["addons"][rows]) * rise
    monthly = np.round(np.maximum(_MIN_BILL, list_price * (1.0 - x["discount"][rows] / 100)), 2)
    tenure = x["tenure"][rows]
    total = np.round(np.minimum(tenure * monthly * x["billing"][rows], 100_000.0), 2)
    total[tenure == 0] = np.nan
    x.setdefault("monthly", np.empty(len(rows)))[rows] = np.minimum(monthly, 500.0)
    x.setdefault("total", np.empty(len(rows)))[rows] = total


def _apply_price_and_plan_drift(
    x: dict[str, np.ndarray], post: np.ndarray, rng: np.random.Generator
) -> None:
    """Covariate drift: premium-heavy plan mix and a 20 % list-price rise from drift_day."""
    redrawn = _draw_by_group(_PLAN_P_DRIFTED, x["contract"], rng.random(len(post)))
    x["plan"] = np.where(post, redrawn, x["plan"])
    _price(x, post, rise=_PRICE_RISE)


# --- churn ---------------------------------------------------------------------------------


def _probability(x: dict[str, np.ndarray], concept: bool) -> np.ndarray:
    """p(x) = 0.02 + 0.96 sigma(eta); see the module docstring for eta."""
    tenure, contract = x["tenure"], x["contract"]
    m2m = np.where(contract < 0, np.nan, contract == 0)
    eta = (
        -3.4
        + 2.4 * np.exp(-tenure / 10.0)
        + _CONTRACT_EFFECT[contract]
        + 1.5 * m2m * _sigmoid((x["monthly"] - 75.0) / 8.0)
        + 2.2 * (1.0 - np.exp(-x["calls"] / 3.0))
        + 0.15 * np.minimum(x["tickets"], 6.0)
        + 2.0 * np.exp(-x["usage"] / 20.0)
        + 0.55 * np.where(x["payment"] < 0, np.nan, x["payment"] == _ECHECK)
        - 1.0 * (1.0 - np.exp(-x["discount"] / 15.0))
        + _REGION_EFFECT[x["region"]]
    )
    if concept:
        two_year = np.where(contract < 0, np.nan, contract == 2)
        eta = eta + 0.3 + 2.5 * two_year * _sigmoid((tenure - 36.0) / 6.0)
    return 0.02 + 0.96 * _sigmoid(eta)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# --- frames --------------------------------------------------------------------------------


def _build_frame(
    config: GeneratorConfig, time_us: np.ndarray, x: dict[str, np.ndarray], churned: np.ndarray
) -> pd.DataFrame:
    n = config.rows
    width = max(8, len(str(n)))
    ids = "C" + pd.Series(np.arange(1, n + 1), dtype=np.int64).astype("str").str.zfill(width)
    event_time = pd.Series(time_us.astype("datetime64[us]")).dt.tz_localize("UTC")
    columns = {
        ID: ids,
        EVENT_TIME: event_time,
        "tenure_months": x["tenure"].astype(np.int64),
        "contract": _strings(x["contract"], CONTRACTS),
        "plan": _strings(x["plan"], PLANS),
        "monthly_charges": x["monthly"],
        "total_charges": x["total"],
        "payment_method": _strings(x["payment"], PAYMENT_METHODS),
        "region": _strings(x["region"], REGIONS),
        "support_calls": x["calls"].astype(np.int64),
        "usage_hours": x["usage"],
        "tickets_open": x["tickets"].astype(np.int64),
        "discount_pct": x["discount"],
        TARGET: churned,
        LABEL_TIME: event_time + pd.Timedelta(days=config.label_delay_days),
    }
    return pd.DataFrame({name: _plain(values) for name, values in columns.items()})


def _plain(values) -> pd.Series | np.ndarray:
    return values.reset_index(drop=True) if isinstance(values, pd.Series) else values


def _strings(codes: np.ndarray, categories: tuple[str, ...]) -> pd.Series:
    """Category codes as a plain string column (pandas "str" dtype, not "category")."""
    return pd.Series(np.array(categories, dtype=object)[codes], dtype="str")


# --- small helpers -------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _as_float(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _codes(series: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Integer codes in `categories` order; -1 for null or unknown values."""
    codes = np.full(len(series), -1, dtype=np.int64)
    for code, category in enumerate(categories):  # vectorised per category, fast on arrow strings
        codes[(series == category).to_numpy(dtype=bool, na_value=False)] = code
    return codes


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
