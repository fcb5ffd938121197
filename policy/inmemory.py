"""The worker's per-message loop without Kafka: one in-memory runner.

The Faust agent reads a message, calls `Processor.process` on the customer's
state, writes the state and publishes the emits; some emits go to the worker's
own topics and come back as input (an anonymous visitor's state or later
events moving to the customer, erasures of linked ids), and a timer releases
held actions when they are due. `InMemoryWorker` does all of that in-process,
on tables holding the same bytes the worker's tables hold, so the simulator,
the evaluation and `nudge.testing.Driver` decide exactly as a worker does.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec

from nudge.policy.engine import Engine
from nudge.policy.erasure import MARKER_TABLE
from nudge.policy.holds import DueHolds
from nudge.policy.processor import FORWARD_KIND, HOLDS_KIND, MERGE_KIND, Processor, Result
from nudge.policy.state import TABLES, CustomerState, decode_state
from nudge.schemas.outputs import Action

#: Emits the worker sends to its own topics, to be processed again as input.
LOOPBACK_KINDS = (MERGE_KIND, FORWARD_KIND, "privacy")

_json = msgspec.json.Encoder()


class InMemoryWorker:
    """Tables as dicts (table -> key -> bytes, erasure markers included), the
    worker's record of the actions it sent (a repeated trigger issues nothing
    again, as streams/produced.py decides), and an index of held actions'
    due times (policy/holds.py), which `release_due` releases as the worker's
    timer does."""

    def __init__(
        self, engine: Engine, *, event_clock: bool = False, erasure_key: bytes | None = None
    ) -> None:
        """`event_clock`, `erasure_key`: as the worker's (Processor)."""
        self.processor = Processor(engine, event_clock=event_clock, erasure_key=erasure_key)
        self.tables: dict[str, dict[bytes, bytes]] = {n: {} for n in (*TABLES, MARKER_TABLE)}
        self.deadletters: Counter[str] = Counter()
        self.due = DueHolds()
        self.sent: set[str] = set()  # decision ids of the actions published
        self._offset = 0

    def process(self, kind: str, event: dict[str, Any], now: datetime) -> Result:
        """One event at processing time `now`. The result's emits are all it
        led to: first those of the held actions (anyone's) due by `now`,
        released as of `now`, then its own, then those of what it sent to the
        worker's own topics."""
        released = [emit for r in self.release_due(now, as_of_due=False) for emit in r.emits]
        results = self.feed(kind, event_key(event), _json.encode(event), now)
        result = results[0]
        result.emits[:0] = released
        result.emits += [emit for looped in results[1:] for emit in looped.emits]
        return result

    def feed(self, kind: str, key: bytes | None, value: bytes, now: datetime) -> list[Result]:
        """One raw message as the agent gets it, then every message it sends
        to the worker's own topics, in order: their results, its own first."""
        queue = [(kind, key, value)]
        results = []
        while queue:
            kind, key, value = queue.pop(0)
            result = self._apply(kind, key, value, now)
            results.append(result)
            queue += [(e.kind, e.key, e.value) for e in result.emits if e.kind in LOOPBACK_KINDS]
        return results

    def release_due(self, until: datetime, *, as_of_due: bool) -> list[Result]:
        """Release every held action due by `until`, earliest first: each as of
        its own due time (`as_of_due`, what a timer ticking every second does),
        or all as of `until`."""
        results = []
        for subject, due in self.due.pop_due(until.timestamp()):
            at = datetime.fromtimestamp(due, UTC) if as_of_due else until
            request = Processor.release_request(due)
            results.append(self._apply(HOLDS_KIND, subject.encode(), request, at))
        return results

    def state(self, subject: str) -> CustomerState:
        """The subject's state as the tables hold it."""
        return decode_state(self.load(subject))

    def load(self, subject: str) -> dict[str, bytes | None]:
        """The subject's table values (Processor's StateLoader)."""
        key = subject.encode()
        return {name: table.get(key) for name, table in self.tables.items()}

    def _apply(self, kind: str, key: bytes | None, value: bytes, now: datetime) -> Result:
        self._offset += 1
        source = (kind, 0, self._offset)
        result = self.processor.process(
            kind, key, value, source, self.load, now, produced=self.sent.__contains__
        )
        if result.invalid_reason is not None:
            self.deadletters[result.invalid_reason] += 1
        groups = dict(result.other_writes)
        if result.subject is not None:
            groups[result.subject] = result.writes
            self.due.note(result.subject, result.next_due)
        for subject, writes in groups.items():
            for name, data in writes.items():
                if data is None:
                    self.tables[name].pop(subject.encode(), None)
                else:
                    self.tables[name][subject.encode()] = data
        if result.outcome is not None:
            for decision in (*result.outcome.released, result.outcome.decision):
                if isinstance(decision, Action):
                    self.sent.add(decision.decision_id)
        return result


def event_key(event: dict[str, Any]) -> bytes:
    """The partitioning key an upstream producer must use for this event: the
    anonymous id for identity events, else the customer id, else the
    anonymous id."""
    if event.get("type") in ("identify", "alias"):
        return str(event.get("anonymous_id", "")).encode()
    return str(event.get("customer_id") or event.get("anonymous_id") or "").encode()
