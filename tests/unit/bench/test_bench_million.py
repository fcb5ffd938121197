"""The million bench's preload: records come from the real engine, keyed and
partitioned as the worker would write them; its traffic is valid input. No
broker, no timing assertions."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from bench import million
from nudge.policy.clock import DAY
from nudge.policy.processor import Processor
from nudge.policy.state import TABLES, decode_state
from nudge.schemas.codec import decode_event
from nudge.streams.worker import build_engine


def test_partitioner_is_kafka_s_murmur2() -> None:
    # Partitions of 1,000 from Java's DefaultPartitioner (kafka-python's test vectors).
    expected = {b"": 681, b"a": 524, b"ab": 434, b"abc": 107, b"123456789": 566, b"\x00 ": 742}
    for key, partition in expected.items():
        assert million.partition_for(key, 1000) == partition
    # ... and what the bench's event producer (aiokafka) picks for the same key.
    partitions = list(range(million.PARTITIONS))
    for i in range(500):
        key = million.customer_id(i).encode()
        chosen = DefaultPartitioner()(key, partitions, partitions)
        assert million.partition_for(key, million.PARTITIONS) == chosen


def test_preloaded_records_are_the_engine_s_state_with_marketing_consent(tmp_path: Path) -> None:
    settings = million.worker_settings("127.0.0.1:1", tmp_path)
    processor = Processor(build_engine(settings)[0])
    rng, outputs = random.Random(3), {}
    end = time.time()
    for i in range(50):
        key, records = million.customer_records(processor, i, rng, end, outputs)
        assert key == million.customer_id(i).encode()
        assert {"consent", "profile", "recency"} <= set(records) <= set(TABLES)
        state = decode_state(records)
        assert state.consent.entries["all:marketing"].status == "granted"
        assert len(state.profile.processed) == 3 * 4  # three events remembered
        assert state.recency.recent_views  # the product view
        assert end - million.PRELOAD_DAYS * DAY - 1 < state.recency.last_seen["product_view"]
    assert outputs["consent-log"] == 50


def test_traffic_is_valid_clickstream_on_preloaded_customers() -> None:
    items = million.traffic(1000, 200, seed=1)
    now = datetime.now(UTC)
    stamp = f'"{now.isoformat()}"'.encode()
    types = set()
    for item in items:
        event = decode_event(item.kind, item.head + stamp + item.tail, item.key.encode(), now)
        assert event.customer_id == item.key and item.key.startswith("p.c")
        assert int(item.key[3:]) < 1000
        types.add(event.type)
    assert types == {"session_start", "product_view"}
    assert len({i.head for i in items}) == len(items)  # fresh event ids
