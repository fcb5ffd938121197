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
  epochs before it are dropped (`around_commit`, which
  streams/faust_fixes/commit_hook.py runs every consumer commit in);
- after an unclean stop, each journaled key gets back its oldest pre-image
  and each table partition its oldest offset, so Faust's recovery replays
  the changelogs from there: the local tables equal the changelogs again.

Under exactly_once the tables of an unclean run are discarded instead
(`recover_local_tables`): its local writes may come from transactions Kafka
aborted, and Faust persists offsets differently there.

Where Faust keeps a table partition and its persisted offset is Faust's own
business: streams/faust_fixes/rocksdb_store.py.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import faust
import msgspec
import rocksdict
from faust.types import TP

from nudge.streams.faust_fixes.rocksdb_store import OFFSET_KEY, table_path

log = logging.getLogger("nudge.worker")

CLEAN_STOP_MARKER = ".clean-stop"

_KEY, _OFFSET = "k", "o"
_LENGTH = 4  # bytes of each frame's length prefix
_frame = msgspec.msgpack.Encoder()
_unframe = msgspec.msgpack.Decoder(tuple[str, str, int, bytes, bytes | int | None])


def _options() -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(False)
    return options


class CrashJournal:
    """Pre-images of the keys written since the last successful commit: one
    append-only file per epoch. A write(2) of a few hundred bytes is cheap
    and, unlike a buffered write, survives a kill -9 of the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.epoch = 0
        self._file = -1
        self._journaled: set[bytes] = set()
        self._offsets_kept: set[tuple[str, int]] = set()
        self.begin_epoch()

    def record(
        self,
        tables: Mapping[str, faust.Table],
        partition: int,
        key: bytes,
        replaced: Mapping[str, bytes | None],
    ) -> None:
        """Call before writing `key` to the tables named in `replaced`, with
        the values the writes replace: journals those that are the key's
        first write in the epoch, in one write(2)."""
        frames = []
        for name, value in replaced.items():
            # bytes, not a tuple: thousands of these live for an epoch, and
            # surviving tuples would make the cyclic GC run full collections
            slot = b"%s\0%d\0%s" % (name.encode(), partition, key)
            if slot in self._journaled:
                continue
            if (name, partition) not in self._offsets_kept:
                table = tables[name]
                offset = table.persisted_offset(
                    TP(table.changelog_topic.get_topic_name(), partition)
                )
                frames.append(_encode((_OFFSET, name, partition, b"", offset)))
                self._offsets_kept.add((name, partition))
            frames.append(_encode((_KEY, name, partition, key, value)))
            self._journaled.add(slot)
        if frames:
            os.write(self._file, b"".join(frames))

    async def around_commit(self, commit: Callable[[], Awaitable[bool]]) -> bool:
        """Run a consumer commit: it opens an epoch, and once it succeeds (it
        flushed the producer first) the epochs it closed are dropped."""
        closed = self.begin_epoch()
        committed = await commit()
        if committed:
            self.drop_through(closed)
        return committed

    def begin_epoch(self) -> int:
        """Writes from now on go to a new epoch; returns the one that closed."""
        closed = self.epoch
        self.epoch += 1
        if self._file >= 0:
            os.close(self._file)
        self._file = os.open(
            _epoch_file(self.path, self.epoch), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        self._journaled.clear()
        self._offsets_kept.clear()
        return closed

    def drop_through(self, epoch: int) -> None:
        """Forget the epochs up to `epoch`: their writes are on the changelogs."""
        for file in self.path.glob("*.journal"):
            if int(file.stem) <= epoch:
                file.unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self._file)
        self._file = -1


def _epoch_file(path: Path, epoch: int) -> Path:
    return path / f"{epoch:012d}.journal"


def _encode(entry: tuple) -> bytes:
    payload = _frame.encode(entry)
    return len(payload).to_bytes(_LENGTH, "big") + payload


def _entries(journal_path: Path) -> list[tuple[str, str, int, bytes, bytes | int | None]]:
    """Every entry, oldest epoch first; a frame cut short at the end of a
    file (the process died inside the write) is left out."""
    entries = []
    for file in sorted(journal_path.glob("*.journal")):
        data = file.read_bytes()
        at = 0
        while at + _LENGTH <= len(data):
            size = int.from_bytes(data[at : at + _LENGTH], "big")
            frame = data[at + _LENGTH : at + _LENGTH + size]
            if len(frame) < size:
                break
            entries.append(_unframe.decode(frame))
            at += _LENGTH + size
    return entries


def roll_back(journal_path: Path, tabledir: Path) -> tuple[int, int]:
    """Give each journaled key its oldest pre-image and each table partition
    its oldest persisted offset; returns (keys, table partitions) rolled back.
    Table partitions whose database is gone are left to Faust's full recovery."""
    images: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
    offsets: dict[tuple[str, int], int | None] = {}
    for kind, table, partition, key, value in _entries(journal_path):
        slot = (table, partition)
        if kind == _OFFSET:
            offsets.setdefault(slot, value)  # type: ignore[arg-type]
        else:
            images.setdefault(slot, {}).setdefault(key, value)  # type: ignore[arg-type]
    keys = parts = 0
    for (table, partition), offset in offsets.items():
        path = table_path(tabledir, table, partition)
        if not path.is_dir():
            continue
        store = rocksdict.Rdict(str(path), _options())
        try:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, image in images.get((table, partition), {}).items():
                if image is None:
                    batch.delete(key)
                else:
                    batch.put(key, image)
                keys += 1
            if offset is None:
                batch.delete(OFFSET_KEY)  # Faust replays this partition in full
            else:
                batch.put(OFFSET_KEY, str(offset).encode())
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
