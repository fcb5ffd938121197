"""The Kafka client alone: aiokafka (Faust's default driver) against
confluent-kafka (librdkafka, Faust's confluent:// driver and Quix Streams).

    python -m bench.transport --bootstrap 127.0.0.1:9092 [--messages 50000] [--runs 2
                              --out bench/results/transport.json]

A nudge worker cannot run on Faust 0.15.3's confluent driver
(tests/integration/test_confluent_transport.py), so this measures what the
driver would sit on: each client echoes the same preloaded messages
(event-sized JSON, keyed by customer, 8 partitions) from an input topic to
an output topic, as bench.echo does, with the worker's producer settings
(linger 0, acks=all), and waits until every message is acknowledged. Both
run in this one process, one after the other, alternating; the figures are
wall-clock messages per second and the process's CPU time per message (all
threads: librdkafka works in its own).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from functools import partial

import confluent_kafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from bench.common import default_out, machine_info, parser, write_json

DEFAULT_OUT = default_out("transport")  # published figures: --out bench/results/...
PARTITIONS = 8
#: librdkafka's local queue (default 100,000): room for a whole run, as aiokafka has.
QUEUE = 2_000_000
#: About the size of a clickstream event on the wire.
VALUE = json.dumps(
    {
        "event_id": "e" * 36,
        "type": "product_view",
        "customer_id": "c-000000",
        "ts": "2026-12-03T11:00:00+00:00",
        "product_id": "sku-12345",
        "category": "garden",
        "price": 49.0,
        "schema_version": 1,
    }
).encode()


def preload(bootstrap: str, topic: str, messages: int) -> None:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "queue.buffering.max.messages": QUEUE}
    )
    for i in range(messages):
        producer.produce(topic, VALUE, f"c-{i % 5000:06d}".encode())
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)


async def echo_aiokafka(bootstrap: str, source: str, sink: str, messages: int) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"{source}-aiokafka-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    await producer.start()
    await consumer.start()
    try:
        seen = 0
        while seen < messages:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    await producer.send(sink, record.value, key=record.key)
                seen += len(records)
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


def echo_confluent(bootstrap: str, source: str, sink: str, messages: int) -> None:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{source}-confluent-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 0,
            "acks": "all",
            "queue.buffering.max.messages": QUEUE,
        }
    )
    consumer.subscribe([source])
    try:
        seen = 0
        while seen < messages:
            # What the driver's getmany does (faust/transport/drivers/confluent.py).
            for record in consumer.consume(num_messages=10_000, timeout=1.0):
                if record.error() is None:
                    producer.produce(sink, record.value(), record.key())
                    seen += 1
            producer.poll(0)
        producer.flush(60)
    finally:
        consumer.close()


def timed(run: Callable[[], None], messages: int) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "messages_per_s": round(messages / wall),
        "cpu_us_per_message": round(cpu / messages * 1e6, 1),
        "seconds": round(wall, 2),
    }


def main() -> None:
    options = parser("bench.transport", __doc__, DEFAULT_OUT)
    options.add_argument("--bootstrap", required=True)
    options.add_argument("--messages", type=int, default=50_000)
    options.add_argument("--runs", type=int, default=2)
    args = options.parse_args()
    load = os.getloadavg()
    prefix = f"transport-{uuid.uuid4().hex[:6]}"
    source = f"{prefix}-in"
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    sinks = [f"{prefix}-out-{i}" for i in range(2 * args.runs)]
    admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (source, *sinks)])
    admin.close()
    preload(args.bootstrap, source, args.messages)
    clients = {
        "aiokafka": lambda sink: asyncio.run(
            echo_aiokafka(args.bootstrap, source, sink, args.messages)
        ),
        "confluent-kafka": lambda sink: echo_confluent(args.bootstrap, source, sink, args.messages),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    sink_names = iter(sinks)
    for i in range(args.runs):
        order = list(clients) if i % 2 == 0 else list(reversed(clients))
        for name in order:
            sink = next(sink_names)
            runs[name].append(timed(partial(clients[name], sink), args.messages))
            print(name, runs[name][-1], flush=True)
    result = {
        "what": "consume -> produce echo of preloaded messages per Kafka client (bench.transport)",
        "messages": args.messages,
        "value_bytes": len(VALUE),
        "partitions": PARTITIONS,
        "producer": "linger 0, acks=all",
        "versions": {
            "aiokafka": __import__("aiokafka").__version__,
            "confluent-kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
        },
        "machine": machine_info(None, load),  # others share this machine's 2 cores
        "runs": runs,
        "median": {
            name: {
                key: statistics.median(run[key] for run in client_runs)
                for key in ("messages_per_s", "cpu_us_per_message")
            }
            for name, client_runs in runs.items()
        },
    }
    write_json(result, args.out)
    print(json.dumps(result["median"], indent=2))


if __name__ == "__main__":
    main()
