"""Make an event Faust's current event outside Faust's stream iteration.

A table read or write goes to the partition of Faust's current event (its
store and its changelog partition). faust-streaming 0.15.3 sets it only while
its own stream iteration hands out an event, in a private context variable
(`faust.streams._current_event`). The agent decides a batch of events after
taking them from the stream (streams/ordering.py, streams/batch.py), so it
sets the variable itself before each event's table access.

Upstream: no issue (a missing API, not a defect). Entry:
docs/reliability.md#current_event.
"""

from __future__ import annotations

import weakref

import faust
from faust.streams import _current_event

#: The version whose stream iteration the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}


def make_current(event: faust.EventT) -> None:
    """Make `event` Faust's current event: its tables read from and write to
    the event's partition, as in Faust's own stream iteration."""
    _current_event.set(weakref.ref(event))
