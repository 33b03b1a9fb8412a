"""Churn-like traffic and its sketches, for the monitoring tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data.profiling import column_sketches, profile_frame

ROWS = 2_000


def churn_like(seed: int, rows: int = ROWS, **changes) -> pd.DataFrame:
    """Rows of every churn input feature; ``changes`` replace columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(0, 121, rows),
            "contract": rng.choice(
                ["month-to-month", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2]
            ),
            "plan": rng.choice(["basic", "standard", "premium"], rows),
            "monthly_charges": rng.gamma(4.0, 16.0, rows),
            "total_charges": rng.gamma(2.0, 1500.0, rows),
            "payment_method": rng.choice(
                ["credit-card", "bank-transfer", "electronic-check", "mailed-check"], rows
            ),
            "region": rng.choice(["north", "south", "east", "west", "central"], rows),
            "support_calls": rng.poisson(2.0, rows),
            "usage_hours": rng.uniform(0, 300, rows),
            "tickets_open": rng.poisson(0.5, rows),
            "discount_pct": rng.uniform(0, 30, rows),
        }
    )
    for name, values in changes.items():
        frame[name] = values(rng, rows) if callable(values) else values
    return frame


def sketches(frame: pd.DataFrame):
    return column_sketches(profile_frame(frame))
