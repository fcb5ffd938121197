"""Offline replay: what the worker would decide on an event log, without a broker.

Each event goes through `policy.processor.Processor`, exactly as the Faust
agent calls it, on tables holding the same bytes the worker's tables hold:
in memory, or in local RocksDB databases (rocksdict, no Faust) that survive
the run. Identity merges, which the worker routes through an internal topic,
are applied in-process right after their identify event. With the event clock
a replay decides as of each event's own time, which is what a worker with
NUDGE_CLOCK=event does: on the same events, in the same order per customer,
both make the same decisions. Whether an event time is plausible is judged
against the log's own clock (`Replay.clock_at`), not today's, so a log of any
age replays.

A replay keeps the worker's record of the actions it sent (streams/produced.py):
within one replay nothing is lost, so a repeated trigger issues nothing again.
A replay that continues from earlier state (--state rocksdb:DIR) starts with an
empty record, as a restarted worker does: a trigger repeated from before then
re-issues its action once, counted as re-issued, never as sent.

Held actions (quiet hours) are released as the worker's timer releases them:
when the clock passes their due time, before the next event is applied, and
at the end of the log whatever is due by its last event; what is due later
stays held (in the RocksDB state, for the next replay to release).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from nudge.errors import UserError
from nudge.policy.engine import Engine
from nudge.policy.erasure import MARKER_TABLE
from nudge.policy.holds import DueHolds
from nudge.policy.onsite import IMPRESSION_KIND
from nudge.policy.processor import FORWARD_KIND, HOLDS_KIND, MERGE_KIND, Processor, Result
from nudge.policy.state import TABLES, decode_state
from nudge.schemas.eventlog import EventLogError, LoggedEvent, Unreadable
from nudge.schemas.events import EVENT_TYPES_BY_TOPIC, UtcTime
from nudge.schemas.outputs import Action, Decision, Suppression
from nudge.streams.produced import ProducedActions

Clock = Literal["event", "recorded"]
#: Log kinds a replay feeds to the processor; anything else (e.g. the
#: `actions` lines `nudge simulate` writes) is output, counted and skipped.
REPLAYED_KINDS = (*EVENT_TYPES_BY_TOPIC, IMPRESSION_KIND)


class Tables(Protocol):
    """Where replayed state lives: the worker's four tables, bytes per subject."""

    def load(self, subject: str) -> dict[str, bytes | None]: ...

    def write(self, subject: str, writes: dict[str, bytes | None]) -> None: ...

    def held(self) -> Iterator[tuple[str, float]]:
        """(subject, next due time) of everyone with a held action."""
        ...

    def close(self) -> None: ...


class MemoryTables:
    """Tables in dicts: gone when the replay ends."""

    def __init__(self) -> None:
        self.data: dict[str, dict[bytes, bytes]] = {name: {} for name in (*TABLES, MARKER_TABLE)}

    def load(self, subject: str) -> dict[str, bytes | None]:
        key = subject.encode()
        return {name: table.get(key) for name, table in self.data.items()}

    def write(self, subject: str, writes: dict[str, bytes | None]) -> None:
        key = subject.encode()
        for name, value in writes.items():
            if value is None:
                self.data[name].pop(key, None)
            else:
                self.data[name][key] = value

    def held(self) -> Iterator[tuple[str, float]]:
        for key, value in self.data["holds"].items():
            yield from _next_due(key, value)

    def close(self) -> None:
        pass


class RocksTables:
    """One RocksDB per table under `directory` (rocksdict, raw bytes): the
    state stays for the next replay, which continues from it."""

    def __init__(self, directory: Path) -> None:
        from rocksdict import Options, Rdict

        directory.mkdir(parents=True, exist_ok=True)
        self.dbs = {
            name: Rdict(str(directory / name), Options(raw_mode=True))
            for name in (*TABLES, MARKER_TABLE)
        }

    def load(self, subject: str) -> dict[str, bytes | None]:
        key = subject.encode()
        return {name: db.get(key) for name, db in self.dbs.items()}

    def write(self, subject: str, writes: dict[str, bytes | None]) -> None:
        key = subject.encode()
        for name, value in writes.items():
            if value is None:
                del self.dbs[name][key]
            else:
                self.dbs[name][key] = value

    def held(self) -> Iterator[tuple[str, float]]:
        for key, value in self.dbs["holds"].items():
            yield from _next_due(key, value)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


def open_tables(spec: str) -> Tables:
    """`memory` or `rocksdb:DIR`."""
    if spec == "memory":
        return MemoryTables()
    if spec.startswith("rocksdb:") and len(spec) > len("rocksdb:"):
        return RocksTables(Path(spec.removeprefix("rocksdb:")))
    raise UserError(f"--state must be memory or rocksdb:DIR, not {spec!r}")


@dataclass
class Report:
    """What a replay decided, counted for people and for --json."""

    events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # log kind -> lines not replayed
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, channel)
    suppressions: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # once per reason a suppression names
    ruled_out: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, reason)
    deadletters: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0  # repeated events that issued nothing
    reissued: int = 0  # repeated triggers whose action was issued again (not sent anew)
    withheld: int = 0  # re-issues that consent no longer allowed: suppressions
    held: int = 0  # decisions that had to wait (counted when released or withdrawn)
    still_held: int = 0  # people with held actions not yet due at the end of the log
    dropped_erased: int = 0  # events stamped before their person's erasure: not applied

    def count(self, result: Result) -> None:
        outcome = result.outcome
        decision = outcome.decision if outcome is not None else None
        if result.invalid_reason is not None:
            self.deadletters[result.invalid_reason] += 1
        elif result.dropped == "erased":
            self.dropped_erased += 1
            return
        elif result.duplicate:
            if decision is None:
                self.duplicates += 1
            elif isinstance(decision, Action):
                self.reissued += 1
            else:
                self.withheld += 1
            return
        if outcome is not None:
            self.held += outcome.held is not None
            for released in outcome.released:
                self._decided(released)
        self._decided(decision)

    def _decided(self, decision: Decision | None) -> None:
        if isinstance(decision, Action):
            self.actions[decision.action_id, decision.channel] += 1
        elif isinstance(decision, Suppression):
            self.suppressions += 1
            self.reasons.update(decision.reasons)
            for verdict in decision.candidates:
                self.ruled_out.update((verdict.action_id, r) for r in verdict.reasons)

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "skipped": dict(self.skipped),
            "decisions": sum(self.actions.values()) + self.suppressions,
            "actions": [
                {"action_id": a, "channel": c, "count": n}
                for (a, c), n in self.actions.most_common()
            ],
            "suppressions": self.suppressions,
            "suppression_reasons": dict(self.reasons.most_common()),
            "ruled_out": [
                {"action_id": a, "reason": r, "count": n}
                for (a, r), n in self.ruled_out.most_common()
            ],
            "deadletters": dict(self.deadletters),
            "duplicates": self.duplicates,
            "reissued": self.reissued,
            "reissues_withheld": self.withheld,
            "held": self.held,
            "still_held": self.still_held,
            "dropped_erased": self.dropped_erased,
        }


class Replay:
    """Feeds log items through the processor; `run` yields every decision."""

    def __init__(self, engine: Engine, tables: Tables, clock: Clock = "event") -> None:
        self.tables = tables
        self.clock = clock
        self.on_event_time = Processor(engine, event_clock=True)
        self.on_recorded_time = Processor(engine)
        # With the event clock, `now` only judges whether an event time is
        # plausible, as the worker's wall clock does (clock_at).
        self.wall = datetime.now(UTC)
        self.newest: datetime | None = None  # the latest event time accepted so far
        self._recorded: datetime | None = None  # the latest recorded processing time
        self.report = Report()
        self.produced = ProducedActions()
        self.due = DueHolds()  # who has a held action due when (as the worker's timer)
        for subject, due in tables.held():  # held in a previous replay's state
            self.due.note(subject, due)
        self._offset = 0

    def run(self, items: Iterable[LoggedEvent | Unreadable]) -> Iterator[Decision]:
        """Raises EventLogError on a line that is not an event at all; events
        the contract rejects are dead-lettered and counted, as live."""
        for item in items:
            if isinstance(item, Unreadable):
                raise EventLogError(f"line {item.line}: {item.error}")
            if item.kind not in REPLAYED_KINDS:
                self.report.skipped[item.kind] += 1
                continue
            self.report.events += 1
            yield from self._feed(item)
        # The worker's timer would release what the clock has passed by now.
        last = self.newest if self.clock == "event" else self._recorded
        yield from self._release_until(last)
        self.report.still_held = len(self.due)

    def _feed(self, item: LoggedEvent) -> Iterator[Decision]:
        event = item.event
        if item.kind == IMPRESSION_KIND:
            key = str(event.get("customer_id", "")).encode()
        else:
            key = item.key
        ts = _event_time(event)
        if self.clock == "recorded" and item.at is not None:
            processor, now = self.on_recorded_time, item.at
            self._recorded = item.at
            yield from self._release_until(item.at)
        else:
            processor, now = self.on_event_time, self.clock_at(ts)
            yield from self._release_until(ts)
        result = self._apply(processor, item.kind, key, item.value, now)
        if result.invalid_reason is None and ts is not None:
            self.newest = ts if self.newest is None else max(self.newest, ts)
        for emit in result.emits:
            # The worker's own topics, in-process: a visitor's state or later
            # events moving to the customer, erasures of linked ids.
            if emit.kind in (MERGE_KIND, FORWARD_KIND, "privacy"):
                followed = self._apply(processor, emit.kind, emit.key, emit.value, now)
                if followed.outcome is not None and followed.outcome.decision is not None:
                    yield followed.outcome.decision
        if result.outcome is not None:
            yield from result.outcome.released
        decision = result.outcome.decision if result.outcome is not None else None
        if decision is not None:
            yield decision

    def _release_until(self, until: datetime | None) -> Iterator[Decision]:
        """Release every held action due by `until`, each as of its due time,
        as the worker's timer does once its clock passes it (streams/holds.py):
        before the next event of any customer, so the rules run again on
        the state they had then."""
        if until is None:
            return
        processor = self.on_recorded_time if self.clock == "recorded" else self.on_event_time
        for subject, due in self.due.pop_due(until.timestamp()):
            request = Processor.release_request(due)
            at = datetime.fromtimestamp(due, UTC)
            result = self._apply(processor, HOLDS_KIND, subject.encode(), request, at)
            if result.outcome is not None:
                yield from result.outcome.released

    def clock_at(self, ts: datetime | None) -> datetime:
        """The processing clock an event time is judged by (the codec rejects
        times more than five years before it or a day after it).

        A live worker's clock had reached at least the newest event time before
        this one, and this one's own; and a log is never replayed before it was
        written, so the clock never passes today's. Today's clock alone would
        reject every event of a log older than five years.
        """
        if ts is None:
            return self.wall  # no event time: the codec says what is wrong
        newest = ts if self.newest is None else max(self.newest, ts)
        return min(newest, self.wall)

    def _apply(
        self, processor: Processor, kind: str, key: bytes | None, value: bytes, now: datetime
    ) -> Result:
        self._offset += 1
        source = (kind, 0, self._offset)
        result = processor.process(
            kind, key, value, source, self.tables.load, now, produced=self.produced
        )
        for key, writes in result.other_writes.items():
            self.tables.write(key, writes)
        if result.subject is not None:
            self.tables.write(result.subject, result.writes)
            self.due.note(result.subject, result.next_due)
        self.produced.record(result.emits)
        self.report.count(result)
        return result


def _next_due(key: bytes, value: bytes) -> Iterator[tuple[str, float]]:
    pending = decode_state({"holds": value}).holds.pending
    if pending:
        yield key.decode(), pending[0].due


def _event_time(event: dict[str, Any]) -> datetime | None:
    """The event's `ts` as the codec reads it, None if it is not a time."""
    try:
        return msgspec.convert(event.get("ts"), UtcTime)
    except msgspec.ValidationError:
        return None
