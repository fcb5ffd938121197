"""Every reach into faust-streaming's and aiokafka's internals, behind one door.

nudge patches or reads private parts of Faust and aiokafka where they lose
records (the seek after recovery, the producer buffer's flush, exactly-once
transactions, a batch the client cannot decode) and where Faust has no
public API for what the worker needs (a hook around its commits, the current
event, its consumer's committed offsets, a table partition's RocksDB). Each
lives in one module here, which names the defect or the missing API, links
its entry in docs/reliability.md ("Faust workarounds"), and declares in
`TESTED` the versions it was checked against.

`install` is the only place the worker applies them. It refuses to start on
any version a fix was not checked against: a private name that moved or
changed its meaning in an upgrade fails the deploy, loudly, instead of
losing records later. tests/unit/streams/test_faust_fixes.py fails when the lock
files move past those versions, so an upgrade cannot skip the re-check.
"""

from __future__ import annotations

from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING
from weakref import WeakSet

import faust

from nudge.errors import UserError
from nudge.streams.faust_fixes import (
    commit_gate,
    commit_head,
    commit_hook,
    committed_offset,
    current_event,
    producer_buffer,
    rocksdb_store,
    seek_race,
    source_transaction,
    undecodable,
)

if TYPE_CHECKING:
    from nudge.streams.app import NudgeApp

#: Every fix; each has `TESTED`: {distribution: versions it was checked against}.
FIXES: tuple[ModuleType, ...] = (
    seek_race,
    commit_head,
    producer_buffer,
    undecodable,
    commit_gate,
    source_transaction,
    commit_hook,
    committed_offset,
    current_event,
    rocksdb_store,
)
#: Where each fix has its entry, under the heading of its module's name.
DOCS = "docs/reliability.md"

_installed: WeakSet[faust.App] = WeakSet()


class UntestedVersion(UserError):
    """A fix meets a Faust or aiokafka version it was not checked against: the
    operator installs the locked versions (`nudge worker` says so in one line)."""


def name(fix: ModuleType) -> str:
    """The fix's module name: its heading in the docs."""
    return fix.__name__.rpartition(".")[2]


def docs_link(fix: ModuleType) -> str:
    return f"{DOCS}#{name(fix)}"


def installed_version(distribution: str) -> str:
    """The installed version of a distribution (faust-streaming, aiokafka)."""
    return metadata.version(distribution)


def check_versions() -> None:
    """Raise UntestedVersion for the first fix whose packages are at a version
    it was not checked against."""
    for fix in FIXES:
        for distribution, tested in fix.TESTED.items():
            found = installed_version(distribution)
            if found not in tested:
                raise UntestedVersion(
                    f"streams/faust_fixes/{name(fix)}.py relies on {distribution} internals "
                    f"and was checked against {distribution} {', '.join(tested)}, but "
                    f"{found} is installed: install the locked requirements, or re-check "
                    f"the fix against {docs_link(fix)} and add {found} to its TESTED"
                )


def install(nudge: NudgeApp) -> None:
    """Check every fix's versions, then apply the fixes to this worker's app
    (once; those that patch a class, once per process)."""
    check_versions()
    if nudge.app in _installed:
        return
    seek_race.install()
    commit_head.install()
    producer_buffer.install(nudge.app.producer)
    undecodable.install(nudge)
    commit_gate.install(nudge)
    commit_hook.install(nudge)
    _installed.add(nudge.app)
