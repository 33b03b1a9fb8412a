"""Store keys: the layout every writer and reader shares."""

from __future__ import annotations

from components.core import keys


def test_scores_keys_are_a_run_folder_under_the_output_prefix():
    assert keys.scores("scores", "churn", "v3", "abc123") == "scores/churn/v3/abc123"
    assert (
        keys.scores("scores", "churn", "v3", "abc123", "summary.json")
        == "scores/churn/v3/abc123/summary.json"
    )
    assert keys.scores("/team/scores/", "churn", "v3", "abc123") == "team/scores/churn/v3/abc123"
