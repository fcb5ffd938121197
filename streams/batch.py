"""The state one batch of events reads and writes.

The agent decides a batch of events one after another (streams/app.py);
each customer's record is read from RocksDB once, by the first event that
needs it, and later events of the batch see the writes of earlier ones here.
At the end of the batch each changed record is written to the table once,
which sends one changelog message per changed customer instead of one per
event and part.

A record is written with the batch's last event of its key as Faust's
current event: Faust's store and changelog take the partition from it, and
every key an event writes belongs to that event's partition (a customer's
events, and the erasure marker of a customer erased by one, all come
through the customer's partition). A customer who comes to have held
actions, or no longer has any, gets or loses an entry in the hold index
(policy.stored.HOLD_INDEX_PREFIX) in the same flush.
"""

from __future__ import annotations

from collections.abc import Mapping

import faust

from nudge.policy.processor import Result
from nudge.policy.stored import (
    HOLD_INDEX_VALUE,
    STATE_TABLE,
    Parts,
    decode_record,
    encode_record,
    hold_index_key,
    merge,
)
from nudge.streams.crash_journal import CrashJournal
from nudge.streams.faust_fixes import current_event


def stored_parts(table: faust.Table, key: bytes) -> Parts:
    """A key's parts, read straight from the store: one RocksDB read, where
    `table.get` does two (`in`, then `[]`) and counts each in Faust's sensor."""
    return decode_record(table.data.get(key))


class BatchState:
    """Customers' records as of the events of the batch decided so far."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self._parts: dict[str, Parts] = {}
        self._stored: dict[str, bytes | None] = {}  # as read: what the writes replace
        self._writer: dict[str, faust.EventT] = {}  # the last event that changed the key
        self._held: dict[str, bool] = {}  # had held actions when read

    def load(self, subject: str) -> Parts:
        """The subject's parts now (a copy: the processor's to keep)."""
        parts = self._parts.get(subject)
        if parts is None:
            parts = self._read(subject)
        return dict(parts)

    def apply(self, result: Result, event: faust.EventT) -> None:
        """Note an event's writes; nothing reaches the table before `flush`."""
        groups: dict[str, Parts] = dict(result.other_writes)
        if result.subject is not None and result.writes:
            groups[result.subject] = result.writes
        for subject, writes in groups.items():
            parts = self._parts.get(subject)
            if parts is None:
                parts = self._read(subject)
            merge(parts, writes)
            self._writer[subject] = event

    def flush(self, journal: CrashJournal | None, tables: Mapping[str, faust.Table]) -> int:
        """Write every changed record once; returns how many. What they
        replace is journaled first (streams/crash_journal.py)."""
        written = 0
        for subject, event in self._writer.items():
            key = subject.encode()
            value = encode_record(self._parts[subject])
            stored = self._stored[subject]
            if value == stored:
                continue  # changed and changed back within the batch
            current_event.make_current(event)
            writes = {key: value}
            held, was_held = bool(self._parts[subject]["holds"]), self._held[subject]
            if held != was_held:
                writes[hold_index_key(key)] = HOLD_INDEX_VALUE if held else None
            for write_key, write_value in writes.items():
                if journal is not None:
                    replaced = (
                        stored if write_key == key else (HOLD_INDEX_VALUE if was_held else None)
                    )
                    journal.record(
                        tables, event.message.partition, write_key, {STATE_TABLE: replaced}
                    )
                if write_value is None:
                    del self.table[write_key]
                else:
                    self.table[write_key] = write_value
            written += 1
        self._writer.clear()
        return written

    def _read(self, subject: str) -> Parts:
        raw = self.table.data.get(subject.encode())
        self._stored[subject] = raw
        parts = self._parts[subject] = decode_record(raw)
        self._held[subject] = bool(parts["holds"])
        return parts
