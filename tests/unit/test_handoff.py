"""The fetch loop's hand-off (streams/handoff.py): a delivery that need not
wait completes in place; one that must wait goes on inside Faust's
wait_first, and a suspended flow still interrupts it."""

from __future__ import annotations

import asyncio

from faust.transport.consumer import Consumer
from mode.utils.locks import Event

from streams import handoff


class FetchLoop:
    """What Consumer.wait_first uses of the consumer, with Faust's own wait_first."""

    def __init__(self) -> None:
        self.suspend_flow = Event()
        self._stopped = Event()
        self._crashed = Event()
        self.loop = asyncio.get_running_loop()

    wait_first = handoff._deliver_in_place


def test_a_delivery_that_need_not_wait_completes_without_a_task() -> None:
    async def run() -> None:
        consumer = FetchLoop()
        delivered: list[int] = []

        async def deliver(n: int) -> int:
            delivered.append(n)
            return n

        before = len(asyncio.all_tasks())
        result = await consumer.wait_first(deliver(1), consumer.suspend_flow.wait())
        assert result.done and result.results == [1] and not result.stopped
        assert delivered == [1] and len(asyncio.all_tasks()) == before

    asyncio.run(run())


def test_a_delivery_that_waits_finishes_once_its_queue_has_room() -> None:
    async def run() -> None:
        consumer = FetchLoop()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(0)  # full: the delivery waits for room

        async def make_room() -> None:
            await asyncio.sleep(0.01)
            assert queue.get_nowait() == 0

        helper = asyncio.ensure_future(make_room())
        result = await consumer.wait_first(queue.put(1), consumer.suspend_flow.wait())
        assert not result.stopped and queue.get_nowait() == 1
        await helper

    asyncio.run(run())


def test_a_suspended_flow_interrupts_a_waiting_delivery() -> None:
    async def run() -> None:
        consumer = FetchLoop()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(0)

        async def rebalance() -> None:
            await asyncio.sleep(0.01)
            consumer.suspend_flow.set()

        helper = asyncio.ensure_future(rebalance())
        await consumer.wait_first(queue.put(1), consumer.suspend_flow.wait())
        await helper
        await asyncio.sleep(0.02)  # a delivery still running would have put by now
        assert queue.qsize() == 1 and queue.get_nowait() == 0  # the message was not delivered

    asyncio.run(asyncio.wait_for(run(), 5))


def test_it_is_installed_for_this_faust() -> None:
    handoff.install()
    assert Consumer.wait_first is handoff._deliver_in_place
