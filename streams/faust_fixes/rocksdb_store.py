"""Faust's RocksDB table store, from outside Faust.

faust-streaming 0.15.3 keeps each table partition in its own RocksDB
(rocksdict) database and has no public API for what the worker needs of
them: where a partition's database lives (`Store.partition_path`) and the
key its persisted changelog offset is stored under (`Store.offset_key`),
which the crash journal rewrites after a crash (streams/crash_journal.py);
one partition's open database, whose hold index the hold timer reads
(streams/holds.py); the active partitions' databases, whose key estimates
/metrics reports (streams/metrics.py).

Upstream: no issue (a missing API, not a defect). Entry:
docs/reliability.md#rocksdb_store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faust
from faust.stores.rocksdb import Store
from rocksdict import Rdict

#: The version whose RocksDB store the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}

#: The key of the changelog offset a table partition's database holds (in ASCII).
OFFSET_KEY: bytes = Store.offset_key


def table_path(tabledir: Path, table: str, partition: int) -> Path:
    """Where Faust keeps one table partition (Store.partition_path)."""
    return tabledir / f"{table}-{partition}.db"


def partition_db(table: faust.Table, partition: int) -> Rdict:
    """The open database of one of the table's partitions on this worker."""
    return table.data._db_for_partition(partition)


def active_dbs(table: faust.Table) -> Iterator[Rdict]:
    """The databases of the table's active (not standby) partitions here."""
    return table.data._dbs_for_actives()
