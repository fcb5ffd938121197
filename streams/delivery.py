"""Handing one message's outputs to Kafka under the processing guarantee.

at_least_once: Faust's topic send; Faust flushes the producer before it
commits an offset, so outputs are never behind the commit (they may repeat).
A crash can still leave a message's outputs on Kafka without its state
change, or the other way round; the message is then redelivered, and which
way round decides what that costs:

- an action without the contact it records in the fatigue table: the event
  is decided again on state that lacks the contact, so a later trigger may
  send a second message inside a cap. So an action goes out after its state:
  the table writes are handed to the producer first. State without its
  action is harmless: the redelivered trigger is a duplicate and its action
  is re-issued with the same decision id (Engine._reissue).
- an erasure confirmation without the erasure: a false proof, and anyone
  reading the customer right after it still finds their data. Erasure
  without its confirmation is harmless: the erased state no longer knows
  the request, so the redelivered request erases again and confirms. So a
  confirmation goes out after its state, with the tombstones flushed first.
- a suppression or consent-log entry without its state: harmless, the event
  is decided again and the record repeats. State without it is a loss:
  the redelivered event is a duplicate, and nothing re-creates the record.
  So these outputs go out before the state.

"Before" holds because both reach the one producer in that order: with one
broker they share a produce request or the earlier one goes first. A
consent-log entry or an erasure confirmation is the proof that a person's
choice was recorded, so the producer is also flushed right after one, which
keeps the order across brokers too.

exactly_once: a message's outputs, its table changelog writes and its offset
must land in one Kafka transaction. Faust 0.15.3 does not ensure that; three
defects, each seen in tests/reliability/test_crash.py, are worked around
(the Faust-touching parts are in streams/faust_fixes):

1. Faust picks the transactional producer by the *destination* topic's
   partition group, and sends outputs to a topic the app does not consume
   outside any transaction. Outputs go to the producer of the *source*
   partition, whose commit carries its offset
   (faust_fixes/source_transaction.py).
2. Faust commits transactions from a timer, concurrently with the agent, so a
   commit could fall between a message's first output and its ack: outputs
   committed without their offset, duplicated after a crash. Commits wait for
   the batch in progress (`Outbox.batch` holds `Outbox.gate`, which
   faust_fixes/commit_gate.py makes every commit wait for), and the message
   is acked inside the gate.
3. Table writes reach the producer through Faust's ProducerBuffer, which the
   exactly-once commit does not flush (Consumer._commit_offsets flushes only
   for at_least_once): a message's state change could land in a later
   transaction than its offset, and be lost with it in a crash. The buffer is
   drained into the transaction before the message is acked
   (faust_fixes/producer_buffer.py, `drain`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import faust
from faust.types import TP

from nudge.policy.processor import Emit
from nudge.streams.faust_fixes import producer_buffer
from nudge.streams.faust_fixes.source_transaction import transactional_id

#: Outputs that prove a person's choice was recorded (see the module docstring).
PROOFS = frozenset({"consent-log", "erasures"})
#: Outputs that go out after their state: a redelivered message re-creates them.
AFTER_STATE = frozenset({"actions", "erasures"})

#: An output and the input partition whose event caused it.
Sourced = tuple[Emit, TP]


def after_state(kind: str) -> bool:
    """Does this output go out after its state (actions on every channel topic)?"""
    return kind in AFTER_STATE or kind.startswith("actions.")


class Outbox:
    """Sends Emits to the output topics named by their kind."""

    def __init__(self, app: faust.App, topics: dict[str, faust.TopicT], exactly_once: bool):
        self.app = app
        self.names = {kind: topic.get_topic_name() for kind, topic in topics.items()}
        self.exactly_once = exactly_once
        #: Held by one batch, or (exactly_once) by one commit: faust_fixes/commit_gate.py.
        self.gate = asyncio.Lock()

    async def deliver(
        self, emits: list[Sourced], write_state: Callable[[], None]
    ) -> list[Awaitable]:
        """Send a batch's outputs and write its state, in the order that loses
        nothing in a crash (see the module docstring): outputs that may repeat
        first, then the state, then actions and erasure confirmations. The
        sends are handed to the producer without waiting for Kafka; returns
        one per emit, in order, each done when Kafka has acknowledged it."""
        if self.exactly_once:
            sends = await self._send(emits)
            write_state()
            return sends
        before = [n for n, (emit, _) in enumerate(emits) if not after_state(emit.kind)]
        after = [n for n, (emit, _) in enumerate(emits) if after_state(emit.kind)]
        first = await self._send([emits[n] for n in before])
        sends: dict[int, Awaitable] = dict(zip(before, first, strict=True))
        write_state()
        if after:
            await self._drain_table_writes()
            if any(emits[n][0].kind in PROOFS for n in after):
                await self.app.producer.flush()  # the erasure's tombstones before its proof
            last = await self._send([emits[n] for n in after])
            sends.update(zip(after, last, strict=True))
        return [sends[n] for n in range(len(emits))]

    async def send(self, emits: list[Emit], source: TP) -> list[Awaitable]:
        """Send outputs that change no state (a deadletter record of a batch
        the client could not decode): into `source`'s transaction under
        exactly_once."""
        return await self._send([(emit, source) for emit in emits])

    async def _send(self, emits: list[Sourced]) -> list[Awaitable]:
        producer = self.app.producer
        sends = []
        for emit, source in emits:
            transaction = transactional_id(self.app, source) if self.exactly_once else None
            sent = await producer.send(
                self.names[emit.kind], emit.key, emit.value, None, None, None,
                transactional_id=transaction,
            )  # fmt: skip
            sends.append(sent)
        if not self.exactly_once and any(emit.kind in PROOFS for emit, _ in emits):
            await producer.flush()
        return sends

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[list[faust.EventT]]:
        """Process a batch of input messages inside this block, adding each
        to the list it gives once its outputs and state are handed over: with
        exactly_once, no transaction commits until the batch's outputs, its
        table writes and its offsets are all in the transactions."""
        handed_over: list[faust.EventT] = []
        if not self.exactly_once:
            yield handed_over
            return
        async with self.gate:
            yield handed_over
            await self._drain_table_writes()
            for event in handed_over:
                event.ack()  # the stream's own ack that follows is then a no-op

    async def _drain_table_writes(self) -> None:
        """Hand the changelog messages queued by table writes to the producer
        (with exactly_once: the transaction's) now, instead of from Faust's
        background task (streams/faust_fixes/producer_buffer.py)."""
        await producer_buffer.drain(self.app.producer)
