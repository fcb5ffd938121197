"""A fix for message-losing races in faust-streaming 0.15.3 around a seek.

After the tables have recovered (at start, after a rebalance), Faust resumes
the stream partitions and seeks them back to their committed offsets
(faust/tables/recovery.py, `on_recovery_completed`), while its fetch loop
(Consumer._drain_messages) keeps running. Five ways to lose records, each
seen in tests/reliability (test_crash.py, test_rebalance.py):

1. The fetch loop is in the middle of a batch fetched before the seek and
   keeps handing out its records. A stale record moves the loop's read offset
   past the seek point, and the records between the committed offset and the
   stale one are then dropped when fetched again ("DROPPED MESSAGE ROFF") and
   committed without ever being processed.
2. A batch fetched while the seek is under way mixes records from before and
   after it; dropping it whole loses the ones after it (the fetcher's
   position has moved past them), keeping it whole is case 1.
3. aiokafka's `seek_to_committed` does not move a partition without a
   committed offset, so the records the fetcher read from it during recovery
   (and Faust did not deliver, its partitions being paused) are never read
   again.
4. The seek stops the flow, and stopping it drops the rest of the batch in
   hand and cancels the hand-over of the record in flight, changelog
   records included. The seek to committed offsets reads the stream records
   again but not the changelog's (they have no committed offset). The
   standby partitions were resumed just before: the standby reads on after
   the dropped records and persists the later offset, so the worker that
   takes the partition over lacks those keys for good: after a failover,
   customers with no state, or with state but no consent (test_rebalance,
   about one run in five).
5. Right after the seek Faust resumes its flow control, and resuming clears
   every queue flow control manages (mode's FlowControlEvent.resume): the
   standby records read since the seek, and the first stream records after
   a committed offset. The stream records after those arrive later, are
   processed and acked, and Faust's commit lets exactly one unacked offset
   at the head through (faust-streaming#606): a purchase committed
   unprocessed in test_rebalance.

The fix: a seek stops the flow and waits for the fetch in flight, so no batch
straddles it; batches are stamped with the seek count when they are fetched,
and the rest of a batch fetched before a seek is not handed out (the seek
fetches those records again); the read offset the record in flight wrote is
put back to the seek point; partitions without a committed offset go back to
their beginning (the app's auto_offset_reset is "earliest"); the changelog
partitions being read go back to just after the last record the recovery
took. The stream queues are cleared inside the seek, before it, instead of
after it: the resume that ends a recovery clears nothing while the rebalance
that started the recovery is still the latest (a newer one clears as Faust
does). Recovery's own resumes, each right after it seeks the changelogs,
still clear the changelog queue of what was fetched before.

Upstream: no open issue describes these; the closest, fixed before 0.15,
are faust-streaming#221 (https://github.com/faust-streaming/faust/issues/221,
prefetched records handed out after a rebalance) and #216 (streams resumed
before the seek). Entry: docs/reliability.md#seek_race.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import faust
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, ensure_TP
from mode.utils.queues import FlowControlEvent

from nudge.streams.faust_fixes import commit_head

#: The versions whose consumer and fetcher the module docstring describes.
TESTED = {
    "faust-streaming": ("0.15.3",),
    "aiokafka": ("0.14.0",),
    "mode-streaming": ("0.7.1",),
}

_getmany = Consumer.getmany
_wait_next_records = Consumer._wait_next_records
_on_recovery_completed = Recovery.on_recovery_completed
_resume_streams = Recovery._resume_streams


async def _stamped_wait_next_records(self: Consumer, timeout: float) -> tuple:
    """Faust's fetch, stamped with the number of seeks done when it returned."""
    fetched = await _wait_next_records(self, timeout)
    self._nudge_batch_seeks = _seeks(self)
    return fetched


async def _getmany_until_seek(self: Consumer, timeout: float) -> AsyncIterator:
    async for tp, message in _getmany(self, timeout):
        batch = getattr(self, "_nudge_batch_seeks", 0)
        if _seeks(self) != batch:
            return  # fetched before a seek: the seek fetches it again
        if not _is_changelog(self, tp):
            commit_head.note(self, tp, message.offset)
        yield tp, message
        if _seeks(self) != batch:  # the seek came while this record was in flight
            seek, points = getattr(self, "_nudge_seek_points", (None, {}))
            if seek == _seeks(self):  # done: undo the read offset this record wrote
                self._read_offset[tp] = points.get(tp)
            return  # (a seek still under way sets the read offsets when it ends)


async def _perform_seek_without_race(self: Consumer) -> None:
    """Faust's perform_seek with the flow stopped, plus the rewind of
    partitions without a committed offset."""
    flowing = self.flow_active
    self.stop_flow()
    try:
        await self.wait_for_stopped_flow()
        clear_stream_queues(self.app)  # what they hold was fetched before the seek
        commit_head.forget(self)  # all is read again from the committed offsets
        self._nudge_seeks = _seeks(self) + 1
        committed = await self.seek_to_committed()
        uncommitted = [
            tp for tp, offset in committed.items() if not offset and not _is_changelog(self, tp)
        ]
        if uncommitted:
            await self._thread.seek_to_beginning(*uncommitted)
        for tp, offset in committed.items():
            self._read_offset[ensure_TP(tp)] = offset if offset else None
            if offset:
                self._committed_offset[ensure_TP(tp)] = offset
        await _rewind_changelogs(self)
        self._nudge_seek_points = (_seeks(self), dict(self._read_offset))
    finally:
        if flowing:
            self.resume_flow()


async def _rewind_changelogs(consumer: Consumer) -> None:
    """Put the changelog partitions being read back to just after the last
    record the recovery took: stopping the flow dropped the rest of the
    batch in hand, and a record whose hand-over it cancelled, and no seek
    to committed offsets reads those again (changelogs have none). What the
    changelog queue still holds comes again and is skipped as seen."""
    recovery = consumer.app.tables.recovery
    reading = {tp: recovery.standby_offsets.get(tp) for tp in recovery.standby_tps}
    if recovery.in_recovery:
        reading |= {tp: recovery.active_offsets.get(tp) for tp in recovery.active_tps}
    assigned = consumer.assignment()
    for tp, taken in reading.items():
        if tp in assigned:
            await consumer.seek(tp, 0 if taken is None or taken < 0 else taken + 1)


def clear_stream_queues(app: faust.App) -> None:
    """Empty every queue flow control manages but the changelog queue."""
    changelog = app.tables.changelog_queue
    for queue in list(app.flow_control._queues):
        if queue is not changelog:
            queue.clear()


def _resuming_without_clear(
    resume: Callable[[Recovery, int], Awaitable[None]],
) -> Callable[[Recovery, int], Awaitable[None]]:
    """`resume` (the end of a recovery), whose flow control resume clears no
    queue unless a newer rebalance has begun meanwhile."""

    async def run(self: Recovery, generation_id: int = 0) -> None:
        app, flow = self.app, self.app.flow_control

        def clear() -> None:
            if app.consumer_generation_id != generation_id:
                FlowControlEvent.clear(flow)

        flow.clear = clear  # resume() calls self.clear()
        try:
            await resume(self, generation_id)
        finally:
            if flow.__dict__.get("clear") is clear:
                del flow.clear

    return run


def _seeks(consumer: Consumer) -> int:
    return getattr(consumer, "_nudge_seeks", 0)


def _is_changelog(consumer: Consumer, tp: object) -> bool:
    return consumer._is_changelog_tp(ensure_TP(tp))


def install() -> None:
    """Patch Faust's consumer class (once)."""
    if Consumer.getmany is _getmany_until_seek:
        return
    Consumer.getmany = _getmany_until_seek
    Consumer._wait_next_records = _stamped_wait_next_records
    Consumer.perform_seek = _perform_seek_without_race
    Recovery.on_recovery_completed = _resuming_without_clear(_on_recovery_completed)
    Recovery._resume_streams = _resuming_without_clear(_resume_streams)
