"""Local tables after a crash: trust only what reached Kafka.

A worker writes RocksDB before its changelog messages and outputs are
flushed, and Faust never rolls those writes back. After a kill -9 the local
tables may hold state the changelogs lack (with exactly_once: state from
transactions that were aborted), so the worker would skip redelivered events
as duplicates, or decide on state no other worker could rebuild. A worker
therefore marks a clean stop, and at start discards the tables of a run that
did not stop cleanly: Faust rebuilds them from the changelogs, exactly as a
worker taking over those partitions would (docs/reliability.md).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

CLEAN_STOP_MARKER = ".clean-stop"

log = logging.getLogger("nudge.worker")


def discard_after_unclean_stop(tabledir: Path) -> bool:
    """Delete the tables unless the last run stopped cleanly; True if deleted."""
    marker = tabledir / CLEAN_STOP_MARKER
    if marker.exists():
        marker.unlink()
        return False
    if not tabledir.is_dir() or not any(tabledir.iterdir()):
        return False
    log.warning("the last run did not stop cleanly: rebuilding the tables from the changelogs")
    shutil.rmtree(tabledir)
    return True


def mark_clean_stop(tabledir: Path) -> None:
    if tabledir.is_dir():
        (tabledir / CLEAN_STOP_MARKER).touch()
