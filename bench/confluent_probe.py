"""A nudge worker on Faust's confluent:// driver, with the driver's first five
defects patched: the evidence behind docs/performance.md ("Transport:
aiokafka or confluent"). Not a way to run nudge.

    KAFKA_BOOTSTRAP_SERVERS=... NUDGE_TOPIC_PREFIX=p. NUDGE_APP_ID=p.nudge \\
        python -m bench.confluent_probe [--unpatched N]

`--unpatched N` leaves patch N (1-5, as numbered in the docs) out, to see
that defect on its own. Faust's loggers are at INFO, so its recovery tables
show whether the changelog is replayed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.transport.drivers import confluent
from faust.types import TP

import nudge.streams.worker
from nudge.cli import main as nudge_main

log = logging.getLogger("nudge.probe")


def _poll_until_assigned() -> None:
    """1: librdkafka assigns only inside a poll; the driver polls only once assigned."""
    subscribe = confluent.ConfluentConsumerThread.subscribe

    async def patched(self: Any, topics: Iterable[str]) -> None:
        await subscribe(self, topics)

        def serve() -> None:
            consumer = self._ensure_consumer().consumer
            for _ in range(600):
                if self._assigned:
                    return
                message = consumer.poll(0.1)
                if message is not None:  # only error events before an assignment
                    log.warning("probe: polled before assignment: %s", message.error())

        await self.call_thread(serve)

    confluent.ConfluentConsumerThread.subscribe = patched


def _synchronous_seek() -> None:
    """2: the driver awaits librdkafka's synchronous seek, and seeks to -1001."""

    async def seek_to_committed(self: Any) -> Mapping[TP, int]:
        consumer = self._ensure_consumer().consumer
        committed = consumer.committed(consumer.assignment())
        for tp in committed:
            if tp.offset >= 0:
                consumer.seek(tp)
        return {confluent.ensure_TP(tp): tp.offset for tp in committed}

    confluent.ConfluentConsumerThread._seek_to_committed = seek_to_committed


def _no_livelock_check() -> None:
    """3: verify_event_path does not exist on the driver's consumer thread."""
    confluent.Consumer.verify_event_path = lambda self, now, tp: None


def _stamp_generation() -> None:
    """4: without a generation id Faust's stream skips every message."""
    to_message = confluent.Consumer._to_message

    def stamped(self: Any, tp: TP, record: Any) -> Any:
        message = to_message(self, tp, record)
        message.generation_id = self.app.consumer_generation_id
        return message

    confluent.Consumer._to_message = stamped


def _start_producer_buffer() -> None:
    """5: the driver's Producer.on_start never starts Faust's ProducerBuffer."""
    on_start = confluent.Producer.on_start

    async def patched(self: Any) -> None:
        await self.add_runtime_dependency(self.buffer)
        await on_start(self)

    confluent.Producer.on_start = patched


PATCHES = {
    1: _poll_until_assigned,
    2: _synchronous_seek,
    3: _no_livelock_check,
    4: _stamp_generation,
    5: _start_producer_buffer,
}


def _confluent_app() -> None:
    """nudge builds kafka:// URLs; the probe swaps the scheme."""
    app_class = faust.App

    def app(*args: Any, **kwargs: Any) -> faust.App:
        kwargs["broker"] = kwargs["broker"].replace("kafka://", "confluent://")
        return app_class(*args, **kwargs)

    faust.App = app  # type: ignore[misc]


def _faust_logs_at_info(level: str) -> dict:
    return {
        "version": 1,
        "merge": True,
        "loggers": {name: {"level": "INFO"} for name in ("faust", "mode", "nudge")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unpatched", type=int, action="append", default=[], choices=PATCHES)
    args = parser.parse_args()
    for number, patch in PATCHES.items():
        if number not in args.unpatched:
            patch()
    _confluent_app()
    nudge.streams.worker._logging_config = _faust_logs_at_info
    return nudge_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
