"""One stored record per customer (policy/stored.py) and the batch state that
reads and writes it once per batch (streams/batch.py)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest

from nudge.policy.processor import Result
from nudge.policy.stored import (
    HOLD_INDEX_VALUE,
    PARTS,
    STATE_TABLE,
    decode_record,
    encode_record,
    hold_index_key,
    merge,
)
from nudge.streams import batch as batch_module
from nudge.streams.batch import BatchState
from nudge.streams.migrate import combine


def test_a_record_round_trips_and_absent_trailing_parts_cost_nothing() -> None:
    parts = dict.fromkeys(PARTS)
    parts.update(consent=b"c", profile=b"p")
    raw = encode_record(parts)
    assert raw is not None and decode_record(raw) == parts
    shorter = encode_record({**parts, "profile": None})
    assert shorter is not None and len(shorter) < len(raw)
    assert decode_record(None) == dict.fromkeys(PARTS)


def test_a_record_with_no_part_left_is_deleted() -> None:
    assert encode_record(dict.fromkeys(PARTS)) is None
    assert encode_record({"consent": b""}) is None  # empty bytes are no part


def test_unknown_parts_are_refused_not_dropped() -> None:
    with pytest.raises(KeyError):
        merge(dict.fromkeys(PARTS), {"consnet": b"x"})
    from_a_newer_version = msgspec.msgpack.encode([b"x"] * (len(PARTS) + 1))
    with pytest.raises(ValueError, match="this version knows"):
        decode_record(from_a_newer_version)


@dataclass
class Message:
    partition: int


@dataclass
class Event:
    message: Message


class Table:
    """What BatchState uses of a Faust table: its store and item writes."""

    def __init__(self, stored: dict[bytes, bytes]) -> None:
        self.data = CountingStore(stored)
        self.writes: list[tuple[bytes, bytes | None]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append((key, value))

    def __delitem__(self, key: bytes) -> None:
        self.writes.append((key, None))


class CountingStore(dict):
    reads = 0

    def get(self, key, default=None):
        self.reads += 1
        return super().get(key, default)


def result(subject: str, **writes: bytes | None) -> Result:
    return Result(subject=subject, writes=dict(writes))


def test_a_batch_reads_each_customer_once_and_writes_each_changed_one_once(monkeypatch) -> None:
    current: list[Event] = []
    monkeypatch.setattr(batch_module.current_event, "make_current", current.append)
    stored = encode_record({"consent": b"granted"})
    assert stored is not None
    table = Table({b"ann": stored})
    state = BatchState(table)  # type: ignore[arg-type]
    first, second, third = Event(Message(3)), Event(Message(3)), Event(Message(1))

    assert state.load("ann")["consent"] == b"granted"
    state.apply(result("ann", recency=b"r1"), first)
    assert state.load("ann")["recency"] == b"r1"  # the next event sees the first's write
    state.apply(result("ann", recency=b"r2", fatigue=b"f"), second)
    state.apply(result("bob", consent=b"revoked"), third)
    state.apply(result("cy"), third)  # nothing written: not a write
    assert table.data.reads == 2  # ann and bob, once each; cy wrote nothing

    assert state.flush(None, {}) == 2
    written = dict(table.writes)
    assert decode_record(written[b"ann"]) == {
        **dict.fromkeys(PARTS), "consent": b"granted", "recency": b"r2", "fatigue": b"f"
    }  # fmt: skip
    assert decode_record(written[b"bob"])["consent"] == b"revoked"
    assert current == [second, third]  # each written in its last writer's partition


def test_an_erased_customer_is_deleted_once_and_the_pre_image_journaled(monkeypatch) -> None:
    monkeypatch.setattr(batch_module.current_event, "make_current", lambda event: None)
    stored = encode_record({"consent": b"c", "profile": b"p"})
    table = Table({b"ann": stored})  # type: ignore[dict-item]
    journaled = []

    class Journal:
        def record(self, tables, partition, key, replaced) -> None:
            journaled.append((partition, key, replaced))

    state = BatchState(table)  # type: ignore[arg-type]
    state.apply(result("ann", **dict.fromkeys(PARTS)), Event(Message(2)))
    assert state.flush(Journal(), {}) == 1  # type: ignore[arg-type]
    assert table.writes == [(b"ann", None)]
    assert journaled == [(2, b"ann", {STATE_TABLE: stored})]


def test_the_hold_index_follows_whether_a_customer_has_something_held(monkeypatch) -> None:
    monkeypatch.setattr(batch_module.current_event, "make_current", lambda event: None)
    table = Table({b"ann": encode_record({"consent": b"c", "holds": b"h"})})  # type: ignore[dict-item]
    state = BatchState(table)  # type: ignore[arg-type]
    state.apply(result("bob", holds=b"h"), Event(Message(0)))  # comes to have one
    state.apply(result("ann", holds=None), Event(Message(0)))  # released: none left
    state.apply(result("cy", recency=b"r"), Event(Message(0)))  # nothing held either way
    state.flush(None, {})
    writes = dict(table.writes)
    assert writes[hold_index_key(b"bob")] == HOLD_INDEX_VALUE
    assert writes[hold_index_key(b"ann")] is None
    assert hold_index_key(b"cy") not in writes


def test_a_migration_keeps_every_part_and_indexes_the_held() -> None:
    old = {
        "consent": {(3, b"ann"): b"c", (1, b"bob"): b"c2"},
        "holds": {(3, b"ann"): b"h", (1, b"bob"): None},
        "profile": {(1, b"gone"): None},
    }
    records = combine(old)
    assert decode_record(records[(3, b"ann")])["holds"] == b"h"
    assert records[(3, hold_index_key(b"ann"))] == HOLD_INDEX_VALUE
    assert decode_record(records[(1, b"bob")])["consent"] == b"c2"
    assert (1, hold_index_key(b"bob")) not in records
    assert (1, b"gone") not in records  # deleted in the old layout: nothing to carry
