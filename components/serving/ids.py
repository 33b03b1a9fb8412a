"""Prediction ids that carry an HMAC tag, so any worker (or a restarted one) can tell an id
this deployment issued from an unknown one without shared state."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets

from components.core import keys
from components.core.store import KeyNotFoundError, ObjectExistsError, Store

_TAG_HEX = 16
ID_LENGTH = 32 + _TAG_HEX  # characters of a prediction id: random hex, then the tag


class PredictionIds:
    """Issues ids of the form <32 random hex><16 hex HMAC tag> and recognises them."""

    def __init__(self, secret: bytes, *, also_accepted: tuple[bytes, ...] = ()):
        # Keyed BLAKE2b is a MAC in one C call (the hmac module's Python layers cost more
        # than the hash); keying once and copying the keyed state per id is cheaper again.
        self._keyed = hashlib.blake2b(key=secret[:64], digest_size=_TAG_HEX // 2)
        # Secrets whose ids are still recognised but no longer issued (an earlier scheme).
        self._accepted = [PredictionIds(s) for s in also_accepted]

    def new_many(self, n: int) -> list[str]:
        """``n`` new ids, from one read of the system's random source (a read per id, as
        ``secrets.token_hex`` does, is a large share of a big request's CPU)."""
        hexed = os.urandom(16 * n).hex()
        tokens = [hexed[i : i + 32] for i in range(0, 32 * n, 32)]
        return [token + self._tag(token) for token in tokens]

    def issued(self, prediction_id: str) -> bool:
        if len(prediction_id) != ID_LENGTH:
            return False
        token, tag = prediction_id[:32], prediction_id[32:]
        if secrets.compare_digest(tag, self._tag(token)):
            return True
        return any(ids.issued(prediction_id) for ids in self._accepted)

    def _tag(self, token: str) -> str:
        mac = self._keyed.copy()
        mac.update(token.encode())
        return mac.hexdigest()


def problem_secret(store: Store, problem: str) -> bytes:
    """The problem's prediction-id secret from the store, created on first use.

    One secret per problem, not per model: labels arrive weeks after a prediction, when the
    model that issued its id may have been replaced, and must still be recognised. Created
    create-only, so concurrent first workers agree on one secret."""
    key = keys.prediction_id_secret(problem)
    try:
        return store.get_bytes(key)
    except KeyNotFoundError:
        pass
    with contextlib.suppress(ObjectExistsError):  # another worker created it first: theirs
        store.put_bytes(key, os.urandom(32), create_only=True)
    return store.get_bytes(key)
