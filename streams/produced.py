"""Which actions this worker has handed to Kafka: the answer to "may a
repeated trigger's action be re-issued?" (policy.engine.Produced).

A trigger can come back as a duplicate for two reasons. Upstream resent it
(10,000 copies of one event id): its action went out from this very worker,
and a copy per duplicate would multiply channel traffic. Or the worker
stopped between writing the trigger's state and sending its action
(streams/delivery.py): then the action may never have reached Kafka, and
only a re-issue keeps it from being lost. This record tells them apart.

A decision id is recorded when its action's messages are handed to the
producer, not when Kafka acknowledges them: the next copy of a trigger is
often decided within the producer's linger time, and would otherwise be
re-issued while the first send is still on its way. A send that fails
removes the id again, so a later copy re-issues it. After a restart the
record is empty, so a redelivered trigger re-issues its action once and is
then recorded.

Bounded like an LRU of `capacity` ids, in two generations of 64-bit ints
(about 8 MB at 100,000): lookups and inserts are O(1), and an id looked up
again moves to the newer generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

import msgspec

from nudge.policy.processor import Emit

#: Decision ids remembered: a copy of a trigger arriving after this many
#: later actions is re-issued once (harmless: same decision id).
CAPACITY = 100_000


class _Decided(msgspec.Struct):
    decision_id: str


_decided = msgspec.json.Decoder(_Decided)


class ProducedActions:
    """Decision ids of actions sent to Kafka by this worker, most recent ones."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._half = max(1, capacity // 2)
        self._newer: set[int] = set()
        self._older: set[int] = set()

    def __call__(self, decision_id: str) -> bool:
        """Did this worker send the action (policy.engine.Produced)?"""
        key = _key(decision_id)
        if key in self._newer:
            return True
        if key in self._older:
            self._add(key)
            return True
        return False

    def record(self, emits: Sequence[Emit], sends: Sequence[asyncio.Future] = ()) -> None:
        """Record the actions among one message's emits as handed to the
        producer (a decided action, or a released one: whatever went to
        `actions`). `sends`, one per emit, are their sends: one that fails
        forgets its action again."""
        keys: dict[bytes, int] = {}
        for n, emit in enumerate(emits):
            if emit.kind != "actions" and not emit.kind.startswith("actions."):
                continue
            key = keys.get(emit.value)
            if key is None:
                key = keys[emit.value] = _key(_decided.decode(emit.value).decision_id)
                self._add(key)
            if sends:
                sends[n].add_done_callback(partial(self._forget_if_failed, key))

    def _add(self, key: int) -> None:
        if len(self._newer) >= self._half:
            self._older, self._newer = self._newer, set()
        self._newer.add(key)

    def _forget_if_failed(self, key: int, done: asyncio.Future) -> None:
        if done.cancelled() or done.exception() is not None:
            self._newer.discard(key)
            self._older.discard(key)


def _key(decision_id: str) -> int:
    """The first 64 bits of the (128-bit, hex) decision id."""
    return int(decision_id[:16], 16)
