"""The crash journal on real RocksDB files laid out as Faust lays them out.

A stand-in for Faust's Table offers what the journal reads: the name, the
changelog topic, and the changelog offset persisted in the partition's
database (Faust's own key, as faust.stores.rocksdb writes it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
import rocksdict

from nudge.streams.crash_journal import (
    CLEAN_STOP_MARKER,
    CrashJournal,
    mark_clean_stop,
    recover_local_tables,
    roll_back,
)
from nudge.streams.faust_fixes.rocksdb_store import OFFSET_KEY, table_path

PARTITION = 3


class StandInTable:
    """One partition of a Faust table: its RocksDB file, written directly."""

    def __init__(self, tabledir: Path, name: str) -> None:
        self.name = name
        self.path = table_path(tabledir, name, PARTITION)
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: f"app-{name}-changelog")
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        self.db = rocksdict.Rdict(str(self.path), options)

    def persisted_offset(self, tp) -> int | None:
        assert tp.partition == PARTITION and tp.topic == f"app-{self.name}-changelog"
        offset = self.db.get(OFFSET_KEY)
        return None if offset is None else int(offset)

    def write(self, key: bytes, value: bytes | None, changelog_offset: int | None = None) -> None:
        if value is None:
            del self.db[key]
        else:
            self.db[key] = value
        if changelog_offset is not None:
            self.acknowledge(changelog_offset)

    def acknowledge(self, changelog_offset: int) -> None:
        """What Faust does when the changelog acks a write (at-least-once)."""
        self.db[OFFSET_KEY] = str(changelog_offset).encode()


@pytest.fixture
def tabledir(tmp_path: Path) -> Path:
    path = tmp_path / "v1" / "tables"
    path.mkdir(parents=True)
    return path


def crash(journal: CrashJournal, *tables: StandInTable) -> None:
    """kill -9: the files stay as they are, the process lets go of them."""
    journal.close()
    for table in tables:
        table.db.close()


def reopen(table: StandInTable) -> dict[bytes, bytes]:
    db = rocksdict.Rdict(str(table.path), rocksdict.Options(raw_mode=True))
    rows = dict(db.items())
    db.close()
    return rows


def journaled_write(
    journal: CrashJournal, table: StandInTable, key: bytes, value: bytes | None, **ack: int
) -> None:
    """A table write as the worker makes it: journaled first, with the value
    it replaces (which the worker read to decide)."""
    journal.record({table.name: table}, PARTITION, key, {table.name: table.db.get(key)})
    table.write(key, value, **ack)


def test_a_crash_rolls_back_every_key_written_since_the_last_commit(tabledir, tmp_path) -> None:
    profile = StandInTable(tabledir, "profile")
    profile.write(b"ann", b"ann-1", changelog_offset=10)  # on the changelog, acked
    journal = CrashJournal(tmp_path / "journal")
    for key, value in ((b"ann", b"ann-2"), (b"ann", b"ann-3"), (b"bob", b"bob-1")):
        journaled_write(journal, profile, key, value)
    profile.acknowledge(11)  # the changelog acked ann-2
    journaled_write(journal, profile, b"ann", None)  # an erasure
    crash(journal, profile)

    assert roll_back(tmp_path / "journal", tabledir) == (2, 1)
    # Each key as it was before the epoch, and the offset from then: Faust
    # replays the changelog from offset 11 and lands on what Kafka has.
    assert reopen(profile) == {b"ann": b"ann-1", OFFSET_KEY: b"10"}


def test_a_successful_commit_drops_the_epochs_it_flushed(tabledir, tmp_path) -> None:
    fatigue = StandInTable(tabledir, "fatigue")
    journal = CrashJournal(tmp_path / "journal")
    journaled_write(journal, fatigue, b"cy", b"cy-1", changelog_offset=0)
    closed = journal.begin_epoch()  # a commit starts: later writes are a new epoch
    journaled_write(journal, fatigue, b"cy", b"cy-2")
    journal.drop_through(closed)  # the commit flushed everything before it
    crash(journal, fatigue)

    roll_back(tmp_path / "journal", tabledir)
    assert reopen(fatigue) == {b"cy": b"cy-1", OFFSET_KEY: b"0"}


def test_an_unacknowledged_partition_is_replayed_in_full(tabledir, tmp_path) -> None:
    consent = StandInTable(tabledir, "consent")
    journal = CrashJournal(tmp_path / "journal")
    journaled_write(journal, consent, b"di", b"revoked", changelog_offset=0)
    crash(journal, consent)

    roll_back(tmp_path / "journal", tabledir)
    assert reopen(consent) == {}  # no persisted offset: Faust reads the changelog from its start


def test_the_journal_wraps_commits_and_drops_only_after_success(tabledir, tmp_path) -> None:
    recency = StandInTable(tabledir, "recency")
    journal = CrashJournal(tmp_path / "journal")
    outcomes = iter((False, True))

    async def commit() -> bool:
        return next(outcomes)

    journaled_write(journal, recency, b"ed", b"ed-1")
    assert asyncio.run(journal.around_commit(commit)) is False
    journaled_write(journal, recency, b"ed", b"ed-2")  # first write of the new epoch
    crash(journal, recency)
    roll_back(tmp_path / "journal", tabledir)
    assert reopen(recency) == {}  # the failed commit dropped nothing: back to before ed-1

    recency = StandInTable(tabledir, "recency")
    journal = CrashJournal(tmp_path / "journal2")
    journaled_write(journal, recency, b"ed", b"ed-3")
    assert asyncio.run(journal.around_commit(commit)) is True
    crash(journal, recency)
    assert roll_back(tmp_path / "journal2", tabledir) == (0, 0)


@pytest.mark.parametrize(
    ("clean", "exactly_once", "journal", "outcome", "tables_kept"),
    [
        (True, False, True, "clean", True),
        (False, False, True, "rolled_back", True),
        (False, True, True, "discarded", False),
        (False, False, False, "discarded", False),  # no journal to trust
    ],
)
def test_recovery_at_start(
    tabledir, tmp_path, clean, exactly_once, journal, outcome, tables_kept
) -> None:
    table = StandInTable(tabledir, "profile")
    table.write(b"fy", b"fy-1", changelog_offset=4)
    table.db.close()
    journal_path = tmp_path / "journal"
    if journal:
        CrashJournal(journal_path).close()
    if clean:
        mark_clean_stop(tabledir)

    result = recover_local_tables(tabledir, journal_path, exactly_once=exactly_once)
    assert result == outcome
    assert table.path.is_dir() == tables_kept
    assert not (tabledir / CLEAN_STOP_MARKER).exists()
    assert not journal_path.exists()  # each run starts a fresh journal
