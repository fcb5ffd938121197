"""Time order across the co-partitioned input topics, the way Kafka Streams
synchronises a task's partitions (`max.task.idle.ms`, KIP-353 and KIP-695).

Kafka orders records within a partition, not across topics. The one agent
reads all input topics, and Faust hands it records in whatever order its
fetches return them: a product view published 20 ms after an acknowledged
revocation could be decided first, and after a restart with a backlog a
whole clickstream partition could be drained before the consent partition
of the same customers. Events are therefore buffered per partition number
(the customers of partition 3 of every topic), one queue per topic, and the
agent always processes, within a partition number, the buffered head with
the smallest (timestamp, topic rank, offset).

A head may be processed when every synchronised topic of its partition
number has a buffered record, or has nothing left to read (its high
watermark, or last stable offset under exactly_once, is at the next offset
the agent would get), or has been waited for `max_idle` seconds. A topic
that is merely idle never stalls anything; one with unread records is
waited for, at most `max_idle`. That bound is the whole guarantee: a record
stamped before a trigger is applied first if it reaches the worker within
`max_idle` of the trigger becoming next in line (README, "Ordering").

How the worker knows a record exists before it has it: every fetch response
carries the high watermark of each partition it asked for, and aiokafka
records them before the records reach Faust. A revocation the broker
acknowledged before a trigger was published is therefore known by the time
the trigger arrives (the response with the trigger reports the consent
partition's new end), unless that partition was left out of the fetch:
paused by Faust's back-pressure, or with records still buffered in aiokafka,
which are unread anyway. Measured on this stack, the records that arrive
out of order are mostly the first ones of a topic-partition (new topics, as
in `make run`): 4 of 10 demo stories without ordering, 0 of 10 with it
(tests/integration/test_ordering.py). Two edges look unread for good, and
cost one wait of `max_idle`, then a count in `nudge_order_enforced_total`
for each event decided until the topic gets a record: a partition whose
upstream producer writes transactionally ends in a commit marker (an offset
no record fills), and a partition with no committed offset that retention
emptied.

The timestamp is the Kafka record timestamp (CreateTime: when the producer
sent it; broker time for LogAppendTime topics), not the event's `ts`:
ordering needs no decoding, so records that turn out invalid are ordered
too; it is what "published after an acknowledged revocation" means; and an
upstream system cannot move its events ahead of others by back-dating
`ts` (a late upload of old events keeps its place in the stream).
Equal timestamps (one millisecond) are broken by topic rank: facts that
restrict contact first (consent, privacy, preferences, identity), then
purchases (they start cooldowns), then feedback (fatigue, complaints),
then clickstream, the triggers; internal topics after the facts they
derive from, and unknown ones last.

Internal topics (identity merges, on-site impressions, ...) are not
upstream facts: their records take their place in the order, but no one
waits for them.

Acks: the agent reads a no-ack stream and acks an event only once it has
been processed, so a buffered event is never committed, and Faust's commit
stops at the first unacked offset of each topic-partition. The buffer is
registered with Faust's flow control like Faust's own queues: a rebalance
or a stop clears it, its events are read again from the committed offsets
after the seek that follows, and nothing buffered holds up `wait_empty`.

Batches: calling `pop` until it returns None gives the events that may be
processed now, in order; the agent decides them as one batch
(`batches_in_time_order`, streams/batch.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from nudge.streams import metrics
from nudge.streams.faust_fixes.committed_offset import committed_offset

T = TypeVar("T")

#: Topic kinds in tie-break order for records stamped in the same millisecond.
TIE_BREAK: tuple[str, ...] = (
    "consent",
    "privacy",
    "preferences",
    "identity",
    "identity-merges",
    "purchases",
    "feedback",
    "onsite-impressions",
    "clickstream",
)
#: Events the agent takes from Faust ahead of processing while it waits:
#: enough to find a record fetched behind a backlog's worth of others (after
#: a restart, a consent record came behind 2,000 queued views, and 1,000 was
#: too few), few enough to bound memory (1-2 KB an event) and keep Faust's
#: back-pressure. Kafka Streams buffers 1,000 per partition.
MAX_BUFFERED = 10_000
#: How long a topic-partition the agent has had nothing from since it was
#: assigned is waited for (its high watermark may still be unknown, its
#: offset resetting, its first fetch under way): only right after a start or
#: a rebalance, when the worker reads a backlog and order matters more than
#: milliseconds. Measured: records known to be there took longer than 20 ms.
FIRST_FETCH_WAIT = 2.0
#: How far the idle clock may fall behind the wall clock. Time spent taking in
#: a backlog does not count against a wait (a record awaited may be queued
#: behind thousands of others), but a worker at capacity is never idle: without
#: this bound a wait would hold its partition for as long as the load lasts.
WALL_SLACK = 2.0


@dataclass(slots=True)
class _Partition(Generic[T]):
    """One partition number: a queue per topic, in offset order."""

    queues: dict[str, deque[tuple[tuple[float, int, int], T]]] = field(default_factory=dict)
    next_offsets: dict[str, int] = field(default_factory=dict)  # last pushed + 1
    idle_since: dict[str, float] = field(default_factory=dict)  # waited for since
    buffered: int = 0


class ReorderBuffer(Generic[T]):
    """Events of co-partitioned topics, released in time order (see the
    module docstring). Pure: Kafka comes in through `highwater` (the end of
    a topic-partition, None while unknown) and `start_offset` (where reading
    starts for one not seen since the last `clear`)."""

    def __init__(
        self,
        rank: Mapping[str, int],
        synchronised: Collection[str],
        max_idle: float,
        highwater: Callable[[str, int], int | None],
        start_offset: Callable[[str, int], int],
        on_enforced: Callable[[], None] = lambda: None,
        first_fetch_wait: float = FIRST_FETCH_WAIT,
    ) -> None:
        self.rank = dict(rank)
        self.synchronised = tuple(synchronised)
        self.max_idle = max_idle
        self.first_fetch_wait = max(first_fetch_wait, max_idle) if max_idle else 0.0
        self.highwater = highwater
        self.start_offset = start_offset
        self.on_enforced = on_enforced
        #: When a waiting partition is next released without new input.
        self.deadline: float | None = None
        self._partitions: dict[int, _Partition[T]] = {}
        self._nonempty: set[int] = set()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, topic: str, partition: int, offset: int, timestamp: float, item: T) -> None:
        """Buffer a record; per topic-partition, records come in offset order."""
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition()
        queue = part.queues.get(topic)
        if queue is None:
            queue = part.queues[topic] = deque()
        queue.append(((timestamp, self.rank.get(topic, len(self.rank)), offset), item))
        part.next_offsets[topic] = offset + 1
        part.idle_since.pop(topic, None)  # it arrived: a later wait gets a fresh budget
        part.buffered += 1
        self._nonempty.add(partition)
        self._size += 1

    def pop(self, now: float) -> T | None:
        """The next item to process at `now` (monotonic seconds), or None
        if every buffered one must still wait; then `deadline` says until
        when at most."""
        best_key: tuple[float, int, int] | None = None
        best: tuple[int, deque] | None = None
        best_enforced = False
        deadline: float | None = None
        for number in self._nonempty:
            part = self._partitions[number]
            head: tuple[float, int, int] | None = None
            head_queue: deque | None = None
            for queue in part.queues.values():
                if queue and (head is None or queue[0][0] < head):
                    head, head_queue = queue[0][0], queue
            assert head is not None and head_queue is not None  # a non-empty partition
            if best_key is not None and head >= best_key:
                continue  # cannot come first: no need to know whether it may
            wait_until, enforced = self._waits(number, part, now)
            if wait_until is not None:
                deadline = wait_until if deadline is None else min(deadline, wait_until)
                continue
            best_key, best, best_enforced = head, (number, head_queue), enforced
        self.deadline = deadline
        if best is None:
            return None
        number, queue = best
        item = queue.popleft()[1]
        part = self._partitions[number]
        part.buffered -= 1
        if not part.buffered:
            self._nonempty.discard(number)
        self._size -= 1
        if best_enforced:
            self.on_enforced()
        return item

    def pop_batch(self, now: float, limit: int) -> list[T]:
        """Up to `limit` items that may be processed at `now`, in order.
        Each topic-partition's end is asked for once per batch: it only grows,
        and a value a few microseconds old is as good as the one `pop` asks
        for each time (Faust's consumer thread may update it meanwhile)."""
        ask = self.highwater
        ends: dict[tuple[str, int], int | None] = {}

        def end_of(topic: str, partition: int) -> int | None:
            key = (topic, partition)
            if key not in ends:
                ends[key] = ask(topic, partition)
            return ends[key]

        self.highwater = end_of
        try:
            batch: list[T] = []
            while len(batch) < limit and (item := self.pop(now)) is not None:
                batch.append(item)
            return batch
        finally:
            self.highwater = ask

    def _waits(self, number: int, part: _Partition[T], now: float) -> tuple[float | None, bool]:
        """(until when partition `number` must wait, or None; whether it
        goes ahead only because a topic was waited for too long)."""
        until: float | None = None
        enforced = False
        for topic in self.synchronised:
            if part.queues.get(topic):
                continue
            end = self.highwater(topic, number)
            if end is not None and end <= self._following(topic, number, part):
                part.idle_since.pop(topic, None)  # read to its end: nothing to wait for
                continue
            first = end is None or topic not in part.next_offsets  # nothing from it yet
            since = part.idle_since.setdefault(topic, now)
            expires = since + (self.first_fetch_wait if first else self.max_idle)
            if now < expires:
                until = expires if until is None else min(until, expires)
            else:
                enforced = True
        return until, enforced and until is None

    def _following(self, topic: str, number: int, part: _Partition[T]) -> int:
        """The offset of the next record the agent will get from topic-partition."""
        following = part.next_offsets.get(topic)
        return self.start_offset(topic, number) if following is None else following

    def clear(self) -> None:
        """Forget everything (Faust's flow control calls this when a rebalance
        or a stop clears its queues: reading restarts at the committed offsets)."""
        self._partitions.clear()
        self._nonempty.clear()
        self._size = 0
        self.deadline = None


class ConsumerPositions:
    """`highwater` and `start_offset` for a ReorderBuffer, from the worker's
    Faust consumer (high watermarks come with every fetch response, so
    asking costs no request)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._tps: dict[tuple[str, int], TP] = {}

    def _tp(self, topic: str, partition: int) -> TP:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TP(topic, partition)
        return tp

    def highwater(self, topic: str, partition: int) -> int | None:
        """The last stable offset under exactly_once (Faust picks it)."""
        try:
            return self.app.consumer.highwater(self._tp(topic, partition))
        except (AssertionError, ConsumerNotStarted):  # aiokafka asserts it is assigned
            return None

    def start_offset(self, topic: str, partition: int) -> int:
        """The committed offset Faust seeked to; 0 without one (a partition
        emptied by retention then waits once per trigger until it gets a record)."""
        return committed_offset(self.app, self._tp(topic, partition)) or 0


def for_topics(
    app: faust.App, kind_of: Mapping[str, str], waited: Collection[str], max_idle: float
) -> ReorderBuffer[faust.EventT]:
    """The buffer for the agent: `kind_of` maps each topic it reads to its
    kind; the topics of the kinds in `waited` are synchronised."""
    rank = {kind: n for n, kind in enumerate(TIE_BREAK)}
    positions = ConsumerPositions(app)
    return ReorderBuffer(
        rank={topic: rank.get(kind, len(rank)) for topic, kind in kind_of.items()},
        synchronised=[topic for topic, kind in kind_of.items() if kind in waited],
        max_idle=max_idle,
        highwater=positions.highwater,
        start_offset=positions.start_offset,
        on_enforced=metrics.ORDER_ENFORCED.inc,
    )


async def batches_in_time_order(
    app: faust.App, stream: faust.StreamT, order: ReorderBuffer[faust.EventT], max_events: int
) -> AsyncIterator[list[faust.EventT]]:
    """The stream's events in time order (`order`), in batches of up to
    `max_events`: all that may be processed now, so a batch is one event
    when the worker keeps up and grows with a backlog, adding no wait of its
    own. Each event is acked when the loop body that received its batch is
    done. With `order.max_idle` 0 nothing waits and events come in the order
    of their timestamps among those delivered (ordering off).

    Waits run on an idle clock: the time the agent had nothing to do, its
    Faust queue empty (or its buffer full). While events are queued, an
    awaited record may be among them, however far back a backlog put it;
    time spent taking them in, or deciding other partitions' events, is
    not time the record failed to come. The idle clock never lags the wall
    clock by more than WALL_SLACK, so a worker that is never idle (at
    capacity) still ends every wait within WALL_SLACK plus the wait itself."""
    source = stream.noack()
    incoming = aiter(source.events())
    delivered = source.channel.queue  # fetched, waiting for the agent
    flow = app.flow_control
    app.flow_control.manage_queue(order)  # type: ignore[arg-type]  # cleared with Faust's queues
    pending: asyncio.Future | None = None
    idle = 0.0  # seconds the agent waited with nothing to do: the clock waits run on
    origin = time.monotonic()

    def take(event: faust.EventT) -> None:
        message = event.message
        if not flow.is_active() or message.generation_id != app.consumer_generation_id:
            return  # fetched before a rebalance cleared the buffer: read again after its seek
        order.push(message.topic, message.partition, message.offset, message.timestamp, event)

    try:
        while True:
            while pending is None and not delivered.empty() and len(order) < MAX_BUFFERED:
                take(await anext(incoming))
            idle = max(idle, time.monotonic() - origin - WALL_SLACK)
            batch = order.pop_batch(idle, max_events)
            if batch:
                yield batch
                for event in batch:
                    await source.ack(event)
                continue
            started = time.monotonic()
            if order.deadline is None:  # nothing waits on the clock
                event = await (pending if pending is not None else anext(incoming))
                pending = None
                take(event)
            elif len(order) >= MAX_BUFFERED:  # full, nothing may go: only the clock frees it
                await asyncio.sleep(order.deadline - idle)
            else:
                if pending is None:
                    pending = asyncio.ensure_future(anext(incoming))
                done, _ = await asyncio.wait((pending,), timeout=order.deadline - idle)
                if done:
                    event, pending = pending.result(), None
                    take(event)
            idle += time.monotonic() - started
    except StopAsyncIteration:
        return  # the stream ended: the worker is stopping
    finally:
        if pending is not None:
            pending.cancel()
