"""Every store key, built in one place.

The store is a flat namespace of keys; this module is the only one that spells them, so the
layout below is the whole contract between the writers and the readers::

    snapshots/<problem>/<snapshot_id>/{data.parquet,profile.bin,manifest.json}
    snapshots/<problem>/LATEST                        pointer to the newest snapshot (CAS)
    quarantine/<problem>/<input_id>/{report.json,rows.parquet}
    models/<problem>/registry.json                    versions, aliases, history (CAS)
    models/<problem>/versions/<version>/<file>        a version's files, create-only
    bentos/<problem>/<version>/<file>.bento           the smoke-tested bento
    scores/<problem>/<version>/<input_id>/<file>      batch scores (``scores``: the output prefix)
    captures/<problem>/date=YYYY-MM-DD/hour=HH/<chunk>.parquet
    feedback/<problem>/<prediction_id>.json
    rejections/<problem>/date=YYYY-MM-DD/hour=HH/<counts>.json  refused rows by minute and reason
    profiles/<problem>/window=YYYYMMDDTHHMMSSZ/<file>  whylogs profiles of a window
    profiles/<problem>/window=.../chunks=<digest>.{json,bin}  the profile job's ledger, profile
    profiles/<problem>/_lease                         the profile job's lease (CAS)

Functions return keys without a trailing slash; the ``*_prefix`` ones end in ``/`` and are
meant for ``Store.list``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_COMPACT = "%Y%m%dT%H%M%SZ"
_CAPTURE_HOUR = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.parquet$")
_WINDOW = re.compile(r"/window=(\d{8}T\d{6}Z)/")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")


def is_safe_name(name: object) -> bool:
    """Whether ``name`` may be part of a key: up to 200 letters, digits, '_', '.', ':' or
    '-', not starting with '.', ':' or '-' (no folders, no hidden or temporary files)."""
    return isinstance(name, str) and _SAFE_NAME.match(name) is not None


def _utc(moment: datetime) -> datetime:
    """Aware times converted to UTC; naive ones are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# ------------------------------------------------------------------ data


def snapshots_prefix(problem: str) -> str:
    return f"snapshots/{problem}"


def snapshot(problem: str, snapshot_id: str, name: str | None = None) -> str:
    """The snapshot's folder, or one of its files."""
    folder = f"{snapshots_prefix(problem)}/{snapshot_id}"
    return folder if name is None else f"{folder}/{name}"


def latest_snapshot(problem: str) -> str:
    return f"{snapshots_prefix(problem)}/LATEST"


def quarantine(problem: str, input_id: str, name: str) -> str:
    return f"quarantine/{problem}/{input_id}/{name}"


# ------------------------------------------------------------------ models


def registry(problem: str) -> str:
    return f"models/{problem}/registry.json"


def model_version(problem: str, version: str, name: str | None = None) -> str:
    """A registered version's folder, or one of its files."""
    folder = f"models/{problem}/versions/{version}"
    return folder if name is None else f"{folder}/{name}"


def bento(problem: str, version: str, name: str) -> str:
    return f"bentos/{problem}/{version}/{name}"


# ------------------------------------------------------------------ scores


def scores(root: str, problem: str, version: str, input_id: str, name: str | None = None) -> str:
    """A batch-scoring run's folder, or one of its files: the scores of one input (a snapshot
    id or a file's content id) with one model version, under the key prefix ``root`` the
    user chose as output (surrounding slashes ignored)."""
    folder = f"{root.strip('/')}/{problem}/{version}/{input_id}"
    return folder if name is None else f"{folder}/{name}"


# ------------------------------------------------------------------ capture


def captures_prefix(problem: str) -> str:
    return f"captures/{problem}/"


def _hour_folder(prefix: str, hour: datetime) -> str:
    hour = _utc(hour)
    return f"{prefix}date={hour:%Y-%m-%d}/hour={hour:%H}"


def _hour_of(pattern: re.Pattern, key: str) -> datetime | None:
    m = pattern.search(key)
    if m is None:
        return None
    return datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def capture_folder(problem: str, hour: datetime) -> str:
    """The partition of the chunks whose rows were captured in ``hour`` (UTC)."""
    return _hour_folder(captures_prefix(problem), hour)


def capture_chunk(problem: str, hour: datetime, name: str) -> str:
    """A chunk of the rows captured in ``hour``; ``name`` is unique to its writer."""
    return f"{capture_folder(problem, hour)}/{name}.parquet"


def capture_hour(key: str) -> datetime | None:
    """The hour a capture chunk's key is partitioned under; None for any other key."""
    return _hour_of(_CAPTURE_HOUR, key)


def feedback_prefix(problem: str) -> str:
    return f"feedback/{problem}/"


def feedback(problem: str, prediction_id: str) -> str:
    return f"feedback/{problem}/{prediction_id}.json"


def prediction_id_secret(problem: str) -> str:
    """The problem's prediction-id key: created once, kept across model versions."""
    return f"secrets/{problem}/prediction-ids.key"


# ------------------------------------------------------------------ rejections
# The rows the service refused, counted by minute and reason (components.capture.rejections):
# one small create-only object per worker, flush and hour, beside the captures and laid out
# like them.

_REJECTION_HOUR = re.compile(
    r"^rejections/[^/]+/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.json$"
)


def rejections_prefix(problem: str) -> str:
    return f"rejections/{problem}/"


def rejection_folder(problem: str, hour: datetime) -> str:
    """The partition of the rejection counts of ``hour`` (UTC)."""
    return _hour_folder(rejections_prefix(problem), hour)


def rejection_counts(problem: str, hour: datetime, name: str) -> str:
    """One flush's rejection counts of ``hour``; ``name`` is unique to its writer."""
    return f"{rejection_folder(problem, hour)}/{name}.json"


def rejection_hour(key: str) -> datetime | None:
    """The hour a rejection counts key is partitioned under; None for any other key."""
    return _hour_of(_REJECTION_HOUR, key)


# ------------------------------------------------------------------ profiles


def profiles_prefix(problem: str) -> str:
    return f"profiles/{problem}/"


def profile_window(problem: str, start: datetime) -> str:
    """The folder holding every profile of the window that starts at ``start``."""
    return f"profiles/{problem}/window={_utc(start).strftime(_COMPACT)}"


def profile_window_start(key: str) -> datetime | None:
    """The window start a profile key is filed under; None for any other key."""
    return _compact_time(_WINDOW, key)


def _compact_time(pattern: re.Pattern, key: str) -> datetime | None:
    """The UTC time (``_COMPACT``, the pattern's first group) in ``key``, or None."""
    m = pattern.search(key)
    return datetime.strptime(m.group(1), _COMPACT).replace(tzinfo=UTC) if m else None


_LEDGER = "chunks="


def profile_ledger(problem: str, start: datetime, digest: str) -> str:
    """The profile job's list of the chunks it profiled into one profile of a window."""
    return f"{profile_window(problem, start)}/{_LEDGER}{digest}.json"


def ledger_profile(ledger_key: str) -> str:
    """The profile written beside a ledger."""
    return ledger_key.removesuffix(".json") + ".bin"


def is_profile_ledger(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith(_LEDGER) and name.endswith(".json")


def profile_lease(problem: str) -> str:
    return f"profiles/{problem}/_lease"


# ------------------------------------------------------------------ monitoring
# One report per monitored window (components.monitoring.monitor), written once, and its
# HTML page beside it.

_REPORT = re.compile(r"^monitoring/[^/]+/reports/window=(\d{8}T\d{6}Z)\.json$")


def monitoring_prefix(problem: str) -> str:
    return f"monitoring/{problem}/reports/"


def monitoring_report(problem: str, start: datetime) -> str:
    return f"{monitoring_prefix(problem)}window={_utc(start):{_COMPACT}}.json"


def monitoring_page(problem: str, start: datetime) -> str:
    """The report's self-contained HTML page (components.monitoring.report_page), beside
    it; :func:`monitoring_report_start` does not match it, so the history reads reports only."""
    return monitoring_report(problem, start).removesuffix(".json") + ".html"


def monitoring_report_start(key: str) -> datetime | None:
    """The window start of a report's key; None for any other key."""
    return _compact_time(_REPORT, key)


# ------------------------------------------------------------------ retraining
# One record per retraining run (components.retraining.history): started, then its outcome.

_RETRAINING_RUN = re.compile(r"^retraining/[^/]+/runs/(\d{8}T\d{6}Z)-[^/]+\.json$")


def retraining_runs_prefix(problem: str) -> str:
    return f"retraining/{problem}/runs/"


def retraining_run(problem: str, started_at: datetime, run_id: str) -> str:
    return f"{retraining_runs_prefix(problem)}{_utc(started_at):{_COMPACT}}-{run_id}.json"


def retraining_run_start(key: str) -> datetime | None:
    """The start time of a retraining run's key; None for any other key."""
    return _compact_time(_RETRAINING_RUN, key)
