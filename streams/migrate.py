"""Upgrading state from a table per part to one record per customer.

Before 2026-12 a worker kept six tables (recency, fatigue, consent, profile,
holds, erasure markers), each with its own changelog topic. Now every part
of a key lives in one record of the `customers` table (policy/stored.py).
Consent and erasure markers must survive the upgrade: a worker that started
empty would contact people who opted out, or take back an erasure.

`migrate` reads each old changelog to its end (its committed records: a
transactional worker's aborted writes are not state), keeps each key's
latest value per part, and writes one record per key to the new changelog,
to the partition the old records were in (co-partitioned with the input
topics, so the worker that owns a customer finds it). A worker then
rebuilds its local table from the new changelog. The old topics are left
alone; delete them once the upgraded workers run.

Run it with every worker stopped: a write to an old table after the copy
would be lost. A worker refuses to start while old changelogs exist and the
new one does not (streams.admin.refuse_unmigrated_state).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from nudge.errors import UserError
from nudge.policy.stored import (
    HOLD_INDEX_VALUE,
    PARTS,
    STATE_TABLE,
    Parts,
    encode_record,
    hold_index_key,
)
from nudge.streams.admin import changelog_topic, ensure_topics, legacy_changelogs
from nudge.streams.settings import Settings

log = logging.getLogger("nudge.migrate")

#: Longest a changelog may take to read to its end.
READ_TIMEOUT_S = 600.0


@dataclass
class Migrated:
    """What a migration read and wrote."""

    topics_read: list[str]
    records_read: int
    keys_written: int


def read_latest(
    consumer: KafkaConsumer, topic: str, partitions: int
) -> dict[tuple[int, bytes], bytes | None]:
    """Every key's latest committed value in a compacted topic, by (partition, key)."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)  # read_committed: the last stable offsets
    latest: dict[tuple[int, bytes], bytes | None] = {}
    deadline = time.monotonic() + READ_TIMEOUT_S
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} not read to its end in {READ_TIMEOUT_S:g} s")
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                if record.key is not None and record.offset < ends[tp]:
                    latest[(tp.partition, record.key)] = record.value
    return latest


def combine(
    old: dict[str, dict[tuple[int, bytes], bytes | None]],
) -> dict[tuple[int, bytes], bytes]:
    """One record per (partition, key) from the old tables' latest values
    (part -> (partition, key) -> bytes, None: deleted), and a hold index entry
    for each customer with held actions; keys left with no part are left out."""
    merged: dict[tuple[int, bytes], Parts] = {}
    for part, values in old.items():
        for where, value in values.items():
            merged.setdefault(where, dict.fromkeys(PARTS))[part] = value
    records = {}
    for (partition, key), parts in merged.items():
        record = encode_record(parts)
        if record is not None:
            records[(partition, key)] = record
        if parts["holds"]:  # the hold index a restarted worker reads (streams/holds.py)
            records[(partition, hold_index_key(key))] = HOLD_INDEX_VALUE
    return records


def migrate(settings: Settings) -> Migrated:
    """Copy the old layout's changelogs into the new one (see the module docstring)."""
    security = settings.kafka_security()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **security,
    )
    try:
        legacy = legacy_changelogs(settings, set(consumer.topics()))
        if not legacy:
            raise UserError("no changelog topics of the old state layout: nothing to migrate")
        new_topic = changelog_topic(settings, STATE_TABLE)
        if new_topic in consumer.topics():
            raise UserError(f"{new_topic} exists: state was migrated (or a new worker ran)")
        old = {}
        for part in PARTS:
            topic = changelog_topic(settings, part)
            if topic in legacy:
                old[part] = read_latest(consumer, topic, settings.partitions)
                log.info("read %s: %d keys", topic, len(old[part]))
    finally:
        consumer.close()
    records = combine(old)
    ensure_topics(settings, allow_unmigrated=True)  # the new changelog, compacted
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20, **security
    )
    try:
        for (partition, key), value in records.items():
            producer.send(new_topic, key=key, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()
    return Migrated(legacy, sum(len(v) for v in old.values()), len(records))
