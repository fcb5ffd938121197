"""The reorder buffer on its own (streams/ordering.py): time order across
topics of one partition number, the tie-break, waiting only for topics with
unread records, and the bounded wait. Kafka's positions are plain dicts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from nudge.streams import ordering
from nudge.streams.ordering import FIRST_FETCH_WAIT, TIE_BREAK, ReorderBuffer, batches_in_time_order

RANK = {kind: n for n, kind in enumerate(TIE_BREAK)}
INPUTS = ("consent", "purchases", "clickstream")


class Kafka:
    """High watermarks and committed offsets, as the consumer would report them."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int | None] = {}
        self.committed: dict[tuple[str, int], int] = {}

    def highwater(self, topic: str, partition: int) -> int | None:
        return self.ends.get((topic, partition), 0)

    def start_offset(self, topic: str, partition: int) -> int:
        return self.committed.get((topic, partition), 0)


def make(
    kafka: Kafka,
    max_idle: float = 0.05,
    enforced: list | None = None,
    first_fetch_wait: float = FIRST_FETCH_WAIT,
) -> ReorderBuffer:
    return ReorderBuffer(
        rank={topic: RANK[topic] for topic in (*INPUTS, "identity-merges")},
        synchronised=INPUTS,
        max_idle=max_idle,
        highwater=kafka.highwater,
        start_offset=kafka.start_offset,
        on_enforced=lambda: (enforced if enforced is not None else []).append(1),
        first_fetch_wait=first_fetch_wait,
    )


def published(kafka: Kafka, order: ReorderBuffer, topic: str, partition: int, ts: float) -> str:
    """A record appended to topic-partition and delivered to the buffer."""
    offset = kafka.ends.get((topic, partition)) or 0
    kafka.ends[(topic, partition)] = offset + 1
    name = f"{topic}@{offset}"
    order.push(topic, partition, offset, ts, name)
    return name


def received_before(kafka: Kafka, order: ReorderBuffer, topic: str, partition: int) -> None:
    """The agent got (and processed) a record of topic-partition earlier in
    this assignment, so a wait for it is the short one."""
    published(kafka, order, topic, partition, ts=0.0)
    assert drain(order, now=-1.0)


def drain(order: ReorderBuffer, now: float) -> list[str]:
    out = []
    while (item := order.pop(now)) is not None:
        out.append(item)
    return out


def test_the_earliest_head_goes_first_across_topics_of_a_partition() -> None:
    kafka = Kafka()
    order = make(kafka)
    view = published(kafka, order, "clickstream", 0, ts=10.002)
    revocation = published(kafka, order, "consent", 0, ts=10.001)
    purchase = published(kafka, order, "purchases", 0, ts=10.003)
    assert drain(order, now=0) == [revocation, view, purchase]
    assert len(order) == 0


def test_offset_order_within_a_topic_partition_even_when_stamps_go_backwards() -> None:
    kafka = Kafka()
    order = make(kafka)
    first = published(kafka, order, "clickstream", 0, ts=5.0)
    second = published(kafka, order, "clickstream", 0, ts=4.0)
    assert drain(order, now=0) == [first, second]


def test_equal_timestamps_put_facts_before_triggers() -> None:
    kafka = Kafka()
    order = make(kafka)
    view = published(kafka, order, "clickstream", 0, ts=7.0)
    purchase = published(kafka, order, "purchases", 0, ts=7.0)
    revocation = published(kafka, order, "consent", 0, ts=7.0)
    assert drain(order, now=0) == [revocation, purchase, view]
    assert RANK["consent"] < RANK["privacy"] < RANK["purchases"] < RANK["feedback"]
    assert RANK["feedback"] < RANK["clickstream"]


def test_a_topic_with_unread_records_is_waited_for_and_then_comes_first() -> None:
    kafka = Kafka()
    order = make(kafka, max_idle=0.05)
    received_before(kafka, order, "consent", 0)
    kafka.ends[("consent", 0)] = 2  # fetched (its high watermark is known), not delivered yet
    view = published(kafka, order, "clickstream", 0, ts=2.0)
    assert order.pop(now=100.0) is None
    assert order.deadline == pytest.approx(100.05)
    order.push("consent", 0, 1, 1.0, "consent@1")
    assert drain(order, now=100.01) == ["consent@1", view]


def test_an_idle_topic_never_stalls() -> None:
    kafka = Kafka()
    order = make(kafka)
    kafka.ends[("consent", 0)] = 7  # all read before (committed), nothing new
    kafka.committed[("consent", 0)] = 7
    view = published(kafka, order, "clickstream", 0, ts=1.0)
    assert order.pop(now=0) == view
    assert order.deadline is None


def test_a_topic_read_to_its_end_in_this_session_does_not_stall() -> None:
    kafka = Kafka()
    order = make(kafka)
    revocation = published(kafka, order, "consent", 0, ts=1.0)
    assert drain(order, now=0) == [revocation]  # nothing else is unread
    view = published(kafka, order, "clickstream", 0, ts=2.0)
    assert order.pop(now=0) == view


def test_the_wait_is_bounded_and_counted() -> None:
    kafka = Kafka()
    enforced: list = []
    order = make(kafka, max_idle=0.05, enforced=enforced)
    received_before(kafka, order, "purchases", 0)
    kafka.ends[("purchases", 0)] = 3  # unread, and it never comes
    view = published(kafka, order, "clickstream", 0, ts=1.0)
    assert order.pop(now=10.0) is None
    assert order.pop(now=10.049) is None
    assert order.pop(now=10.05) == view
    assert enforced == [1]
    later = published(kafka, order, "clickstream", 0, ts=2.0)
    assert order.pop(now=10.06) == later  # still missing: no second wait for the same gap
    assert len(enforced) == 2


def test_a_topic_not_fetched_since_the_assignment_is_waited_for_longer() -> None:
    kafka = Kafka()
    order = make(kafka, max_idle=0.02)
    kafka.ends[("consent", 0)] = None  # no fetch response for it yet (an offset reset, say)
    view = published(kafka, order, "clickstream", 0, ts=1.0)
    assert order.pop(now=0) is None
    assert order.pop(now=1.0) is None
    assert order.deadline == pytest.approx(FIRST_FETCH_WAIT)
    kafka.ends[("consent", 0)] = 3  # fetched: three records to come, none here yet
    assert order.pop(now=1.5) is None
    assert order.deadline == pytest.approx(FIRST_FETCH_WAIT)
    assert order.pop(now=FIRST_FETCH_WAIT) == view


def test_other_partitions_flow_while_one_waits() -> None:
    kafka = Kafka()
    order = make(kafka)
    received_before(kafka, order, "consent", 0)
    kafka.ends[("consent", 0)] = 2
    waiting = published(kafka, order, "clickstream", 0, ts=1.0)
    flowing = published(kafka, order, "clickstream", 1, ts=2.0)
    assert drain(order, now=0) == [flowing]
    assert order.deadline == pytest.approx(0.05)
    assert drain(order, now=0.05) == [waiting]


def test_ready_partitions_are_served_earliest_first() -> None:
    kafka = Kafka()
    order = make(kafka)
    later = published(kafka, order, "clickstream", 1, ts=3.0)
    earlier = published(kafka, order, "purchases", 0, ts=2.0)
    assert drain(order, now=0) == [earlier, later]


def test_internal_topics_are_ordered_but_never_waited_for() -> None:
    kafka = Kafka()
    order = make(kafka)
    kafka.ends[("identity-merges", 0)] = 5  # unread merges do not hold anyone up
    view = published(kafka, order, "clickstream", 0, ts=2.0)
    merge = published(kafka, order, "identity-merges", 0, ts=1.0)
    assert drain(order, now=0) == [merge, view]
    assert published(kafka, order, "clickstream", 0, ts=3.0) == order.pop(now=0)


def test_clear_forgets_events_and_read_positions() -> None:
    kafka = Kafka()
    order = make(kafka)
    kafka.ends[("consent", 0)] = 2
    published(kafka, order, "clickstream", 0, ts=1.0)
    order.push("consent", 0, 0, 0.5, "consent@0")
    order.clear()
    assert len(order) == 0 and order.pop(now=0) is None
    # After the seek to the committed offsets, consent 0 is unread again from 0.
    order.push("clickstream", 0, 0, 1.0, "clickstream@0")
    assert order.pop(now=1.0) is None


def test_max_idle_zero_means_no_waiting() -> None:
    kafka = Kafka()
    order = make(kafka, max_idle=0)
    kafka.ends[("consent", 0)] = 1
    view = published(kafka, order, "clickstream", 0, ts=1.0)
    assert order.pop(now=0) == view


def test_a_batch_is_what_may_go_now_in_order_and_asks_each_end_once() -> None:
    kafka = Kafka()
    asked: list[tuple[str, int]] = []
    order = make(kafka)
    order.highwater = lambda topic, partition: (
        asked.append((topic, partition)) or kafka.ends.get((topic, partition), 0)
    )
    for n in range(5):
        published(kafka, order, "clickstream", 0, ts=10.0 + n)
    revocation = published(kafka, order, "consent", 0, ts=12.5)
    first = order.pop_batch(now=0.0, limit=4)
    assert first == ["clickstream@0", "clickstream@1", "clickstream@2", revocation]
    assert len(asked) == len(set(asked))  # each topic-partition's end once per batch
    assert order.pop_batch(now=0.0, limit=4) == ["clickstream@3", "clickstream@4"]
    assert order.pop_batch(now=0.0, limit=4) == []


# -- the agent loop (batches_in_time_order) with a stand-in for Faust's stream ----------------


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: float
    generation_id: int = 1


@dataclass
class Event:
    message: Message


class FakeStream:
    """What batches_in_time_order uses of a Faust stream: a no-ack clone, its events,
    the queue of delivered ones, and ack."""

    def __init__(self) -> None:
        self.channel = SimpleNamespace(queue=asyncio.Queue())
        self.acked: list[Event] = []

    def noack(self) -> FakeStream:
        return self

    async def events(self) -> AsyncIterator[Event]:
        while (event := await self.channel.queue.get()) is not None:
            yield event

    async def ack(self, event: Event) -> None:
        self.acked.append(event)


def fake_app() -> SimpleNamespace:
    flow = SimpleNamespace(is_active=lambda: True, manage_queue=lambda queue: None)
    return SimpleNamespace(flow_control=flow, consumer_generation_id=1)


def test_the_agent_loop_releases_a_waiting_event_at_its_deadline_and_acks_after_processing():
    kafka = Kafka()
    kafka.ends[("consent", 0)] = 1  # unread, and it will not come
    order = make(kafka, max_idle=0.05, first_fetch_wait=0.05)
    stream = FakeStream()
    view = Event(Message("clickstream", 0, 0, 1.0))
    stale = Event(Message("clickstream", 1, 0, 1.0, generation_id=0))  # from before a rebalance
    seen: list[tuple[Event, float, list]] = []

    async def agent() -> None:
        stream.channel.queue.put_nowait(stale)
        stream.channel.queue.put_nowait(view)
        started = time.monotonic()
        async for batch in batches_in_time_order(fake_app(), stream, order, 100):
            for event in batch:
                seen.append((event, time.monotonic() - started, list(stream.acked)))
            stream.channel.queue.put_nowait(None)  # the stream ends

    asyncio.run(asyncio.wait_for(agent(), 5))
    [(event, waited, acked_before)] = seen
    assert event is view and 0.04 < waited < 1.0  # released by the clock, no new input
    assert acked_before == [] and stream.acked == [view]  # acked once processed; stale never


def test_a_worker_at_capacity_still_ends_a_wait_within_the_wall_slack(monkeypatch) -> None:
    """A backlog on another partition keeps the agent busy, never idle; the
    idle clock is kept within WALL_SLACK of the wall clock, so the waiting
    view goes after its wait plus the slack, not after the backlog."""
    monkeypatch.setattr(ordering, "WALL_SLACK", 0.2)
    kafka = Kafka()
    kafka.ends[("consent", 0)] = 1  # unread, and it will not come
    order = make(kafka, max_idle=0.05, first_fetch_wait=0.05)
    stream = FakeStream()
    view = Event(Message("clickstream", 0, 0, 1.0))
    stream.channel.queue.put_nowait(view)
    for offset in range(20_000):  # about 2 s of work on partition 1
        stream.channel.queue.put_nowait(Event(Message("clickstream", 1, offset, 2.0)))
    released: list[tuple[float, int]] = []

    async def agent() -> None:
        started, processed = time.monotonic(), 0
        async for batch in batches_in_time_order(fake_app(), stream, order, 100):
            for event in batch:
                if event is view:
                    released.append((time.monotonic() - started, processed))
                    return
                processed += 1
                time.sleep(0.0001)  # deciding takes time: the agent is never idle

    asyncio.run(asyncio.wait_for(agent(), 20))
    [(waited, processed)] = released
    assert 0.2 < waited < 1.5, released
    assert processed < 20_000  # it did not wait for the backlog to drain
