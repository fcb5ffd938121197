"""A producer-buffer flush that finishes (faust-streaming 0.15.x).

Table writes reach Kafka through Faust's ProducerBuffer, a queue that a
background task hands to the producer. Faust flushes the producer before an
at-least-once commit and when it stops, but ProducerBuffer.flush gives up as
soon as no message was handed over for 0.1 s (`flush_atmost`), and never
counts the message its task is handing over. On a busy machine a commit can
then go through with changelog records still queued: their input offsets are
committed and the records are not on Kafka, so a crash loses those state
changes for good (and the crash journal drops their pre-images).

The same buffer also loses its queue at shutdown: mode stops a service
before its children, so Faust's Producer stops the Kafka producer and only
then asks the buffer (its child) to flush. The table writes of the last
messages before a graceful stop would stay in RocksDB only.

Both were found by reading Faust's source (docs/reliability.md, defect 6).

`install` replaces the flush with one that waits until the buffer's task
has handed over every message queued before the flush began. It does not
hand messages over itself: a second sender would race the task, and two
writes of one key could reach the changelog in the wrong order (the first
version of this fix did that, and the crash test caught a profile record
one write behind). Only when the buffer itself is stopping, and its task
with it, does the flush hand the rest over in order. The producer also
flushes the buffer before it stops.

`drain` is that flush for the worker's own use: under exactly_once the
commit does not flush the buffer at all, so the Outbox drains it into the
transaction before a batch is acked (streams/delivery.py).

Upstream: not reported. The flush came from the fix of an ordering race,
faust-streaming#112 (https://github.com/faust-streaming/faust/pull/112);
the flush before a commit from #273. Entry: docs/reliability.md#producer_buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque

from faust.transport.producer import Producer
from faust.types import FutureMessage

#: The versions whose ProducerBuffer and Producer.on_stop the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}


def install(producer: Producer) -> None:
    """Make the buffer's flush complete, and run it before the producer
    stops (see the module docstring)."""
    buffer = producer.buffer
    put, send = buffer.put, buffer._send_pending
    queued = handed = 0
    waiting: deque[tuple[int, asyncio.Future]] = deque()  # (messages to hand over, done)

    def counted_put(message: FutureMessage) -> None:
        nonlocal queued
        queued += 1
        put(message)

    async def counted_send(message: FutureMessage) -> None:
        nonlocal handed
        try:
            await send(message)
        finally:  # a failed send crashes the buffer's task; a flush must not hang on it
            handed += 1
            while waiting and waiting[0][0] <= handed:
                _, done = waiting.popleft()
                if not done.done():
                    done.set_result(None)

    async def flush() -> None:
        if handed >= queued:
            return
        done = asyncio.get_running_loop().create_future()
        waiting.append((queued, done))  # in order: `queued` only grows
        while not done.done():
            if buffer.should_stop:  # its task is gone: hand the rest over, in order
                while not buffer.pending.empty():
                    await counted_send(buffer.pending.get_nowait())
                return
            await asyncio.wait({done}, timeout=1.0)  # then look at should_stop again

    stop_producer = producer.on_stop

    async def flush_then_stop() -> None:
        await flush()
        await stop_producer()

    buffer.put = counted_put  # type: ignore[method-assign]
    buffer._send_pending = counted_send  # type: ignore[method-assign]
    buffer.flush = flush  # type: ignore[method-assign]
    producer.on_stop = flush_then_stop  # type: ignore[method-assign]


async def drain(producer: Producer) -> None:
    """Hand every table write queued so far to the producer (the installed
    flush: it returns only when they are handed over)."""
    await producer.buffer.flush()
