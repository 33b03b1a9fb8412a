"""The retraining policy, case by case: what asks for a retraining, what holds it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from components.core.problem import RetrainingSpec
from components.retraining.policy import WindowSignal, decide, schedule_due

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)  # a Thursday
TRAINED = datetime(2026, 12, 1, 6, tzinfo=UTC)
POLICY = RetrainingSpec(schedule=None, min_new_labels=0)


def window(days_ago: int, **conditions) -> WindowSignal:
    start = (NOW - timedelta(days=days_ago)).replace(hour=0)
    return WindowSignal(start, {k.replace("_", "-"): v for k, v in conditions.items()})


def run(signals=(), policy=POLICY, retrainings=(), labels=0, requested=None):
    return decide(
        policy,
        list(signals),
        trained_at=TRAINED,
        retrainings=list(retrainings),
        new_labelled_rows=labels,
        now=NOW,
        requested=requested,
    )


def test_quiet_windows_ask_for_nothing():
    decision = run([window(2), window(1)])
    assert not decision.retrain and decision.reasons == () and decision.blocked == ()
    assert decision.summary() == "no retraining: nothing asks for it"


def test_a_drift_alert_asks_with_its_reasons():
    decision = run([window(2), window(1, drift_detected=["monthly_charges: PSI 0.93"])])
    assert decision.retrain
    assert decision.reasons == (
        "drift-detected in the window of 2026-12-02 00:00: monthly_charges: PSI 0.93",
    )


def test_a_performance_alert_asks_and_each_trigger_can_be_switched_off():
    signals = [window(1, performance_degraded=["calibration z=+6.8"])]
    assert run(signals).retrain
    off = RetrainingSpec(schedule=None, min_new_labels=0, on_performance_alert=False)
    assert not run(signals, policy=off).retrain
    no_drift = RetrainingSpec(schedule=None, min_new_labels=0, on_drift_alert=False)
    assert not run([window(1, drift_detected=["x"])], policy=no_drift).retrain


def test_a_quality_incident_waits_for_clean_data_even_with_drift_or_by_hand():
    incident = [window(1, drift_detected=["plan: PSI 0.3"], quality_failed=["rejections 2%"])]
    decision = run(incident)
    assert not decision.retrain
    assert decision.blocked[0].startswith("a data-quality incident in the latest window")
    assert not run(incident, requested="ops asked").retrain
    # Once a later window is clean, the earlier drift alert still asks.
    assert run([*incident, window(0)]).retrain


def test_the_quality_incident_alone_never_asks():
    assert run([window(1, quality_failed=["nulls in usage_hours"])]).reasons == ()


def test_a_cooldown_holds_back_a_second_retraining():
    signals = [window(1, drift_detected=["x"])]
    decision = run(signals, retrainings=[NOW - timedelta(hours=5)])
    assert not decision.retrain
    assert "cooling down" in decision.blocked[0] and "24 h" in decision.blocked[0]
    assert run(signals, retrainings=[NOW - timedelta(hours=25)]).retrain


def test_a_weekly_cap_stops_a_flapping_signal():
    signals = [window(1, drift_detected=["x"])]
    three = [NOW - timedelta(days=d) for d in (2, 4, 6)]
    decision = run(signals, retrainings=three)
    assert not decision.retrain
    assert decision.blocked == ("3 retrainings in the last 7 days (at most 3)",)
    assert run(signals, retrainings=three[:2]).retrain
    assert run(signals, retrainings=[NOW - timedelta(days=d) for d in (2, 4, 8)]).retrain


def test_by_hand_skips_the_cooldown_and_the_cap():
    decision = run(requested="new pricing", retrainings=[NOW - timedelta(hours=1)] * 3)
    assert decision.retrain
    assert decision.reasons == ("asked by hand: new pricing",)


def test_enough_new_labels_ask():
    policy = RetrainingSpec(schedule=None, min_new_labels=1000)
    assert not run(policy=policy, labels=999).retrain
    decision = run(policy=policy, labels=1000)
    assert decision.retrain and "1000 new labelled rows" in decision.reasons[0]


def test_the_schedule_asks_once_it_fired_after_training():
    weekly = RetrainingSpec(schedule="0 3 * * 1", min_new_labels=0)  # Mondays 03:00
    assert not run(policy=weekly).retrain  # trained Tuesday; next Monday is ahead
    assert schedule_due("0 3 * * 1", TRAINED, NOW) is None
    later = NOW + timedelta(days=5)  # the next Tuesday
    assert schedule_due("0 3 * * 1", TRAINED, later) == datetime(2026, 12, 7, 3, tzinfo=UTC)
    decision = decide(
        weekly, [], trained_at=TRAINED, retrainings=[], new_labelled_rows=0, now=later
    )
    assert decision.retrain and decision.reasons[0].startswith("scheduled (0 3 * * 1)")


def test_every_reason_is_kept():
    policy = RetrainingSpec(schedule=None, min_new_labels=10)
    decision = run(
        [window(2, drift_detected=["a"]), window(1, performance_degraded=["b"])],
        policy=policy,
        labels=50,
    )
    assert [r.split(" ")[0] for r in decision.reasons] == [
        "drift-detected",
        "performance-degraded",
        "50",
    ]


def test_a_bad_schedule_is_refused_in_the_problem_file():
    with pytest.raises(ValueError, match="not a cron expression"):
        RetrainingSpec(schedule="every monday")


def test_a_run_answers_the_alerts_judged_before_it():
    judged = NOW - timedelta(hours=20)
    alert = WindowSignal(judged.replace(hour=0), {"drift-detected": ["plan: PSI 0.4"]}, judged)
    ran = NOW - timedelta(hours=10)  # a retraining after that window was judged
    quiet = RetrainingSpec(schedule=None, min_new_labels=0, cooldown_hours=0)
    assert not run([alert], policy=quiet, retrainings=[ran]).retrain
    # Judged after the run (the champion still drifted): it asks again.
    again = WindowSignal(NOW.replace(hour=0), {"drift-detected": ["plan: PSI 0.5"]}, NOW)
    decision = run([alert, again], policy=quiet, retrainings=[ran])
    assert decision.retrain and "PSI 0.5" in decision.reasons[0]


def test_the_schedule_counts_from_the_last_run():
    weekly = RetrainingSpec(schedule="0 3 * * 3", min_new_labels=0, cooldown_hours=0)  # Wednesdays
    assert run(policy=weekly).retrain  # fired Wed 2026-12-02 03:00, after TRAINED
    after_firing = datetime(2026, 12, 2, 4, tzinfo=UTC)
    assert not run(policy=weekly, retrainings=[after_firing]).retrain
    before_firing = datetime(2026, 12, 2, 2, tzinfo=UTC)
    assert run(policy=weekly, retrainings=[before_firing]).retrain
