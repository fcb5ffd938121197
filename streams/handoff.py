"""Faust's fetch loop hands a message to the agent without four tasks.

faust-streaming 0.15's fetch loop (Consumer._drain_messages) delivers every
message with `wait_first(callback(message), suspend_flow.wait())`, so that a
delivery blocked by back-pressure gives way when the flow is suspended (a
rebalance) or the consumer stops. mode's `wait_first` makes four futures per
message (the delivery, the suspend flag, the stop and crash flags) and an
`asyncio.wait`, and every message then costs the loop several turns: the
profile of a worker at 1,000 events/s showed the hand-off as the largest
share of Faust's own time, and each turn behind a batch being decided adds
to every waiting event's latency.

A delivery almost never waits (the agent's queue has room, the producer
buffer is below its bound): it completes the moment it is started. So the
delivery is started in place; only when it really has to wait does it go on
inside Faust's `wait_first`, exactly as before, interruptible by a
suspended flow or a stop. While the flow is suspended every delivery takes
Faust's path. A workaround by private names (Consumer.wait_first is called
only by the fetch loop), for faust-streaming 0.15.x only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import faust
from faust.transport.consumer import Consumer
from mode.services import WaitResults

log = logging.getLogger("nudge.worker")

_wait_first = Consumer.wait_first


async def _deliver_in_place(
    self: Consumer, *coros: Any, timeout: float | None = None
) -> WaitResults:
    """Consumer.wait_first as the fetch loop calls it: (delivery, suspend_flow.wait())."""
    if len(coros) != 2 or timeout is not None or self.suspend_flow.is_set():
        return await _wait_first(self, *coros, timeout=timeout)
    delivery, suspended = coros
    try:
        awaited = delivery.send(None)
    except StopIteration as done:
        suspended.close()  # never started: no task, no warning
        return WaitResults([delivery], [done.value], False)
    return await _wait_first(self, finish(delivery, awaited), suspended)


async def finish(coro: Coroutine, awaited: Any) -> Any:
    """Run a started coroutine to its end from where it waits on `awaited`
    (a future, or None for a bare yield), as an asyncio Task would: a
    cancellation reaches it at its await."""
    while True:
        try:
            if awaited is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([awaited])
        except asyncio.CancelledError as cancel:
            with contextlib.suppress(StopIteration):
                coro.throw(cancel)
            raise
        try:
            awaited = coro.send(None)
        except StopIteration as done:
            return done.value


def install() -> None:
    """Patch Faust's consumer (once); only for the version it was made for."""
    if Consumer.wait_first is _deliver_in_place:
        return
    if not faust.__version__.startswith("0.15."):
        log.warning("faust %s: the in-place hand-off is for 0.15.x, not applied", faust.__version__)
        return
    Consumer.wait_first = _deliver_in_place  # type: ignore[method-assign]
