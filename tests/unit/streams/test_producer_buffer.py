"""Faust's ProducerBuffer flush gives up early; the installed one finishes.

A real ProducerBuffer with its real background task; only the hand-over to
the producer is a slow stand-in, like a producer on a busy machine."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.transport.producer import ProducerBuffer

from nudge.streams.faust_fixes import producer_buffer

HANDOVER_S = 0.15  # longer than the 0.1 s Faust's flush waits for progress


async def buffer_with(
    messages: int, *, installed: bool, slow_first_only: bool = False
) -> tuple[ProducerBuffer, list]:
    """A started buffer holding `messages`; `handed` lists what reached the
    producer, and "stopped" once the (stand-in) producer stops."""
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    handed: list = []

    async def slow_handover(message: object) -> None:
        await asyncio.sleep(HANDOVER_S if message == 0 or not slow_first_only else 0.001)
        handed.append(message)

    async def stop_producer() -> None:
        handed.append("stopped")

    buffer._send_pending = slow_handover
    buffer.producer = SimpleNamespace(buffer=buffer, on_stop=stop_producer)
    if installed:
        producer_buffer.install(buffer.producer)
    await buffer.start()
    for n in range(messages):
        buffer.put(n)
    await asyncio.sleep(0)  # the background task takes the first message
    return buffer, handed


def test_fausts_own_flush_returns_with_messages_still_queued() -> None:
    async def run() -> tuple[int, int]:
        buffer, handed = await buffer_with(4, installed=False)
        await buffer.flush()
        return buffer.size, len(handed)  # (asyncio.run then cancels the task)

    left, handed = asyncio.run(run())
    assert left > 0 and handed < 4  # the defect the installed flush repairs


def test_installed_flush_returns_when_every_queued_message_is_handed_over() -> None:
    async def run() -> tuple[int, list, int]:
        buffer, handed = await buffer_with(4, installed=True)
        await buffer.flush()
        at_return = sorted(handed)
        buffer.put(99)  # queued after the flush: not its business
        left = buffer.size
        await buffer.stop()
        return left, at_return, len(handed)

    left, at_return, _ = asyncio.run(run())
    assert at_return == [0, 1, 2, 3]  # including the one the task was handing over
    assert left == 1


def test_the_producer_hands_over_the_queue_before_it_stops() -> None:
    """mode stops the Producer before its child, the buffer: without this
    the queue was dropped at every graceful stop."""

    async def run() -> list:
        buffer, handed = await buffer_with(3, installed=True)
        await buffer.producer.on_stop()
        await buffer.stop()
        return handed

    assert asyncio.run(run()) == [0, 1, 2, "stopped"]


def test_concurrent_flushes_keep_the_queue_order() -> None:
    """Two writes of one key must reach the changelog in the order written:
    a flush waits for the buffer's one sender instead of racing it."""

    async def run() -> list:
        buffer, handed = await buffer_with(3, installed=True, slow_first_only=True)
        await asyncio.sleep(HANDOVER_S / 2)  # the task is in the middle of message 0
        buffer.put(3)
        await asyncio.gather(buffer.flush(), buffer.flush())
        return list(handed)

    assert asyncio.run(run()) == [0, 1, 2, 3]
