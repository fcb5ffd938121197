"""ops.local_kafka: a broker restarted on the same data dir keeps its data; stop is idempotent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from nudge.ops import local_kafka

pytestmark = pytest.mark.integration


def read_all(bootstrap: str, topic: str, group: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    while len(values) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            values += [m.value for m in batch]
    consumer.close()
    return values


def test_restart_keeps_data_and_stop_is_idempotent(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    port = local_kafka.free_port()
    topic = "restart.check"
    try:
        first = local_kafka.start(port=port, data_dir=data_dir)
        assert local_kafka.is_running(data_dir)
        admin = KafkaAdminClient(bootstrap_servers=first.bootstrap_servers)
        admin.create_topics([NewTopic(topic, 1, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=first.bootstrap_servers, acks="all")
        producer.send(topic, key=b"k", value=b"survives restart")
        producer.flush()
        producer.close()

        local_kafka.stop(data_dir)
        assert not local_kafka.is_running(data_dir)
        assert not (data_dir / local_kafka.PID_FILE).exists()
        local_kafka.stop(data_dir)  # second stop: no error, nothing to do

        second = local_kafka.start(port=port, data_dir=data_dir)
        assert second.pid != first.pid
        assert read_all(second.bootstrap_servers, topic, "restart.group", 1) == [
            b"survives restart"
        ]
    finally:
        local_kafka.stop(data_dir)
    assert not local_kafka.is_running(data_dir)


def test_stop_without_broker_is_a_no_op(tmp_path: Path) -> None:
    local_kafka.stop(tmp_path)
    assert not local_kafka.is_running(tmp_path)
