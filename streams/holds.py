"""Releasing held actions on time: an index of due times and a timer.

A held action (policy.state.Holds) stays in the customer's changelogged
state until it is due. Faust tables are written only from inside stream
processing, so the timer does not release anything itself: every second it
sends, for each customer of this worker's active partitions whose hold is
due, a `holds-due` message keyed by the customer to the partition that owns
them. The agent processes it like any input (policy.processor, HOLDS_KIND):
it re-runs the rules and publishes the action or a suppression, and removes
the hold in the same state write. A repeated or late message finds nothing
due and changes nothing, so the same decision id is never released twice.

Nothing here must survive a crash: the holds are in the tables. After every
rebalance, once the tables are recovered, the index is rebuilt from the
hold index of the active partitions: an entry beside the record of each
customer with something held (policy.stored.HOLD_INDEX_PREFIX, written with
the record, changelogged like it), so a restart reads those customers, not
every one. A kill -9 between a hold and its release therefore loses
nothing; the next owner releases it.

With NUDGE_CLOCK=event a hold is due when the worker's event clock (the
latest event time it processed) passes it, and is released as of its due
time, as `nudge replay` does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec
from rocksdict import Rdict

from nudge.policy.holds import DueHolds
from nudge.policy.processor import HOLDS_KIND, Processor, Result
from nudge.policy.state import Holds
from nudge.policy.stored import HOLD_INDEX_PREFIX, STATE_TABLE, decode_record
from nudge.streams.faust_fixes.rocksdb_store import partition_db
from nudge.streams.topics import topic_name

if TYPE_CHECKING:
    from nudge.streams.app import NudgeApp

log = logging.getLogger("nudge.worker")

#: Seconds between looks at the index: a held action goes out at most about
#: this long after it is due (plus the agent's queue).
TICK_SECONDS = 1.0
#: A customer whose release request got no answer (a lost message, a
#: rebalance) is asked again after this many seconds.
RETRY_SECONDS = 30.0

_holds_decoder = msgspec.msgpack.Decoder(Holds)


class HoldTimer:
    """Per active partition, whose hold is due when; sends the release requests."""

    def __init__(self, nudge: NudgeApp) -> None:
        self.nudge = nudge
        self.topic = topic_name(nudge.settings.topic_prefix, HOLDS_KIND)
        self.event_clock = nudge.settings.clock == "event"
        self.clock = 0.0  # the latest event time processed (for the event clock)
        self.partitions: dict[int, DueHolds] = {}

    def observe(self, partition: int, result: Result) -> None:
        """Note a processed message's subject's next due time (agent side)."""
        if result.event_time is not None and result.event_time > self.clock:
            self.clock = result.event_time
        if result.subject is None or result.invalid_reason is not None:
            return
        index = self.partitions.get(partition)
        if index is None:
            if result.next_due is None:
                return
            index = self.partitions[partition] = DueHolds()
        index.note(result.subject, result.next_due)

    def now(self) -> float:
        return self.clock if self.event_clock else time.time()

    async def tick(self) -> None:
        """Ask the owner's agent to release every hold due by now."""
        app = self.nudge.app
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return  # the index is rebuilt when recovery completes
        now = self.now()
        requests = []  # collected first: the agent may add partitions meanwhile
        for partition, index in self.partitions.items():
            for subject, due in index.pop_due(now):
                index.note(subject, now + RETRY_SECONDS)  # replaced by the answer
                requests.append((partition, subject, due))
        sends = [
            await app.producer.send(
                self.topic, subject.encode(), Processor.release_request(due), partition, None, None
            )
            for partition, subject, due in requests
        ]
        if sends:
            results = await asyncio.gather(*sends, return_exceptions=True)
            failed = sum(1 for r in results if isinstance(r, BaseException))
            if failed:  # each is asked again after RETRY_SECONDS
                log.warning("%d of %d hold release requests failed to send", failed, len(sends))

    async def rebuild(self) -> None:
        """After recovery: the due times of the active partitions' holds."""
        table = self.nudge.tables[STATE_TABLE]
        changelog = table.changelog_topic.get_topic_name()
        actives = {
            tp.partition
            for tp in self.nudge.app.assignor.assigned_actives()
            if tp.topic == changelog
        }
        started = time.perf_counter()
        partitions: dict[int, DueHolds] = {}
        for partition in sorted(actives):
            index = partitions[partition] = DueHolds()
            db = partition_db(table, partition)
            for subject in indexed_subjects(db):
                try:
                    holds = decode_record(db.get(subject))["holds"]
                    pending = _holds_decoder.decode(holds).pending if holds else []
                except (msgspec.DecodeError, ValueError):
                    log.warning("an unreadable holds record in partition %d was skipped", partition)
                    continue
                if pending:
                    index.note(subject.decode(errors="replace"), pending[0].due)
        self.partitions = partitions
        log.info(
            "hold index: %d customers with held actions in %d partitions (%.3f s)",
            sum(len(i) for i in partitions.values()),
            len(partitions),
            time.perf_counter() - started,
        )


def indexed_subjects(db: Rdict) -> Iterator[bytes]:
    """The keys of the customers in one table partition's hold index: a
    seek to the index's prefix, not a scan of every customer."""
    for key in db.keys(from_key=HOLD_INDEX_PREFIX):
        if not key.startswith(HOLD_INDEX_PREFIX):
            return
        yield key.removeprefix(HOLD_INDEX_PREFIX)


def install(nudge: NudgeApp) -> HoldTimer:
    """The timer and the rebuild-after-recovery hook of this worker."""
    timer = HoldTimer(nudge)
    nudge.tables[STATE_TABLE].on_recover(timer.rebuild)

    @nudge.app.timer(interval=TICK_SECONDS)
    async def release_due_holds() -> None:
        await timer.tick()

    return timer
