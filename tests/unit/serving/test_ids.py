"""Prediction ids: distinct, recognised only with their secret, in a format that stays."""

from __future__ import annotations

import hashlib

from components.serving.ids import PredictionIds


def test_prediction_ids_are_distinct_and_recognised_only_with_their_secret():
    ids = PredictionIds(b"secret").new_many(1000)
    assert len(set(ids)) == 1000
    assert all(len(i) == 48 and int(i, 16) >= 0 for i in ids)
    assert all(PredictionIds(b"secret").issued(i) for i in ids[:50])
    assert not any(PredictionIds(b"other").issued(i) for i in ids[:50])
    forged = ids[0][:31] + ("0" if ids[0][31] != "0" else "1") + ids[0][32:]
    assert not PredictionIds(b"secret").issued(forged)
    assert PredictionIds(b"secret").new_many(0) == []


def test_prediction_ids_keep_their_format_so_ids_already_issued_stay_valid():
    """The tag is keyed BLAKE2b (8 bytes) of the 32 random hex digits; a change to how
    it is computed must not change what it is, or feedback for earlier ids gets a 404."""
    # An id as the first release issued it (its tag computed then, kept as a literal).
    assert PredictionIds(b"secret").issued("0123456789abcdef" * 2 + "5b3fbbe6210c8047")
    assert not PredictionIds(b"secret").issued("0123456789abcdef" * 2 + "5b3fbbe6210c8048")
    for prediction_id in PredictionIds(b"secret").new_many(3):
        key = prediction_id[:32].encode()
        assert prediction_id[32:] == hashlib.blake2b(key, key=b"secret", digest_size=8).hexdigest()
