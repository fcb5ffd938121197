"""Both Python Kafka clients the project uses work against the real broker.

kafka-python serves admin and simple tooling; aiokafka sits under faust-streaming, so its
consumer groups and transactions must work too.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

pytestmark = pytest.mark.integration

PARTITIONS = 3
KEYS = [f"user-{i}" for i in range(5)]
MESSAGES = [(KEYS[i % len(KEYS)], f"event-{i}") for i in range(30)]


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()


def committed_total(bootstrap: str, group: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return sum(meta.offset for meta in offsets.values())


def assert_keyed_order(records: list[tuple[str, str, int]]) -> None:
    """Each key stays on one partition and its values arrive in produce order."""
    partitions: dict[str, set[int]] = defaultdict(set)
    values: dict[str, list[str]] = defaultdict(list)
    for key, value, partition in records:
        partitions[key].add(partition)
        values[key].append(value)
    assert all(len(p) == 1 for p in partitions.values())
    for key in KEYS:
        assert values[key] == [v for k, v in MESSAGES if k == key]


def test_kafka_python_produce_consume_commit(kafka_bootstrap: str, unique_prefix: str) -> None:
    topic, group = unique_prefix + "kp", unique_prefix + "kp-group"
    create_topic(kafka_bootstrap, topic)

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for key, value in MESSAGES:
        producer.send(topic, key=key.encode(), value=value.encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[tuple[str, str, int]] = []
    deadline = time.monotonic() + 15
    while len(records) < len(MESSAGES) and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records += [(m.key.decode(), m.value.decode(), m.partition) for m in batch]
    consumer.commit()
    consumer.close()

    assert len(records) == len(MESSAGES)
    assert_keyed_order(records)
    assert committed_total(kafka_bootstrap, group) == len(MESSAGES)


async def _aiokafka_roundtrip(bootstrap: str, topic: str, group: str) -> list[tuple[str, str, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in MESSAGES:
            await producer.send(topic, key=key.encode(), value=value.encode())
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[tuple[str, str, int]] = []
    try:
        deadline = time.monotonic() + 15
        while len(records) < len(MESSAGES) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records += [(m.key.decode(), m.value.decode(), m.partition) for m in batch]
        await consumer.commit()
    finally:
        await consumer.stop()
    return records


def test_aiokafka_produce_consume_commit(kafka_bootstrap: str, unique_prefix: str) -> None:
    topic, group = unique_prefix + "aio", unique_prefix + "aio-group"
    create_topic(kafka_bootstrap, topic)

    records = asyncio.run(_aiokafka_roundtrip(kafka_bootstrap, topic, group))

    assert len(records) == len(MESSAGES)
    assert_keyed_order(records)
    assert committed_total(kafka_bootstrap, group) == len(MESSAGES)


async def _transactions(bootstrap: str, topic: str, prefix: str) -> dict[str, list[str]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=prefix + "tx")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, key=b"k", value=f"committed-{i}".encode())
        await producer.begin_transaction()
        await producer.send(topic, key=b"k", value=b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, key=b"k", value=b"committed-3")
    finally:
        await producer.stop()

    seen: dict[str, list[str]] = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"{prefix}{isolation}",
            auto_offset_reset="earliest",
            isolation_level=isolation,
        )
        await consumer.start()
        values: list[str] = []
        try:
            deadline = time.monotonic() + 10
            while "committed-3" not in values and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    values += [m.value.decode() for m in batch]
        finally:
            await consumer.stop()
        seen[isolation] = values
    return seen


def test_aiokafka_transactions_read_committed(kafka_bootstrap: str, unique_prefix: str) -> None:
    topic = unique_prefix + "tx"
    create_topic(kafka_bootstrap, topic, partitions=1)

    seen = asyncio.run(_transactions(kafka_bootstrap, topic, unique_prefix))

    assert seen["read_committed"] == [f"committed-{i}" for i in range(4)]
    # The aborted record is really in the log: only the isolation level hides it.
    assert "aborted" in seen["read_uncommitted"]
