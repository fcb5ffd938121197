"""Local tables after a crash: roll back what the changelogs may lack.

Under at-least-once a table write reaches RocksDB at once and its changelog
when the producer gets to it; Faust flushes the producer before it commits
input offsets. After a kill -9 the local tables may hold writes their
changelogs lack, and the worker would then skip redelivered events as
duplicates, or decide on state no other worker could rebuild. Rebuilding
every table from its changelog is safe but slow (390 s for a million
customers, docs/performance.md). The journal makes a crash cost only the
writes since the last commit:

- before a key's first write in an epoch, the journal keeps its value then
  (the pre-image) and, per table partition, the changelog offset Faust had
  persisted then;
- a commit opens a new epoch, and once it succeeds (the producer was
  flushed, so every write before it is on its changelog) the entries of the
  epochs before it are dropped;
- after an unclean stop, each journaled key gets back its oldest pre-image
  and each table partition its oldest offset, so Faust's recovery replays
  the changelogs from there: the local tables equal the changelogs again.

Under exactly_once the tables of an unclean run are discarded instead
(`discard_tables`): its local writes may come from transactions Kafka
aborted, and Faust persists offsets differently there.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import faust
import rocksdict
from faust.types import TP

log = logging.getLogger("nudge.worker")

CLEAN_STOP_MARKER = ".clean-stop"
#: Faust's key for the changelog offset a table partition's RocksDB holds
#: (faust.stores.rocksdb.Store.offset_key; the value is the offset in ASCII).
FAUST_OFFSET_KEY = b"__faust\0offset__"

_KEY, _OFFSET = b"k", b"o"
_ABSENT, _PRESENT = b"\0", b"\1"
_SEP = b"\0"


def _options() -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    return options


def table_path(tabledir: Path, table: str, partition: int) -> Path:
    """Where Faust keeps one table partition (Store.partition_path)."""
    return tabledir / f"{table}-{partition}.db"


class CrashJournal:
    """Pre-images of the keys written since the last successful commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = rocksdict.Rdict(str(path), _options())
        self.epoch = 1  # a journal starts empty: recover_local_tables removed the last one
        self._journaled: set[tuple[str, int, bytes]] = set()
        self._offsets_kept: set[tuple[str, int]] = set()
        self.watching = False

    def record(self, table: faust.Table, partition: int, key: bytes) -> None:
        """Call before writing `key` to `table`: journals its current value
        if this is its first write in the epoch."""
        slot = (table.name, partition, key)
        if slot in self._journaled:
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        if (table.name, partition) not in self._offsets_kept:
            changelog = TP(table.changelog_topic.get_topic_name(), partition)
            offset = table.persisted_offset(changelog)
            value = b"" if offset is None else str(offset).encode()
            batch.put(self._key(_OFFSET, table.name, partition), value)
            self._offsets_kept.add((table.name, partition))
        value = table.data.get(key)
        image = _ABSENT if value is None else _PRESENT + value
        batch.put(self._key(_KEY, table.name, partition, key), image)
        self.db.write(batch)
        self._journaled.add(slot)

    def watch_commits(self, consumer: faust.types.ConsumerT) -> None:
        """Open an epoch at each of the consumer's commits, and drop the
        epochs it closed once it succeeds (it flushed the producer first)."""
        commit = consumer.commit

        async def journaled_commit(*args: Any, **kwargs: Any) -> bool:
            closed = self.begin_epoch()
            committed = await commit(*args, **kwargs)
            if committed:
                self.drop_through(closed)
            return committed

        consumer.commit = journaled_commit  # type: ignore[method-assign]
        self.watching = True

    def begin_epoch(self) -> int:
        """Writes from now on go to a new epoch; returns the one that closed."""
        closed = self.epoch
        self.epoch += 1
        self._journaled.clear()
        self._offsets_kept.clear()
        return closed

    def drop_through(self, epoch: int) -> None:
        """Forget the epochs up to `epoch`: their writes are on the changelogs."""
        self.db.delete_range(b"", _epoch_bytes(epoch + 1))

    def close(self) -> None:
        self.db.close()

    def _key(self, kind: bytes, table: str, partition: int, key: bytes = b"") -> bytes:
        return _SEP.join(
            (_epoch_bytes(self.epoch) + kind, table.encode(), str(partition).encode(), key)
        )


def _epoch_bytes(epoch: int) -> bytes:
    return epoch.to_bytes(8, "big")


def roll_back(journal_path: Path, tabledir: Path) -> tuple[int, int]:
    """Give each journaled key its oldest pre-image and each table partition
    its oldest persisted offset; returns (keys, table partitions) rolled back.
    Table partitions whose database is gone are left to Faust's full recovery."""
    images: dict[tuple[str, int], dict[bytes, bytes]] = {}
    offsets: dict[tuple[str, int], bytes] = {}
    db = rocksdict.Rdict(str(journal_path), _options())
    try:
        for entry, image in db.items():  # oldest epoch first: keep the first seen
            kind = entry[8:9]
            table, partition, key = entry[10:].split(_SEP, 2)
            slot = (table.decode(), int(partition))
            if kind == _OFFSET:
                offsets.setdefault(slot, image)
            else:
                images.setdefault(slot, {}).setdefault(key, image)
    finally:
        db.close()
    keys = parts = 0
    for (table, partition), offset in offsets.items():
        path = table_path(tabledir, table, partition)
        if not path.is_dir():
            continue
        store = rocksdict.Rdict(str(path), _options())
        try:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, image in images.get((table, partition), {}).items():
                if image[:1] == _PRESENT:
                    batch.put(key, image[1:])
                else:
                    batch.delete(key)
                keys += 1
            if offset:
                batch.put(FAUST_OFFSET_KEY, offset)
            else:
                batch.delete(FAUST_OFFSET_KEY)  # Faust replays this partition in full
            store.write(batch)
            parts += 1
        finally:
            store.close()
    return keys, parts


def recover_local_tables(tabledir: Path, journal_path: Path, *, exactly_once: bool) -> str:
    """At start: make the local tables agree with the changelogs.
    Returns what was done: "clean", "rolled_back", "discarded" or "empty"."""
    marker = tabledir / CLEAN_STOP_MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    has_tables = tabledir.is_dir() and any(tabledir.iterdir())
    outcome = "clean" if clean else "empty"
    if not clean and has_tables:
        if exactly_once or not journal_path.is_dir():
            log.warning(
                "the last run did not stop cleanly: rebuilding the tables from the changelogs"
            )
            shutil.rmtree(tabledir)
            outcome = "discarded"
        else:
            keys, parts = roll_back(journal_path, tabledir)
            log.warning(
                "the last run did not stop cleanly: rolled back %d keys in %d table "
                "partitions to their changelogs, which Faust replays from the last commit",
                keys,
                parts,
            )
            outcome = "rolled_back"
    shutil.rmtree(journal_path, ignore_errors=True)
    return outcome


def mark_clean_stop(tabledir: Path) -> None:
    if tabledir.is_dir():
        (tabledir / CLEAN_STOP_MARKER).touch()
