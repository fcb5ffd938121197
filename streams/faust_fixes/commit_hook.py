"""The crash journal's epochs follow the consumer's commits (faust-streaming 0.15.3).

The crash journal (streams/crash_journal.py) must open an epoch when a
commit starts and drop the epochs before it once the commit succeeded (Faust
flushes the producer before an at-least-once commit, so every write before it
is then on its changelog). Faust has no hook around a commit: it commits
from a timer, on a rebalance and at a stop, all through `Consumer.commit`.

The fix: `install` wraps `Consumer.commit`; for an app whose NudgeApp has a
journal, each commit runs inside `CrashJournal.around_commit`. Other apps
commit as before. The journal is looked up at each commit, so a worker may
set it after installing.

Upstream: no issue (a missing API, not a defect). Entry:
docs/reliability.md#commit_hook.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from faust.transport.consumer import Consumer
from faust.types import AppT

if TYPE_CHECKING:
    from nudge.streams.app import NudgeApp

#: The version whose consumer commits the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}

_commit = Consumer.commit
#: The NudgeApp of each app (weakly: it refers to the app itself).
_nudges: WeakKeyDictionary[AppT, weakref.ref[NudgeApp]] = WeakKeyDictionary()


async def _journaled_commit(self: Consumer, *args: Any, **kwargs: Any) -> bool:
    """Faust's commit, inside the app's crash journal epochs if it has a journal."""
    ref = _nudges.get(self.app)
    nudge = ref() if ref is not None else None
    journal = nudge.journal if nudge is not None else None
    if journal is None:
        return await _commit(self, *args, **kwargs)
    return await journal.around_commit(lambda: _commit(self, *args, **kwargs))


def install(nudge: NudgeApp) -> None:
    """Run the app's consumer commits inside its crash journal's epochs."""
    _nudges[nudge.app] = weakref.ref(nudge)
    Consumer.commit = _journaled_commit  # type: ignore[method-assign]
