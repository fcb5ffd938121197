"""One stored record per key: every part of a customer's state in one value.

The worker once kept a table per part (recency, fatigue, consent, profile,
holds, erasure markers): a RocksDB read per part for every event, and a
changelog message per changed part. One record per key is one read, and one
changelog message per changed customer per batch (streams/batch.py). The
parts keep their own encodings (policy.state), so the engine, replay and the
simulator still see `{part: bytes}`; only storage bundles them.

The record is a msgpack array of the parts' bytes in PARTS order, trailing
absent parts left out. A new part goes at the end, so stored records stay
readable; an erasure that empties every part deletes the key.
"""

from __future__ import annotations

import msgspec

from nudge.policy.erasure import MARKER_TABLE
from nudge.policy.state import TABLES

#: The parts of a stored record, in their fixed order.
PARTS: tuple[str, ...] = (*TABLES, MARKER_TABLE)
#: The one table (and changelog topic) that holds them.
STATE_TABLE = "customers"

Parts = dict[str, bytes | None]

#: Keys of the held-actions index: one small entry beside the record of each
#: customer with something held, so a restarted worker finds every due time
#: without reading every customer. Ids are [A-Za-z0-9._:@-] (schemas/events.py),
#: so no customer key starts with a NUL byte.
HOLD_INDEX_PREFIX = b"\x00held\x00"
HOLD_INDEX_VALUE = b"\x01"


def hold_index_key(subject: bytes) -> bytes:
    return HOLD_INDEX_PREFIX + subject


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[bytes | None])


def decode_record(raw: bytes | None) -> Parts:
    """The parts of a stored record (absent ones None); None: no record."""
    if not raw:
        return dict.fromkeys(PARTS)
    values = _decoder.decode(raw)
    if len(values) > len(PARTS):
        raise ValueError(f"a stored record of {len(values)} parts; this version knows {len(PARTS)}")
    return {part: values[n] if n < len(values) else None for n, part in enumerate(PARTS)}


def encode_record(parts: Parts) -> bytes | None:
    """The stored value of these parts; None when every part is absent
    (the key is then deleted: a tombstone on the changelog)."""
    values = [parts.get(part) or None for part in PARTS]
    while values and values[-1] is None:
        values.pop()
    return _encoder.encode(values) if values else None


def merge(parts: Parts, writes: Parts) -> None:
    """Apply a decision's writes (part -> bytes, None deletes) to `parts`."""
    for part, data in writes.items():
        if part not in parts:
            raise KeyError(f"unknown state part {part!r}")
        parts[part] = data
