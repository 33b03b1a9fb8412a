"""The quality scenario's incident: one corrupted cell in a share of the post-drift rows.

Four kinds, split evenly: a null where the contract forbids it, a value outside the
declared range, a unit change (monthly charges in cents) and a category the contract does
not know. Each corrupted cell is listed, so tests can check that validation quarantines
exactly those rows. The generator (`components.data.datagen`) calls this; its module
docstring gives the data-generating process.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CORRUPTION_KINDS = ("null", "out_of_range", "unit_change", "unseen_category")


def no_corruptions(id_column: str) -> pd.DataFrame:
    """The corruptions table of a scenario that corrupts nothing."""
    return pd.DataFrame({id_column: [], "column": [], "kind": []}, dtype="str")


# kind -> the (column, bad value) options it may use; one option is picked per corrupted row.
# A bad value is made from a magnitude in 1..12 and the clean value of the cell.
_CORRUPTIONS = {
    "null": (
        ("tenure_months", lambda m, clean: None),
        ("monthly_charges", lambda m, clean: None),
        ("payment_method", lambda m, clean: None),
    ),
    "out_of_range": (
        ("tenure_months", lambda m, clean: -m),  # -1..-12
        ("support_calls", lambda m, clean: 50 + 4 * m),  # 54..98
    ),
    "unit_change": (("monthly_charges", lambda m, clean: clean * 100),),  # cents; >= 1500
    "unseen_category": (
        ("payment_method", lambda m, clean: "crypto"),
        ("region", lambda m, clean: "international"),
    ),
}


def corrupt(
    frame: pd.DataFrame,
    id_column: str,
    post: np.ndarray,
    fraction: float,
    seed: np.random.SeedSequence,
) -> pd.DataFrame:
    """Corrupt one cell in each of round(fraction x post-drift rows) rows, in place, split
    evenly across the kinds; return the corrupted cells. tenure_months becomes Int64."""
    rng = np.random.default_rng(seed)
    post_rows = np.flatnonzero(post)
    n_bad = int(np.floor(fraction * len(post_rows) + 0.5))
    rows = np.sort(rng.choice(post_rows, size=n_bad, replace=False))
    kind = rng.permutation(n_bad) % len(CORRUPTION_KINDS)
    pick, magnitude = rng.random(n_bad), rng.integers(1, 13, n_bad)
    column = np.empty(n_bad, dtype=object)
    frame["tenure_months"] = frame["tenure_months"].astype("Int64")
    for k, name in enumerate(CORRUPTION_KINDS):
        options = _CORRUPTIONS[name]
        option = (pick * len(options)).astype(np.int64)
        for j, (target, bad_value) in enumerate(options):
            hit = (kind == k) & (option == j)
            column[hit] = target
            if hit.any():
                where = frame.columns.get_loc(target)
                clean = frame.iloc[rows[hit], where].to_numpy()
                frame.iloc[rows[hit], where] = bad_value(magnitude[hit], clean)
    return pd.DataFrame(
        {
            id_column: frame[id_column].to_numpy()[rows],
            "column": column,
            "kind": np.array(CORRUPTION_KINDS, dtype=object)[kind],
        },
        dtype="str",
    )
