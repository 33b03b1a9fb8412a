"""Prediction ids that carry an HMAC tag, so any worker (or a restarted one) can tell an id
this deployment issued from an unknown one without shared state."""

from __future__ import annotations

import hashlib
import os
import secrets

_TAG_HEX = 16
ID_LENGTH = 32 + _TAG_HEX  # characters of a prediction id: random hex, then the tag


class PredictionIds:
    """Issues ids of the form <32 random hex><16 hex HMAC tag> and recognises them."""

    def __init__(self, secret: bytes):
        # Keyed BLAKE2b is a MAC in one C call (the hmac module's Python layers cost more
        # than the hash); keying once and copying the keyed state per id is cheaper again.
        self._keyed = hashlib.blake2b(key=secret[:64], digest_size=_TAG_HEX // 2)

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
        return secrets.compare_digest(tag, self._tag(token))

    def _tag(self, token: str) -> str:
        mac = self._keyed.copy()
        mac.update(token.encode())
        return mac.hexdigest()
