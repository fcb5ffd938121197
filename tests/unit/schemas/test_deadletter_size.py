"""A deadletter record must itself be publishable, whatever the broker accepted.

A 900 KB input (the broker takes up to about 1 MB) became a 1.2 MB deadletter
record: the producer refused it, the worker's agent crashed, and the message
was neither deadlettered nor committed (tests/reliability/test_hostile_input.py).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import msgspec

from nudge.policy.processor import DEADLETTER_KEEP_BYTES, Processor
from nudge.schemas.outputs import DeadLetter

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PRODUCER_LIMIT = 1_048_576  # aiokafka's default max_request_size


def deadletter(key: bytes | None, value: bytes | None) -> tuple[bytes | None, DeadLetter, int]:
    result = Processor.deadletter(key, value, ("t.clickstream", 2, 7), "oversized", "big", NOW)
    [emit] = result.emits
    assert emit.kind == "deadletter" and result.invalid_reason == "oversized"
    return emit.key, msgspec.json.decode(emit.value, type=DeadLetter), len(emit.value)


def test_a_huge_value_is_cut_so_the_record_fits_the_producer() -> None:
    value = b"v" * 1_000_000
    key, record, size = deadletter(b"c1", value)
    assert size + len(key) < PRODUCER_LIMIT
    assert record.value == value[:DEADLETTER_KEEP_BYTES]
    assert (record.partition, record.offset, record.key) == (2, 7, b"c1")
    assert f"value cut to its first {DEADLETTER_KEEP_BYTES} of 1000000 bytes" in record.error
    assert record.error.startswith("big (")


def test_a_huge_key_is_cut_in_the_record_and_as_the_message_key() -> None:
    key, record, size = deadletter(b"k" * 900_000, b"{}")
    assert key == record.key == b"k" * DEADLETTER_KEEP_BYTES
    assert size + len(key) < PRODUCER_LIMIT
    assert record.value == b"{}"
    assert "key cut" in record.error and "value cut" not in record.error


def test_anything_an_event_can_be_is_kept_whole() -> None:
    value = b"x" * DEADLETTER_KEEP_BYTES
    _, record, _ = deadletter(b"c1", value)
    assert record.value == value and record.error == "big"
    assert json.loads(msgspec.json.encode(record))["value"] == base64.b64encode(value).decode()


def test_no_value_stays_no_value() -> None:
    _, record, _ = deadletter(None, None)
    assert record.key is None and record.value is None and record.error == "big"
