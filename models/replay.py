"""The event log, replayed through the engine to recover what it saw at
each decision.

The log (JSON Lines, time order) holds every input event as
`{"kind": <input topic kind>, "event": {...}}` and every action the engine
emitted as `{"kind": "actions", "event": {...}}`; feedback events name the
action's decision id.

The leakage rule: a decision's features are exactly what the engine saw when
it decided. So the log is replayed through the engine itself
(policy.processor.Processor on in-memory tables), and the features are taken
inside the scorer call, from the state the engine hands it at that moment.
Later events have not been replayed yet, so they cannot reach a feature; they
reach only the label (see models.training).

The replayed state holds exactly the contacts that really happened. A trigger
with a logged action is decided again, at the logged decision time, by an
engine whose scorer lets the logged action win (exploration off), whatever
scorer made the log. Every other event only updates state, through an engine
with an empty catalog: the processing clock of those events is not in the
log, and they sent nothing. A logged decision the replay cannot reproduce
(another catalog or policy) is counted and left out. An action that was held
for quiet hours (its `held_at`) is decided again then, when the scorer saw
it, and goes out at its due time, as the worker's timer releases it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from models.features import FeatureBuilder
from policy.config import Catalog, ContactPolicy, ExplorationPolicy
from policy.engine import Engine
from policy.holds import DueHolds
from policy.processor import HOLDS_KIND, MERGE_KIND, Processor, Result
from policy.scoring import HeuristicScorer, ScoringRequest
from policy.state import TABLES, CustomerState, decode_state
from schemas.events import EVENT_TYPES_BY_TOPIC
from schemas.outputs import Action

POSITIVE = ("clicked", "converted")


class LogError(ValueError):
    """An event log that cannot be replayed (unreadable, or no actions in it)."""


class LogRecord(msgspec.Struct):
    kind: str
    event: msgspec.Raw


class Header(msgspec.Struct):
    """The fields of an input event the replay itself needs."""

    ts: datetime
    event_id: str = ""
    type: str = ""
    customer_id: str | None = None
    anonymous_id: str | None = None
    decision_id: str | None = None

    @property
    def key(self) -> bytes:
        """The Kafka key the event would carry (see schemas.events)."""
        if self.type in ("identify", "alias"):
            return (self.anonymous_id or "").encode()
        return (self.customer_id or self.anonymous_id or "").encode()


class LoggedAction(msgspec.Struct):
    decision_id: str
    trigger_event_id: str
    action_id: str
    channel: str
    decided_at: datetime
    held_at: datetime | None = None  # decided then, held for quiet hours, sent at decided_at


@dataclass(slots=True)
class Example:
    """One action that was sent: its features at decision time and its outcome."""

    decision_id: str
    at: float  # decision time
    features: list[float]
    heuristic: float  # the heuristic scorer's propensity, as a baseline
    label: bool = False


@dataclass
class Replay:
    examples: list[Example]
    responses: dict[str, float]  # decision id -> time of the first click or conversion
    states: list[CustomerState]  # every subject's state at the end of the log
    start: float
    end: float
    stats: dict[str, int] = field(default_factory=dict)


class _ReplayScorer:
    """Captures each candidate's features as the engine asks for scores, and
    lets the logged action win so the replay does what really happened."""

    version = "replay"

    def __init__(self, features: FeatureBuilder) -> None:
        self.features = features
        self.heuristic = HeuristicScorer()
        self.expected = ""  # the logged action of the trigger being replayed
        self.captured: dict[str, tuple[list[float], float]] = {}

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]:
        guesses = self.heuristic.propensities(requests)
        for request, guess in zip(requests, guesses, strict=True):
            self.captured[request.action.id] = (self.features.row(request), guess)
        return [1.0 if r.action.id == self.expected else 0.0 for r in requests]


def read_log(path: Path) -> list[LogRecord]:
    decoder = msgspec.json.Decoder(LogRecord)
    records = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise LogError(f"{path}:{number}: {exc}") from None
            if record.kind != "actions" and record.kind not in EVENT_TYPES_BY_TOPIC:
                raise LogError(f"{path}:{number}: unknown kind {record.kind!r}")
            records.append(record)
    return records


def replay(records: list[LogRecord], catalog: Catalog, policy: ContactPolicy) -> Replay:
    """Run the log through the engine; one Example per logged action it reproduced."""
    header_decoder = msgspec.json.Decoder(Header)
    action_decoder = msgspec.json.Decoder(LoggedAction)
    logged: dict[str, LoggedAction] = {}
    for record in records:
        if record.kind == "actions":
            try:
                action = action_decoder.decode(record.event)
            except msgspec.DecodeError as exc:
                raise LogError(f"an action in the log is not an action record: {exc}") from None
            logged[action.trigger_event_id] = action
    if not logged:
        raise LogError("the log holds no actions to learn from")
    scorer = _ReplayScorer(FeatureBuilder(policy.quiet_hours))
    replay_policy = msgspec.structs.replace(policy, exploration=ExplorationPolicy(epsilon=0.0))
    deciding = Processor(Engine(catalog, replay_policy, scorer))
    # Built directly, since a catalog file must name at least one action.
    silent = Processor(Engine(Catalog(actions=[]), replay_policy))
    tables: dict[str, dict[bytes, bytes]] = {table: {} for table in TABLES}
    due = DueHolds()

    def load(subject: str) -> dict[str, bytes | None]:
        key = subject.encode()
        return {table: rows.get(key) for table, rows in tables.items()}

    def run(
        processor: Processor, kind: str, key: bytes | None, value: bytes, now: datetime
    ) -> Result:
        result = processor.process(kind, key, value, ("log", 0, 0), load, now)
        if result.subject is not None:
            subject = result.subject.encode()
            for table, data in result.writes.items():
                if data is None:
                    tables[table].pop(subject, None)
                else:
                    tables[table][subject] = data
            due.note(result.subject, result.next_due)
        for emit in result.emits:
            if emit.kind == MERGE_KIND:  # the worker feeds these back through a topic
                run(silent, MERGE_KIND, emit.key, emit.value, now)
        return result

    examples: list[Example] = []
    responses: dict[str, float] = {}
    stats = {"events": 0, "invalid": 0, "logged_actions": len(logged), "diverged": 0}
    times: list[float] = []
    for record in records:
        if record.kind == "actions":
            continue
        try:
            header = header_decoder.decode(record.event)
        except msgspec.DecodeError:
            stats["invalid"] += 1  # the worker would deadletter it: no state change
            continue
        ts = header.ts.timestamp()
        # Held actions go out when due, as the worker's timer releases them,
        # before anything later is applied (the silent engine, knowing no
        # action, would withdraw them).
        for subject, at in due.pop_due(ts):
            release = Processor.release_request(at)
            run(deciding, HOLDS_KIND, subject.encode(), release, datetime.fromtimestamp(at, UTC))
        times.append(ts)
        if header.type in POSITIVE and header.decision_id:
            responses[header.decision_id] = min(ts, responses.get(header.decision_id, math.inf))
        stats["events"] += 1
        expected = logged.get(header.event_id)
        if expected is None:
            result = run(silent, record.kind, header.key, bytes(record.event), header.ts)
            stats["invalid"] += result.invalid_reason is not None
            continue
        scorer.expected, scorer.captured = expected.action_id, {}
        decided = expected.held_at or expected.decided_at  # when the scorer was asked
        result = run(deciding, record.kind, header.key, bytes(record.event), decided)
        if result.duplicate:
            continue
        decision = (result.outcome.decision or result.outcome.held) if result.outcome else None
        if (
            isinstance(decision, Action)
            and decision.decision_id == expected.decision_id
            and decision.channel == expected.channel
        ):
            features, guess = scorer.captured[decision.action_id]
            examples.append(
                Example(decision.decision_id, expected.decided_at.timestamp(), features, guess)
            )
        else:
            stats["diverged"] += 1
    subjects = sorted(tables["profile"].keys() | tables["recency"].keys())
    states = [decode_state({table: tables[table].get(key) for table in TABLES}) for key in subjects]
    return Replay(examples, responses, states, min(times), max(times), stats)
