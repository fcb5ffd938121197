"""Handing one message's outputs to Kafka under the processing guarantee.

at_least_once: Faust's topic send; Faust flushes the producer before it
commits an offset, so outputs are never behind the commit (they may repeat).
The agent hands a message's outputs to the producer before it writes the
tables, so a changelog record never reaches Kafka ahead of its event's
outputs: with one broker they share a produce request or an earlier one
goes first. That matters after a crash, when the redelivered event is
recognised as a duplicate by the state that made it to the changelog: a
re-issue covers an action, but nothing re-creates a lost suppression or
consent-log entry. A consent-log entry or an erasure confirmation is the
proof a person's choice was recorded, so the producer is also flushed right
after one, which keeps that order across several brokers. (A proof whose state
change then dies with the worker is not a lie: the event was not committed,
is redelivered, and is applied again.)

exactly_once: a message's outputs, its table changelog writes and its offset
must land in one Kafka transaction. Faust 0.15.3 does not ensure that; three
defects, each seen in tests/reliability/test_crash.py, are worked around here:

1. Faust picks the transactional producer by the *destination* topic's
   partition group (faust/transport/consumer.py, TransactionManager.send): a
   topic the app does not consume has no group (KeyError in
   PartitionAssignor.group_for_topic) or no consumer metadata (Faust then
   falls back to its plain, non-transactional producer). Outputs go to the
   producer of the *source* partition, whose commit carries its offset.
2. Faust commits transactions from a timer, concurrently with the agent, so a
   commit could fall between a message's first output and its ack: outputs
   committed without their offset, duplicated after a crash. Commits wait for
   the message in progress (`Outbox.message` and the gate around
   TransactionManager.commit), and the message is acked inside the gate.
3. Table writes reach the producer through Faust's ProducerBuffer, which the
   exactly-once commit does not flush (Consumer._commit_offsets flushes only
   for at_least_once): a message's state change could land in a later
   transaction than its offset, and be lost with it in a crash. The buffer is
   drained into the transaction before the message is acked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import faust
from faust.types import TP

from policy.processor import Emit

#: Outputs that prove a person's choice was recorded (see the module docstring).
PROOFS = frozenset({"consent-log", "erasures"})


class Outbox:
    """Sends Emits to the output topics named by their kind."""

    def __init__(self, app: faust.App, topics: dict[str, faust.TopicT], exactly_once: bool):
        self.app = app
        self.topics = topics
        self.names = {kind: topic.get_topic_name() for kind, topic in topics.items()}
        self.exactly_once = exactly_once
        self._gate = asyncio.Lock()  # held by one message, or by one commit
        self._commits_gated = False

    async def send(self, emits: list[Emit], source: TP) -> None:
        if not self.exactly_once:
            for emit in emits:
                await self.topics[emit.kind].send(key=emit.key, value=emit.value)
            if any(emit.kind in PROOFS for emit in emits):
                await self.app.producer.flush()
            return
        transaction = self.transactional_id(source)
        for emit in emits:
            await self.app.producer.send(
                self.names[emit.kind],
                emit.key,
                emit.value,
                None,
                None,
                None,
                transactional_id=transaction,
            )

    def transactional_id(self, source: TP) -> str:
        """Faust's id for the producer of the source partition's transaction."""
        group = self.app.assignor.group_for_topic(source.topic)
        return f"{self.app.conf.id}-{group}-{source.partition}"

    @asynccontextmanager
    async def message(self, event: faust.EventT) -> AsyncIterator[None]:
        """Process one input message inside this block: with exactly_once, no
        transaction commits until its outputs, its table writes and its offset
        are all in the transaction."""
        if not self.exactly_once:
            yield
            return
        self._gate_commits()
        async with self._gate:
            yield
            await self._drain_table_writes()
            event.ack()  # the stream's own ack that follows is then a no-op

    def _gate_commits(self) -> None:
        if self._commits_gated:
            return
        transactions = self.app.consumer.transactions
        commit = transactions.commit

        async def gated_commit(offsets: Mapping[TP, int], start_new_transaction: bool = True):
            async with self._gate:
                return await commit(offsets, start_new_transaction=start_new_transaction)

        transactions.commit = gated_commit
        self._commits_gated = True

    async def _drain_table_writes(self) -> None:
        """Hand the changelog messages queued by table writes to the
        transactional producer now, instead of from Faust's background task."""
        buffer = self.app.producer.buffer
        while not buffer.pending.empty():
            await buffer._send_pending(buffer.pending.get_nowait())
