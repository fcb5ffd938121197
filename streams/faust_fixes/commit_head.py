"""A fix for faust-streaming 0.15.3 committing past a record it handed out
and never finished (faust-streaming#606).

Faust commits, per partition, the end of the first run of consecutive acked
offsets (Consumer._new_offset). Before it, its head check lets exactly one
unacked offset through: with committed offset C and acked C+1, C+2, ... it
commits past C. That is meant for an offset with no record (a transaction
marker, a compacted record), but it equally skips a record that was handed
out and dropped or is still being processed: a stream skips a record taken
while its flow control is suspended or from an older generation, and
expects to read it again after the seek that follows; the commit made
meanwhile loses it. test_rebalance lost a purchase that way.

The fix: the consumer notes the offsets it hands out (seek_race's getmany
calls `note`; a seek forgets them all, since everything is read again from
the committed offsets), and a commit never passes the committed offset while
the record there was handed out and is not acked. An offset that was never
handed out (a marker) still passes, as in Faust. A record dropped for a
re-read holds its partition's commits until the re-read processes it.

Upstream: faust-streaming#606 (open; https://github.com/faust-streaming/faust/issues/606),
fix proposed in #707. Entry: docs/reliability.md#commit_head.
"""

from __future__ import annotations

from faust.transport.consumer import Consumer
from faust.types import TP

#: The version whose consumer the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}

_new_offset = Consumer._new_offset


def note(consumer: Consumer, tp: TP, offset: int) -> None:
    """The consumer hands out the record at `offset` of `tp`."""
    handed = consumer.__dict__.setdefault("_nudge_handed", {})
    handed.setdefault(tp, set()).add(offset)


def forget(consumer: Consumer) -> None:
    """A seek: every partition is read again from its committed offset."""
    consumer.__dict__.pop("_nudge_handed", None)


def _new_offset_not_past_the_head(self: Consumer, tp: TP) -> int | None:
    """Faust's new offset, or None while the record at the head (the
    committed offset, or before any commit the first acked one) was handed
    out and is not acked yet."""
    handed = self.__dict__.get("_nudge_handed", {}).get(tp)
    acked = self._acked[tp]
    if handed and acked:
        done, committed = self._acked_index[tp], self._committed_offset.get(tp)
        pending = [
            offset
            for offset in handed
            if offset not in done and (committed is None or offset >= committed)
        ]
        head = min(acked) if committed is None else committed
        if pending and min(pending) <= head:
            return None
    offset = _new_offset(self, tp)
    if handed and offset is not None:
        handed.difference_update([o for o in handed if o < offset])
    return offset


def install() -> None:
    """Patch Faust's consumer class (once)."""
    Consumer._new_offset = _new_offset_not_past_the_head
