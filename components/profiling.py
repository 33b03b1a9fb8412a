"""Data profiles with whylogs. The only module that imports whylogs.

whylogs 1.6.4 is its last release and its upstream is no longer maintained, so it stays
behind this small interface (profile, serialise, merge, summarise) and can be replaced
without touching callers. Profiles cross the interface as bytes (whylogs' own protobuf
serialisation), never as whylogs objects.

NumPy 2 shim: NumPy 2.0 removed the alias `np.unicode_`; whylogs 1.6.4 still uses it when it
logs string columns, and `why.log` fails with AttributeError without it. `_whylogs()` sets
`np.unicode_ = np.str_` (the same type the alias pointed to in NumPy 1) just before the first
import of whylogs, never at import time of this module.

Float fast path: for a float column whylogs counts infinities with a Python lambda per
value (`series.apply(lambda x: np.isinf(x))`), about 1.5 s per million values, which made
profiling 80 % of the data stage. `_whylogs()` wraps its splitter so that plain NumPy float
columns are split with vectorised NumPy into exactly the same counts and arrays; every other
dtype takes whylogs' own path. A test checks both paths give identical profiles.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd


@cache
def _whylogs():
    """Import whylogs once, after installing the NumPy 2 compatibility shim."""
    if not hasattr(np, "unicode_"):
        np.unicode_ = np.str_
    import whylogs
    from whylogs.core import DatasetProfileView
    from whylogs.core.preprocessing import PreprocessedColumn

    if not getattr(PreprocessedColumn._pandas_split, "_vectorised_floats", False):
        PreprocessedColumn._pandas_split = _with_fast_floats(PreprocessedColumn._pandas_split)
    return whylogs, DatasetProfileView


def _with_fast_floats(split):
    """whylogs' splitter, with plain float64/float32 columns handled by vectorised NumPy."""

    def fast_split(self, series: pd.Series, parse_numeric_string: bool = False) -> None:
        if not (isinstance(series.dtype, np.dtype) and series.dtype.kind == "f"):
            return split(self, series, parse_numeric_string)
        values = series.to_numpy()
        nulls = np.isnan(values)
        floats = values[~nulls].astype(float)
        self.null_count = int(nulls.sum())
        self.nan_count = self.null_count  # in a NumPy float column every null is a NaN
        self.inf_count = int(np.isinf(floats).sum())
        self.numpy.floats = floats
        return None

    fast_split._vectorised_floats = True
    fast_split._original = split
    return fast_split


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

    Starting a whylogs profile costs about 20 ms (it deep-copies its schema of metrics),
    whatever the number of rows; adding a frame to a started one costs about 3 ms plus a
    little per row. Callers that profile a stream in small pieces (prediction capture) keep
    one running profile and serialise it now and then, instead of a profile per piece.
    """

    def __init__(self) -> None:
        self._profile = None
        self.rows = 0

    def track(self, frame: pd.DataFrame) -> None:
        if self._profile is None:
            _whylogs()
            from whylogs.core import DatasetProfile

            self._profile = DatasetProfile()
        self._profile.track(pandas=frame)
        self.rows += len(frame)

    def serialize(self) -> bytes:
        if self._profile is None:
            raise ValueError("nothing has been tracked in this profile yet")
        return self._profile.view().serialize()


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
