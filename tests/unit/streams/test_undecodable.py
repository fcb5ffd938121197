"""streams/faust_fixes/undecodable.py on aiokafka's real record parsing: a batch it cannot
decode is fetched once more, then skipped with its raw bytes and offsets; the
records around it are handed out. The broker and worker side is
tests/integration/test_undecodable_live.py."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from aiokafka import codec
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from nudge.streams.faust_fixes import undecodable

TP = TopicPartition("nudge.purchases", 2)


def batch(base_offset: int, count: int, codec_id: int = 0) -> bytearray:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec_id, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i in range(count):
        builder.append(i, timestamp=None, key=b"k", value=b'{"type": "purchase"}', headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base_offset)
    return data


def garbage(data: bytearray, *, keep_crc_valid: bool) -> bytes:
    """The batch's records overwritten: a broken payload under a valid CRC, or a CRC mismatch."""
    data[61:] = b"\xab" * (len(data) - 61)
    if keep_crc_valid:
        struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


def fetch(data: bytes, fetch_offset: int) -> tuple[list[int], int]:
    """One fetch result read the way FetchResult.getall reads it, through the
    installed unpacking: (offsets handed out, the position it leaves)."""
    records = PartitionRecords(
        TP, undecodable._RawBatches(data), None, fetch_offset, None, None, True, READ_UNCOMMITTED
    )
    records._records_iterator = undecodable._unpack_or_skip(records)
    return [r.offset for r in records], records.next_fetch_offset


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    undecodable._skipped.clear()
    undecodable._failed_once.clear()


@pytest.mark.parametrize(
    ("codec_id", "keep_crc_valid", "error"),
    [(3, True, "DecompressionError"), (1, True, "BadGzipFile"), (0, False, "Invalid CRC")],
)
def test_a_bad_batch_is_fetched_once_more_then_skipped_with_its_bytes(
    codec_id: int, keep_crc_valid: bool, error: str
) -> None:
    bad = garbage(batch(3, 3, codec_id), keep_crc_valid=keep_crc_valid)
    data = bytes(batch(0, 3)) + bad + bytes(batch(6, 2))

    assert fetch(data, 0) == ([0, 1, 2], 3)  # up to the bad batch: fetched again from there
    assert not undecodable._skipped
    assert fetch(data[len(batch(0, 3)) :], 3) == ([], 6)  # again at 3: skipped past it
    [skipped] = undecodable._skipped
    assert (skipped.tp, skipped.first, skipped.last, skipped.raw) == (TP, 3, 5, bad)
    assert error in skipped.error
    assert fetch(data[len(batch(0, 3)) + len(bad) :], 6) == ([6, 7], 8)


def test_a_batch_that_decodes_the_second_time_is_not_skipped() -> None:
    good = bytes(batch(3, 2, 3))
    assert fetch(garbage(batch(3, 2, 3), keep_crc_valid=False), 3) == ([], 3)
    assert fetch(good, 3) == ([3, 4], 5)
    assert not undecodable._skipped


def test_a_missing_codec_library_is_refused(monkeypatch) -> None:
    undecodable.check_codecs()
    monkeypatch.setattr(codec, "has_lz4", lambda: False)
    with pytest.raises(RuntimeError, match="cannot decode lz4-compressed records"):
        undecodable.check_codecs()
