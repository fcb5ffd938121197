"""Erasure markers: what nudge keeps so that an erasure stays erased.

After an erasure every table entry of the person is deleted. Kafka may still
hold their older events (a redelivery, a replay, an upstream resend), and
applied again those would bring the person back: a consent grant stamped
before the erasure, then marketing. So an erasure leaves one marker behind,
keyed by a keyed hash (HMAC-SHA256) of the id, not by the id itself, holding
only the erasure time and when the marker itself expires. Events for that
id stamped at or before the erasure time are dropped and counted, never
stored; later events start from empty state, which then remembers the
erasure time (`Profile.erased_at`) for as long as the person has state.

Without `NUDGE_ERASURE_KEY` the hash is unkeyed: anyone holding an id can
then test whether it was erased. Set the key in production (docs/operators.md).
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

#: The table the worker keeps markers in (keyed by `marker_key`).
MARKER_TABLE = "erasures"
#: Domain separation for the unkeyed fallback.
UNKEYED = b"nudge-erasure-marker-v1"


class ErasureMarker(msgspec.Struct, array_like=True):
    """Erased at (event time of the request) and kept until (both UTC seconds)."""

    erased_at: float
    expires_at: float


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ErasureMarker)


def marker_key(subject: str, secret: bytes | None) -> str:
    """The marker's table key for an id: 32 hex digits, not reversible."""
    digest = hmac.new(secret or UNKEYED, subject.encode(), hashlib.sha256).hexdigest()
    return f"erased:{digest[:32]}"


def encode_marker(marker: ErasureMarker) -> bytes:
    return _encoder.encode(marker)


def live_marker(raw: bytes | None, now: float) -> ErasureMarker | None:
    """The stored marker if it is still kept at `now` (expired ones are ignored)."""
    if not raw:
        return None
    marker = _decoder.decode(raw)
    return marker if marker.expires_at > now else None
