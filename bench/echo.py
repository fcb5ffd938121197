"""The baseline nudge is measured against: a bare aiokafka consume -> produce echo.

    python -m bench.echo --bootstrap 127.0.0.1:9092 --prefix echo. [--loop uvloop]

It reads every input topic of `prefix` (the same topics and partition count
the worker reads) in one consumer group and writes each message, unchanged
and with its key, to `{prefix}actions`. No state, no decoding, no decision:
what is left is the cost of Kafka and the Python client on this machine, so
`bench.pipeline` can say how far nudge is from the physical limit of this
stack. Producer settings match the worker's (linger 0, acks=all).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from nudge.streams.topics import INPUT_KINDS, topic_name

OUTPUT_KIND = "actions"


async def echo(bootstrap: str, prefix: str, ready_file: str | None) -> None:
    consumer = AIOKafkaConsumer(
        *(topic_name(prefix, kind) for kind in INPUT_KINDS),
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}echo",
        auto_offset_reset="earliest",
        auto_commit_interval_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    out = topic_name(prefix, OUTPUT_KIND)
    try:
        while not stop.is_set():
            if ready_file and consumer.assignment():
                # Positions resolved: fetching has really begun on every partition.
                for tp in consumer.assignment():
                    await consumer.position(tp)
                with open(ready_file, "w") as handle:
                    handle.write("ready\n")
                ready_file = None
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    await producer.send(out, record.value, key=record.key)
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--ready-file", help="written once partitions are assigned")
    args = parser.parse_args(argv)
    coroutine = echo(args.bootstrap, args.prefix, args.ready_file)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
