"""Record batches on the test broker: produced one event at a time in a given
codec, read back from the broker's log segments, and damaged there.

Damaging a segment is the only honest way to put a batch no client can decode
on a real broker: the broker validates what producers send (CRC,
compression), but serves the bytes of its segment files as they are. Needs
the broker's log dirs on this machine (the session broker of
tests/conftest.py, or a local one).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka.record.util import calc_crc32c
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from nudge.testing import event_key

#: Kafka's codec ids (the low three bits of a batch's attributes).
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
#: v2 batch header: base offset, length, leader epoch, magic, CRC, attributes, ...
_CRC_AT, _ATTRIBUTES_AT, _HEADER_SIZE = 17, 21, 61


def produce(
    bootstrap: str, topic: str, value: dict, codec: str = "none", key: bytes | None = None
) -> tuple[int, int]:
    """One JSON record in a batch of its own, compressed with `codec` by a
    real producer; keyed as the contract says unless `key` is given.
    Returns its (partition, offset)."""
    kind = None if codec == "none" else codec
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=kind, acks="all")
    try:
        data = json.dumps(value).encode()
        sent = producer.send(topic, key=key or event_key(value), value=data).get(10)
        return sent.partition, sent.offset
    finally:
        producer.close(10)


@dataclass(frozen=True)
class StoredBatch:
    path: Path
    position: int
    base_offset: int
    size: int
    codec: str


def partition_dir(bootstrap: str, topic: str, partition: int) -> Path:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [broker] = admin.describe_log_dirs()
    finally:
        admin.close()
    for log_dir in broker["log_dirs"]:
        path = Path(log_dir["log_dir"]) / f"{topic}-{partition}"
        if path.is_dir():
            return path
    raise FileNotFoundError(f"{topic}-{partition} is in no log dir on this machine")


def stored_batches(bootstrap: str, topic: str, partition: int) -> Iterator[StoredBatch]:
    """The batches of a partition as the broker stores them, in order."""
    for path in sorted(partition_dir(bootstrap, topic, partition).glob("*.log")):
        data = path.read_bytes()
        position = 0
        while position + _HEADER_SIZE <= len(data):
            base_offset, length = struct.unpack_from(">qi", data, position)
            size = 12 + length
            codec = _CODEC_NAMES.get(data[position + _ATTRIBUTES_AT + 1] & 0x07, "unknown")
            yield StoredBatch(path, position, base_offset, size, codec)
            position += size


def batch_at(bootstrap: str, topic: str, partition: int, offset: int) -> StoredBatch:
    return next(b for b in stored_batches(bootstrap, topic, partition) if b.base_offset == offset)


def damage(batch: StoredBatch, *, keep_crc_valid: bool) -> bytes:
    """Overwrite the batch's records (its compressed payload) with garbage.
    With `keep_crc_valid` the CRC is recomputed, so the client gets as far as
    decoding; without it, the client's CRC check fails. Returns the new bytes."""
    with batch.path.open("r+b") as segment:
        segment.seek(batch.position)
        data = bytearray(segment.read(batch.size))
        data[_HEADER_SIZE:] = b"\xab" * (batch.size - _HEADER_SIZE)
        if keep_crc_valid:
            struct.pack_into(">I", data, _CRC_AT, calc_crc32c(bytes(data[_ATTRIBUTES_AT:])))
        segment.seek(batch.position)
        segment.write(data)
    return bytes(data)
