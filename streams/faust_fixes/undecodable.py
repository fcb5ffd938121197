"""Record batches the Kafka client cannot decode: deadlettered and skipped, never a crash loop.

Where it breaks (aiokafka 0.14, faust-streaming 0.15.3): aiokafka decodes a
fetched batch lazily, when Faust takes the records. `Fetcher.fetched_records`
-> `FetchResult.getall` -> `PartitionRecords._unpack_records` checks the
batch's CRC (CorruptRecordException), decompresses it (aiokafka.codec, via
cramjam: UnsupportedCodecError for a codec it has no library for,
cramjam.DecompressionError, gzip.BadGzipFile and the like for a broken
payload) and parses every record (CorruptRecordException). The exception
leaves `fetched_records` in Faust's consumer thread, `Consumer._drain_messages`
logs "Drain messages raised" and re-raises, and the worker crashes. Nothing
was committed past the batch, so the restarted worker, and every worker that
takes the partition over, fetches it and crashes again: a poison partition.

What happens instead: the batch is fetched once more (a CRC error from a
transfer gone wrong then goes away); if it fails again at the same offset,
its raw bytes as the broker stores them (compressed, first 64 KiB) go to the
deadletter topic with reason `undecodable_batch`, the offsets it covered and
the error, an ERROR line is logged, `nudge_undecodable_batches` counts it,
and the partition moves on past it. The deadletter record is handed to the
producer before any later record of the partition reaches the agent, so the
commit that passes the batch (Faust's gap handling in `_drain_messages`)
never comes before it; after a crash in between, the batch is deadlettered
again (at least once, like every output).

Why skip rather than pause the partition: what no client can decode (a
corrupt batch, a codec newer than the client) stays undecodable, so a pause
would hold every customer on that partition until someone moves the offset by
hand, and the batch would be skipped then anyway. The deadletter record keeps
the batch's bytes and offsets, and the batch stays on its topic until
retention, so the data a pause would keep is kept; what a skip gives up is
processing those events in order, which no worker could do. (A codec newer
than the client is the one case a client upgrade would decode: its events
are then republished from the source offsets.) What a worker cannot
decode but another could (its codec libraries missing) must not be skipped:
those are valid events, consent changes among them. `install` therefore
refuses to start a worker whose aiokafka lacks a codec Kafka defines, so a
missing library is a failed deploy with a clear message, never skipped data.

aiokafka and Faust internals are patched here (the batch being unpacked is not
visible from outside); `TESTED` names the versions this was written and
tested for, and streams/faust_fixes refuses to run on others.

Upstream: aio-libs/aiokafka#321 (https://github.com/aio-libs/aiokafka/issues/321,
open: no way to skip a batch that cannot be decoded). Entry:
docs/reliability.md#undecodable.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
from aiokafka import codec
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from nudge.policy.processor import Processor
from nudge.streams import metrics

if TYPE_CHECKING:
    from nudge.streams.app import NudgeApp

log = logging.getLogger("nudge.worker")

REASON = "undecodable_batch"
#: The versions whose fetch path the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",), "aiokafka": ("0.14.0",)}
#: Bytes before a record batch's payload: base offset (8) and length (4).
_LOG_OVERHEAD = 12

_MemoryRecords = fetcher.MemoryRecords
_unpack_records = PartitionRecords._unpack_records
_thread_getmany = AIOKafkaConsumerThread.getmany


@dataclass(frozen=True)
class Skipped:
    """One undecodable batch: offsets `first` to `last` of `tp` were not handed out."""

    tp: TopicPartition
    first: int
    last: int
    raw: bytes
    error: str


#: Skips found in the consumer thread, reported from the event loop (deque
#: appends and pops are atomic).
_skipped: deque[Skipped] = deque()
#: (partition, offset) of a first failure: the batch is fetched once more.
_failed_once: set[tuple[TopicPartition, int]] = set()
_nudge: NudgeApp | None = None


class _RawBatches:
    """aiokafka's MemoryRecords that remembers where the batch it handed out last starts."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._records = _MemoryRecords(data)
        self._next_start = 0
        self.last: tuple[Any, int] = (None, 0)  # (batch or None if unreadable, its start)

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self) -> Any:
        start = self._next_start
        self._next_start = start + _LOG_OVERHEAD + _batch_length(self.data, start)
        self.last = (None, start)
        batch = self._records.next_batch()
        self.last = (batch, start)
        return batch

    def raw(self, start: int) -> bytes:
        return bytes(self.data[start : start + _LOG_OVERHEAD + _batch_length(self.data, start)])


def _batch_length(data: bytes, start: int) -> int:
    return int.from_bytes(data[start + 8 : start + _LOG_OVERHEAD], "big", signed=True)


def _unpack_or_skip(self: PartitionRecords) -> Iterator[Any]:
    """aiokafka's record unpacking; a batch it cannot decode ends the fetch
    result there (fetched again once), then is skipped and reported."""
    try:
        yield from _unpack_records(self)
    except Exception as exc:  # everything in there decodes bytes from the broker
        skipped = _skip(self, exc)
        if skipped is not None:
            _skipped.append(skipped)


def _skip(records: PartitionRecords, exc: Exception) -> Skipped | None:
    tp = records._tp
    first = records.next_fetch_offset  # the first offset not handed out
    error = f"{type(exc).__name__}: {exc}"[:300]
    if (tp, first) not in _failed_once:
        _failed_once.add((tp, first))
        log.warning(
            "could not decode the record batch at %s[%d] offset %d (%s); fetching it again",
            tp.topic, tp.partition, first, error,
        )  # fmt: skip
        return None  # the position stays at the batch: the fetcher reads it again
    _failed_once.discard((tp, first))
    batches: _RawBatches = records._records  # installed together with this
    batch, start = batches.last
    # A batch whose frame cannot even be read has no known end: one offset at a time.
    end = max(batch.next_offset, first + 1) if batch is not None else first + 1
    records.next_fetch_offset = end  # FetchResult.getall moves the position here
    return Skipped(tp, first, end - 1, batches.raw(start), error)


async def _getmany_reporting_skips(self: AIOKafkaConsumerThread, *args: Any, **kw: Any) -> Any:
    """Faust's fetch; a batch skipped in it is deadlettered before its records are handed out."""
    records = await _thread_getmany(self, *args, **kw)
    while _skipped:
        await _report(_skipped.popleft())
    return records


async def _report(skipped: Skipped) -> None:
    tp = skipped.tp
    log.error(
        "undecodable record batch at %s[%d] offsets %d-%d (%s): deadlettered as %s and skipped",
        tp.topic, tp.partition, skipped.first, skipped.last, skipped.error, REASON,
    )  # fmt: skip
    nudge = _nudge
    prefix = nudge.settings.topic_prefix if nudge is not None else ""
    kind = tp.topic.removeprefix(prefix) if prefix and tp.topic.startswith(prefix) else "other"
    metrics.UNDECODABLE_BATCHES.labels(kind).inc()
    if nudge is None:
        return
    detail = f"{skipped.error}; offsets {skipped.first}-{skipped.last} skipped"
    result = Processor.deadletter(
        None,
        skipped.raw,
        (tp.topic, tp.partition, skipped.first),
        REASON,
        detail,
        datetime.now(UTC),
    )
    try:
        await nudge.outbox.send(result.emits, faust.types.TP(tp.topic, tp.partition))
    except Exception:  # the ERROR line above still names the batch
        log.exception("could not send the deadletter record of %s[%d]", tp.topic, tp.partition)
        return
    metrics.INVALID.labels(REASON).inc()
    metrics.DEADLETTERS.inc()


def check_codecs() -> None:
    """Every codec Kafka defines must be decodable here, or valid events would be skipped."""
    missing = [
        name
        for name, available in (
            ("snappy", codec.has_snappy),
            ("lz4", codec.has_lz4),
            ("zstd", codec.has_zstd),
        )
        if not available()
    ]
    if missing:
        raise RuntimeError(
            f"aiokafka cannot decode {', '.join(missing)}-compressed records (cramjam missing): "
            "install the locked requirements (aiokafka[lz4,snappy,zstd])"
        )


def install(nudge: NudgeApp) -> None:
    """Patch aiokafka's and Faust's fetch path (once); deadletters go through `nudge`."""
    global _nudge
    check_codecs()
    _nudge = nudge
    if PartitionRecords._unpack_records is _unpack_or_skip:
        return
    fetcher.MemoryRecords = _RawBatches
    PartitionRecords._unpack_records = _unpack_or_skip
    AIOKafkaConsumerThread.getmany = _getmany_reporting_skips
