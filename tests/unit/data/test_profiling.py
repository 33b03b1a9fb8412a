"""The whylogs wrapper: the NumPy 2 shim is needed and sufficient; profiles round-trip."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from components.data.profiling import RunningProfile, merge_profiles, profile_frame, profile_summary


def test_whylogs_needs_the_numpy2_shim():
    # In a fresh interpreter, without the shim, whylogs fails on a string column; this is
    # the reason the shim exists. If this starts passing, the shim can be removed.
    code = (
        "import numpy as np, pandas as pd, whylogs as why\n"
        "assert not hasattr(np, 'unicode_')\n"
        "why.log(pandas=pd.DataFrame({'s': ['a', 'b']}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode != 0
    assert "unicode_" in run.stderr


def test_profile_summarises_every_column():
    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, np.nan],
            "n": pd.array([1, 2, None, 4], dtype="Int64"),
            "c": pd.Series(["a", "b", "a", None], dtype="str"),
        }
    )
    summary = profile_summary(profile_frame(frame))
    # The NumPy 2 shim is installed by the first profile (test_layers checks that importing
    # does not install it); without it, whylogs fails on the string column.
    assert np.unicode_ is np.str_
    assert set(summary.index) == {"x", "n", "c"}
    assert summary.loc["x", "count"] == 4
    assert summary.loc["x", "nulls"] == 1
    assert summary.loc["x", "mean"] == 2.0
    assert summary.loc["x", "max"] == 3.0
    assert summary.loc["c", "nulls"] == 1
    assert summary.loc["c", "distinct"] == pytest.approx(2)  # an HLL estimate


def test_merged_profile_counts_both_halves():
    one = profile_frame(pd.DataFrame({"x": [1.0, 2.0]}))
    two = profile_frame(pd.DataFrame({"x": [3.0, 4.0, 5.0]}))
    summary = profile_summary(merge_profiles([one, two]))
    assert summary.loc["x", "count"] == 5
    assert summary.loc["x", "min"] == 1.0
    assert summary.loc["x", "max"] == 5.0


# whylogs' own statistics reduce over the NaNs in this column and warn; the values are right.
@pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning")
def test_fast_float_path_gives_the_same_profile_as_whylogs_own():
    from components.data import profiling

    why, _ = profiling._whylogs()
    from whylogs.core.preprocessing import PreprocessedColumn

    fast = PreprocessedColumn._pandas_split
    rng = np.random.default_rng(0)
    values = rng.normal(size=5000)
    values[::7] = np.nan
    values[3] = np.inf
    values[11] = -np.inf
    frame = pd.DataFrame({"x": values, "y": values.astype("float32")})
    with_fast = profile_summary(profile_frame(frame))
    PreprocessedColumn._pandas_split = fast._original
    try:
        assert not getattr(PreprocessedColumn._pandas_split, "_vectorised_floats", False)
        own = why.log(pandas=frame).view()
        with_own = profile_summary(own.serialize())
        own_counts = own.to_pandas()[["counts/nan", "counts/inf", "counts/null"]]
    finally:
        PreprocessedColumn._pandas_split = fast
    exact = ["count", "nulls", "mean", "std", "min", "max"]
    pd.testing.assert_frame_equal(with_fast[exact], with_own[exact])
    # Quantiles come from KLL sketches, which compact at random: equal within sketch error.
    sketched = ["p25", "median", "p75"]
    pd.testing.assert_frame_equal(with_fast[sketched], with_own[sketched], atol=0.05)
    from whylogs.core import DatasetProfileView

    fast_counts = DatasetProfileView.deserialize(profile_frame(frame)).to_pandas()
    pd.testing.assert_frame_equal(
        fast_counts[["counts/nan", "counts/inf", "counts/null"]], own_counts
    )
    assert own_counts.loc["x", "counts/inf"] == 2


def _without_fast_paths(profile):
    """Run profile() with whylogs' own code in place of every fast path."""
    from components.data import profiling

    with profiling.whylogs_own_code():
        from whylogs.core.metrics.metrics import Metric

        assert not getattr(Metric.get_namespace, "_fast_path", False)
        return profile()


def _metrics(profile: bytes) -> dict:
    """Every metric whylogs reports per column; frequent items as {item: estimate}, NaN as text."""
    from components.data import profiling

    _, view_type = profiling._whylogs()
    view = view_type.deserialize(profile)
    out = {}
    for name, column in view.get_columns().items():
        for metric_name in column.get_metric_names():
            summary = column.get_metric(metric_name).to_summary_dict()
            for key, value in summary.items():
                if key == "frequent_strings":
                    value = {item.value: item.est for item in value}
                elif isinstance(value, float) and np.isnan(value):
                    value = "NaN"  # NaN != NaN, yet both paths agree on it
                out[(name, metric_name, key)] = value
    return out


@pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning")
def test_fast_text_int_and_count_paths_give_whylogs_own_metrics():
    rng = np.random.default_rng(1)
    n = 5000
    text = rng.choice(["north", "south", "east", "x" * 200, "y" * 130 + "a", "y" * 130 + "b"], n)
    nullable = text.astype(object)
    nullable[::9] = None
    nullable[5::11] = np.nan
    frame = pd.DataFrame(
        {
            "text": pd.Series(text, dtype=object),
            "text_nulls": pd.Series(nullable, dtype=object),
            "string_dtype": pd.Series(nullable, dtype="string"),
            "str_dtype": pd.Series(nullable, dtype="str"),
            "ints": rng.integers(0, 120, n),
            "ids": [f"id-{i}" for i in range(n)],  # mostly distinct: whylogs' own path
            "mixed": [1, "a", 2.5, None, True] * (n // 5),  # not all text: whylogs' own path
            "all_null": [None] * n,
            "floats": rng.normal(size=n),
        }
    )
    assert all(frame[name].dtype == np.dtype(object) for name in ("text", "text_nulls", "mixed"))
    halves = (frame.iloc[: n // 2], frame.iloc[n // 2 :])

    def profile():
        running = RunningProfile()
        for half in halves:
            running.track(half)
        return running.serialize()

    fast, own = _metrics(profile()), _without_fast_paths(lambda: _metrics(profile()))
    assert fast.keys() == own.keys()
    # Quantiles come from KLL sketches, which compact at random: compared within sketch error.
    sketched = {k for k in fast if k[1] == "distribution" and k[2].startswith("q_")}
    sketched |= {k for k in fast if k[1] == "distribution" and k[2] == "median"}
    assert {k: fast[k] for k in fast.keys() - sketched} == {
        k: own[k] for k in own.keys() - sketched
    }
    frequent = fast[("text", "frequent_items", "frequent_strings")]
    assert frequent["x" * 128] == (text == "x" * 200).sum()  # truncated as whylogs does
    assert frequent["y" * 128] == (np.char.startswith(text.astype(str), "y")).sum()
    assert fast[("text_nulls", "counts", "null")] == own[("text_nulls", "counts", "null")] > 0


def test_metric_namespaces_are_remembered_only_for_whylogs_standard_metrics():
    from dataclasses import dataclass

    from components.data import profiling

    profiling._whylogs()
    from whylogs.core.metrics.column_metrics import ColumnCountsMetric, TypeCountersMetric
    from whylogs.core.metrics.metrics import (
        CardinalityMetric,
        DistributionMetric,
        FrequentItemsMetric,
        IntsMetric,
        Metric,
    )
    from whylogs.core.metrics.unicode_range import UnicodeRangeMetric

    standard = (
        ColumnCountsMetric,
        TypeCountersMetric,
        CardinalityMetric,
        DistributionMetric,
        FrequentItemsMetric,
        IntsMetric,
        UnicodeRangeMetric,
    )
    assert Metric.get_namespace._fast_path
    for cls in standard:
        assert cls.get_namespace() == cls.get_namespace() == cls.zero().namespace

    names = iter(["first", "second"])

    @dataclass(frozen=True)
    class Changing(Metric):  # a namespace that is not a constant of its class
        label: str

        @property
        def namespace(self) -> str:
            return self.label

        @classmethod
        def zero(cls, config=None):
            return cls(next(names))

        def columnar_update(self, view):
            raise NotImplementedError

        def to_summary_dict(self, cfg=None):
            return {}

    assert (Changing.get_namespace(), Changing.get_namespace()) == ("first", "second")
