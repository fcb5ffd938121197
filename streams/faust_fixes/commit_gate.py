"""Exactly-once: no transaction commits in the middle of a batch (faust-streaming 0.15.3).

Faust commits transactions from a timer (`TransactionManager.commit`, every
`broker_commit_interval`), concurrently with the agent. A commit falling
between a message's first output and its ack would commit the outputs
without the message's offset: after a crash the message is processed again
and its outputs are duplicated, which exactly_once is there to prevent. Seen
in tests/reliability/test_crash.py.

The fix: `install` wraps `TransactionManager.commit` so that a commit of an
app with a gate (its Outbox's lock, under exactly_once) waits for the lock,
which the agent holds for a whole batch: its outputs, its table writes and
its acks (`Outbox.batch`, streams/delivery.py). Apps without a gate commit
as before.

Upstream: related to faust-streaming#517
(https://github.com/faust-streaming/faust/issues/517, open: duplicates
despite exactly_once). Entry: docs/reliability.md#commit_gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from faust.transport.consumer import TransactionManager
from faust.types import TP, AppT

if TYPE_CHECKING:
    from nudge.streams.app import NudgeApp

#: The version whose transaction commits the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}

_commit = TransactionManager.commit
#: The lock each exactly-once app's commits wait for.
_gates: WeakKeyDictionary[AppT, asyncio.Lock] = WeakKeyDictionary()


async def _gated_commit(
    self: TransactionManager, offsets: Mapping[TP, int], start_new_transaction: bool = True
) -> bool:
    """Faust's commit, after the batch in progress (if this app has a gate)."""
    gate = _gates.get(self.app)
    if gate is None:
        return await _commit(self, offsets, start_new_transaction=start_new_transaction)
    async with gate:
        return await _commit(self, offsets, start_new_transaction=start_new_transaction)


def install(nudge: NudgeApp) -> None:
    """Gate the app's transaction commits on its Outbox (exactly_once only)."""
    if nudge.outbox.exactly_once:
        _gates[nudge.app] = nudge.outbox.gate
    TransactionManager.commit = _gated_commit  # type: ignore[method-assign]
