"""Data profiles with whylogs. The only module that imports whylogs.

whylogs 1.6.4 is its last release and its upstream is no longer maintained, so it stays
behind this small interface (profile, serialise, merge, summarise) and can be replaced
without touching callers. Profiles cross the interface as bytes (whylogs' own protobuf
serialisation), never as whylogs objects.

NumPy 2 shim: NumPy 2.0 removed the alias `np.unicode_`; whylogs 1.6.4 still uses it when it
logs string columns, and `why.log` fails with AttributeError without it. `_whylogs()` sets
`np.unicode_ = np.str_` (the same type the alias pointed to in NumPy 1) just before the first
import of whylogs, never at import time of this module.

Fast paths: whylogs 1.6.4 does much of its per-value work in Python, which made profiling
most of the data stage's time (figures: benchmarks/README.md). `_whylogs()` wraps three of its
functions so that the common column types take vectorised paths with the same results;
anything else takes whylogs' own code. Tests compare both paths on every column type.

- Floats: its splitter counts infinities with a Python lambda per value
  (`series.apply(lambda x: np.isinf(x))`). Plain NumPy
  float columns are split with NumPy into the same counts and arrays.
- Text: for an object column its splitter runs six Python lambdas per value to sort values
  into floats, ints, bools, strings, tensors and other objects. A column whose non-null
  values are all `str` (checked in C by `pandas.api.types.infer_dtype`) goes straight to
  the strings, as whylogs already does for a column of a string dtype.
- Frequent items and cardinality: whylogs feeds every value of an int or text column to
  its frequent-items sketch (text truncated to 128 characters in Python first) and to its
  HyperLogLog sketch. These now get each distinct value once: the HyperLogLog sketch with
  the value (repeats never change it), the frequent-items sketch with the value and its
  count as the weight, the sketch's own weighted update. The results are the same values
  whylogs computes: frequent-items counts are exact until a column has more distinct
  values than the sketch keeps (768), and past that stay within the sketch's error
  bounds, which only depend on the total weight. A column that is mostly distinct values
  (ids) gains nothing from counting first and takes whylogs' own path.
- Metric namespaces: whylogs learns a metric class's namespace by building an empty metric
  (`cls.zero().namespace`), every time it sets up a column. For the unicode-range metric
  that is a deep copy, asked for each text column, and most of the cost of starting a
  profile. The namespaces of whylogs'
  standard metrics are constants and are remembered per class.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd


@cache
def _whylogs():
    """Import whylogs once, with its usage telemetry off (it would post to whylogs.com
    from every process that profiles), after installing the NumPy 2 compatibility shim and
    the fast paths."""
    if not hasattr(np, "unicode_"):
        np.unicode_ = np.str_
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
    import whylogs
    import whylogs.api.usage_stats as usage_stats

    usage_stats._TELEMETRY_DISABLED = True  # also when whylogs was imported before
    from whylogs.core import DatasetProfileView
    from whylogs.core.metrics.metrics import CardinalityMetric, FrequentItemsMetric, Metric
    from whylogs.core.preprocessing import PreprocessedColumn

    for owner, name, fast in (
        (PreprocessedColumn, "_pandas_split", _fast_split),
        (FrequentItemsMetric, "columnar_update", _fast_frequent_items),
        (CardinalityMetric, "columnar_update", _fast_cardinality),
    ):
        original = getattr(owner, name)
        if not getattr(original, "_fast_path", False):
            setattr(owner, name, fast(original))
    if not getattr(Metric.get_namespace, "_fast_path", False):
        Metric.get_namespace = _fast_namespace(Metric.__dict__["get_namespace"])
    return whylogs, DatasetProfileView


def _fast_path(wrapper, original):
    wrapper._fast_path = True
    wrapper._original = original
    return wrapper


def _fast_split(split):
    """whylogs' splitter, with float columns and all-text object columns vectorised."""
    from whylogs.core.preprocessing import NumpyView

    def fast_split(self, series: pd.Series, parse_numeric_string: bool = False) -> None:
        if isinstance(series.dtype, np.dtype) and series.dtype.kind == "f":
            values = series.to_numpy()
            nulls = np.isnan(values)
            floats = values[~nulls].astype(float)
            self.null_count = int(nulls.sum())
            self.nan_count = self.null_count  # in a NumPy float column every null is a NaN
            self.inf_count = int(np.isinf(floats).sum())
            self.numpy.floats = floats
            return None
        if (
            series.dtype == object
            and not parse_numeric_string
            and pd.api.types.infer_dtype(series, skipna=True) == "string"
        ):
            # What whylogs' own per-value path gives for such a column, down to the types
            # of the empty arrays.
            nulls = series.isna().to_numpy()
            null_series, non_null = series[nulls], series[~nulls]
            self.null_count = len(null_series)
            if len(null_series):
                numbers = null_series[null_series.apply(pd.api.types.is_number)]
                self.nan_count = int(numbers.astype(float).isna().sum()) if len(numbers) else 0
            self.numpy = NumpyView(
                floats=np.array([], dtype=object), ints=np.array([], dtype=np.int64)
            )
            self.pandas.strings = non_null
            self.pandas.tensors = pd.Series([], dtype="object")
            self.pandas.objs = non_null.iloc[:0]
            return None
        return split(self, series, parse_numeric_string)

    return _fast_path(fast_split, split)


def _fast_namespace(get_namespace: classmethod) -> classmethod:
    """``Metric.get_namespace``, remembered per class for whylogs' standard metrics (whose
    namespace is a constant of the class); any other metric class asks whylogs each time."""
    from whylogs.core.metrics.column_metrics import ColumnCountsMetric, TypeCountersMetric
    from whylogs.core.metrics.metrics import (
        CardinalityMetric,
        DistributionMetric,
        FrequentItemsMetric,
        IntsMetric,
    )
    from whylogs.core.metrics.unicode_range import UnicodeRangeMetric

    standard = {
        ColumnCountsMetric,
        TypeCountersMetric,
        CardinalityMetric,
        DistributionMetric,
        FrequentItemsMetric,
        IntsMetric,
        UnicodeRangeMetric,
    }
    known: dict[type, str] = {}
    ask = get_namespace.__func__

    def fast_namespace(cls, config=None) -> str:
        namespace = known.get(cls)
        if namespace is None:
            namespace = ask(cls, config)
            if cls in standard:
                known[cls] = namespace
        return namespace

    return classmethod(_fast_path(fast_namespace, get_namespace))


def _distinct(view) -> tuple[pd.Series | None, pd.Series | None] | None:
    """(int value counts, text value counts) when a preprocessed column holds nothing but
    NumPy ints and pandas text (and so can be counted), else None. Counted once per column
    and kept on the view for the next metric."""
    if not hasattr(view, "_distinct"):
        view._distinct = _count_distinct(view)
    return view._distinct


def _count_distinct(view) -> tuple[pd.Series | None, pd.Series | None] | None:
    numpy, lists, pandas_ = view.numpy, view.list, view.pandas
    if (
        numpy.strings is not None
        or (numpy.floats is not None and len(numpy.floats))
        or view.bool_count
        or any(v is not None and len(v) for v in (pandas_.tensors, pandas_.objs))
        or any(v for v in (lists.ints, lists.floats, lists.strings, lists.objs, lists.tensors))
        or (numpy.ints is None and pandas_.strings is None)
    ):
        return None
    ints = texts = None
    if numpy.ints is not None and len(numpy.ints):
        ints = pd.Series(numpy.ints).value_counts(sort=False)
    if pandas_.strings is not None and len(pandas_.strings):
        texts = pandas_.strings.value_counts(sort=False, dropna=False)
    total = sum(len(c) for c in (ints, texts) if c is not None)
    values = (0 if numpy.ints is None else len(numpy.ints)) + (
        0 if pandas_.strings is None else len(pandas_.strings)
    )
    if total * 2 > values:  # mostly distinct: counting first saves nothing
        return None
    return ints, texts


def _fast_frequent_items(update):
    from whylogs.core.metrics.metrics import OperationResult

    def fast_update(self, view):
        counted = _distinct(view)
        if counted is None:
            return update(self, view)
        ints, texts = counted
        sketch = self.frequent_strings.value
        successes = 0
        if ints is not None:  # as whylogs' update_np writes them
            for value, count in ints.items():
                sketch.update(str(value), int(count))
            successes += int(ints.sum())
        if texts is not None:  # truncated as whylogs truncates them
            for value, count in texts.items():
                sketch.update(value[0 : self.max_frequent_item_size], int(count))
            successes += int(texts.sum())
        return OperationResult.ok(successes)

    return _fast_path(fast_update, update)


def _fast_cardinality(update):
    from whylogs.core.metrics.metrics import OperationResult

    def fast_update(self, view):
        counted = _distinct(view)
        if counted is None:
            return update(self, view)
        ints, texts = counted
        sketch = self.hll.value
        successes = 0
        if ints is not None:
            sketch.update_np(ints.index.to_numpy())
            successes += int(ints.sum())
        if texts is not None:
            sketch.update_str_list(texts.index.to_list())
            successes += int(texts.sum())
        return OperationResult.ok(successes)

    return _fast_path(fast_update, update)


@contextmanager
def whylogs_own_code() -> Iterator[None]:
    """Within the block, whylogs runs its own code in place of every fast path (to compare
    results and costs against it); the fast paths are back afterwards. Not thread-safe."""
    _whylogs()
    from whylogs.core.metrics.metrics import CardinalityMetric, FrequentItemsMetric, Metric
    from whylogs.core.preprocessing import PreprocessedColumn

    owners = (
        (PreprocessedColumn, "_pandas_split"),
        (FrequentItemsMetric, "columnar_update"),
        (CardinalityMetric, "columnar_update"),
        (Metric, "get_namespace"),
    )
    # As the classes hold them (a classmethod must not come back as a bound method).
    fast = [vars(owner)[name] for owner, name in owners]
    try:
        for owner, name in owners:
            setattr(owner, name, getattr(owner, name)._original)
        yield
    finally:
        for (owner, name), wrapper in zip(owners, fast, strict=True):
            setattr(owner, name, wrapper)


def warm_up() -> None:
    """Import whylogs now (over a second), so that the first profile is not slow."""
    _whylogs()


def profile_frame(frame: pd.DataFrame) -> bytes:
    """Profile every column of `frame` and return the serialised profile."""
    running = RunningProfile()
    running.track(frame)
    return running.serialize()


class RunningProfile:
    """A profile that frames are added to one after another, serialised when wanted.

    Callers that profile a stream in pieces keep one running profile and serialise it when
    wanted, instead of a profile per piece and a merge of them all. Pieces are tracked in
    batches of at least ``batch_rows`` rows: whylogs pays a fixed cost per column on every
    call, which small pieces would pay many times over (memory holds one batch).
    """

    def __init__(self, batch_rows: int = 500_000) -> None:
        self._profile = None
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self.batch_rows = batch_rows
        self.rows = 0

    def track(self, frame: pd.DataFrame) -> None:
        self._pending.append(frame)
        self._pending_rows += len(frame)
        self.rows += len(frame)
        if self._pending_rows >= self.batch_rows:
            self._track_pending()

    def _track_pending(self) -> None:
        if not self._pending:
            return
        if self._profile is None:
            _whylogs()
            from whylogs.core import DatasetProfile

            self._profile = DatasetProfile()
        pending = self._pending
        frame = pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
        self._pending, self._pending_rows = [], 0
        self._profile.track(pandas=_without_categoricals(frame))

    def serialize(self) -> bytes:
        self._track_pending()
        if self._profile is None:
            raise ValueError("nothing has been tracked in this profile yet")
        return self._profile.view().serialize()


def _without_categoricals(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with pandas categorical columns as columns of their categories' type.

    whylogs casts a categorical column that holds nulls to float and fails ("Cannot cast
    str dtype to float64"); captured chunks read back their dictionary columns as
    categoricals. Profiled as plain values they give what the same values in a plain
    column give."""
    categorical = [
        name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)
    ]
    if not categorical:
        return frame
    return frame.astype({name: frame[name].cat.categories.dtype for name in categorical})


def merge_profiles(profiles: list[bytes]) -> bytes:
    """Merge serialised profiles (e.g. per-window profiles into one) into one."""
    if not profiles:
        raise ValueError("merge_profiles needs at least one profile")
    _, view_type = _whylogs()
    views = [view_type.deserialize(p) for p in profiles]
    merged = views[0]
    for view in views[1:]:
        merged = merged.merge(view)
    return merged.serialize()


def profile_summary(profile: bytes) -> pd.DataFrame:
    """One row per column: counts, nulls, mean, standard deviation, min, quantiles, max."""
    _, view_type = _whylogs()
    table = view_type.deserialize(profile).to_pandas()
    wanted = {
        "counts/n": "count",
        "counts/null": "nulls",
        "distribution/mean": "mean",
        "distribution/stddev": "std",
        "distribution/min": "min",
        "distribution/q_25": "p25",
        "distribution/median": "median",
        "distribution/q_75": "p75",
        "distribution/max": "max",
        "cardinality/est": "distinct",
    }
    present = [c for c in wanted if c in table.columns]
    return table[present].rename(columns=wanted).sort_index()


@dataclass(frozen=True, eq=False)
class ColumnSketch:
    """What monitoring reads of one column of a profile, as plain values.

    ``count`` counts every row, nulls (None and NaN) included. The distribution sketch
    (KLL, randomised, a rank error under 1%) holds the column's non-null numbers;
    ``frequent`` holds its most frequent values as text with their estimated counts (exact
    while the column has fewer distinct values than the sketch keeps, about 768), empty for
    a float column.
    """

    count: int
    nulls: int
    numbers: int
    min: float | None
    max: float | None
    mean: float | None
    frequent: dict[str, float]
    _kll: Any = field(default=None, repr=False)

    def cdf(self, points: Sequence[float]) -> np.ndarray:
        """The share of the column's numbers below each of ``points`` (increasing)."""
        if not self.numbers:
            return np.full(len(points), np.nan)
        return np.asarray(self._kll.get_cdf([float(p) for p in points])[:-1])

    def quantiles(self, ranks: Sequence[float]) -> np.ndarray:
        """The values at normalised ``ranks`` in [0, 1] of the column's numbers."""
        if not self.numbers:
            return np.full(len(ranks), np.nan)
        return np.asarray(self._kll.get_quantiles([float(r) for r in ranks]))


def column_sketches(profile: bytes) -> dict[str, ColumnSketch]:
    """Every column of the serialised ``profile`` as a :class:`ColumnSketch`."""
    _, view_type = _whylogs()
    view = view_type.deserialize(profile)
    return {name: _sketch(view.get_column(name)) for name in view.get_columns()}


def _sketch(column) -> ColumnSketch:
    counts = column.get_metric("counts").to_summary_dict()
    distribution = column.get_metric("distribution")
    kll = distribution.kll.value if distribution is not None else None
    numbers = int(kll.get_n()) if kll is not None else 0
    frequent_items = column.get_metric("frequent_items")
    frequent = {}
    if frequent_items is not None:
        for item in frequent_items.to_summary_dict().get("frequent_strings", []):
            frequent[str(item.value)] = float(item.est)
    return ColumnSketch(
        count=int(counts.get("n", 0)),
        nulls=int(counts.get("null", 0)),
        numbers=numbers,
        min=float(kll.get_min_value()) if numbers else None,
        max=float(kll.get_max_value()) if numbers else None,
        mean=float(distribution.avg) if numbers else None,
        frequent=frequent,
        _kll=kll,
    )
