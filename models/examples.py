"""Training examples from an event log: the log replayed through the engine
to recover what it saw at each decision.

Not the what-if replay (nudge.replay, `nudge replay`), which asks what a
catalog or policy would decide; this one reproduces the decisions the log
holds, to learn from them.

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
with a logged action, or with a logged holdout suppression naming what would
have been sent (`would_be`), is decided again, at the logged decision time, by an
engine whose scorer lets the logged action win, whatever scorer made the
log; with the log's own exploration, whose draws are hashed from the event
id, so where the log explored (an action or a channel) the replay picks the
same pair. Every other event only updates state, through an engine
with an empty catalog: the processing clock of those events is not in the
log, and they sent nothing. A logged decision the replay cannot reproduce
(another catalog or policy) is counted and left out. An action that was held
for quiet hours (its `held_at`) is decided again then, when the scorer saw
it, and goes out at its due time, as the worker's timer releases it. One
withdrawn before it went out (the log's suppression with its decision id: a
cart bought before its reminder was due) is held again, so its reserved
contact counts meanwhile as it did, and withdrawn when due.

The holdout's would-be decisions come back as examples too (`ExampleSet.withheld`):
with the orders of every subject (`ExampleSet.orders`) they let models.uplift
compare what happened with a message and without one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from nudge.errors import UserError
from nudge.models.features import FeatureBuilder
from nudge.policy.config import Catalog, ContactPolicy
from nudge.policy.engine import Engine
from nudge.policy.holds import DueHolds
from nudge.policy.ids import withdrawn_action
from nudge.policy.processor import HOLDS_KIND, MERGE_KIND, Processor, Result
from nudge.policy.scoring import HeuristicScorer, ScoringRequest
from nudge.policy.state import TABLES, CustomerState, decode_state, encode_profile
from nudge.schemas.eventlog import LoggedEvent
from nudge.schemas.events import EVENT_TYPES_BY_TOPIC
from nudge.schemas.outputs import Action, Suppression

POSITIVE = ("clicked", "converted")
LOGGED_DECISIONS = ("actions", "suppressions")


class ExamplesError(UserError):
    """An event log that holds no examples (no actions, or unknown kinds in it)."""


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


class LoggedWouldBe(msgspec.Struct):
    action_id: str
    channel: str


class LoggedSuppression(msgspec.Struct):
    """A logged suppression: a holdout one with `would_be`, and one that
    withdrew a held action, are replayed."""

    decision_id: str
    trigger_event_id: str
    decided_at: datetime
    customer_id: str = ""
    experiment_arm: str | None = None
    would_be: LoggedWouldBe | None = None


class LoggedAction(msgspec.Struct):
    decision_id: str
    trigger_event_id: str
    action_id: str
    channel: str
    decided_at: datetime
    held_at: datetime | None = None  # decided then, held for quiet hours, sent at decided_at
    customer_id: str = ""
    experiment_arm: str | None = None


@dataclass(slots=True)
class Example:
    """One action that was sent: its features at decision time and its outcome."""

    decision_id: str
    at: float  # decision time
    features: list[float]
    heuristic: float  # the heuristic scorer's propensity, as a baseline
    label: bool = False
    subject: str = ""  # whose decision: their orders label the uplift examples
    ordered: bool = False  # an order within the label window (models.training.split)


@dataclass
class ExampleSet:
    """What a log teaches: its sent actions as examples, and what followed them."""

    examples: list[Example]
    responses: dict[str, float]  # decision id -> time of the first click or conversion
    states: list[CustomerState]  # every subject's state at the end of the log
    start: float
    end: float
    stats: dict[str, int] = field(default_factory=dict)
    withheld: list[Example] = field(default_factory=list)  # the holdout's would-be actions
    orders: dict[str, list[float]] = field(default_factory=dict)  # subject -> order times


class _LoggedChoiceScorer:
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


def build_examples(
    log: Iterable[LoggedEvent], catalog: Catalog, policy: ContactPolicy
) -> ExampleSet:
    """Run the log through the engine; one Example per logged action it reproduced."""
    records = list(log)
    logged: dict[str, LoggedAction] = {}
    would_be: dict[str, LoggedSuppression] = {}
    withdrawn: dict[str, tuple[str, LoggedSuppression]] = {}  # trigger -> (action, its end)
    for record in records:
        if record.kind not in LOGGED_DECISIONS and record.kind not in EVENT_TYPES_BY_TOPIC:
            raise ExamplesError(f"line {record.line}: unknown kind {record.kind!r}")
        try:
            if record.kind == "actions":
                action = msgspec.convert(record.event, LoggedAction)
                logged[action.trigger_event_id] = action
            elif record.kind == "suppressions":
                suppression = msgspec.convert(record.event, LoggedSuppression)
                if suppression.experiment_arm == "holdout" and suppression.would_be:
                    would_be[suppression.trigger_event_id] = suppression
                action_id = withdrawn_action(record.event)
                if action_id is not None:
                    withdrawn[suppression.trigger_event_id] = (action_id, suppression)
        except msgspec.ValidationError as exc:
            raise ExamplesError(
                f"line {record.line}: a decision in the log is not a decision record: {exc}"
            ) from None
    if not logged:
        raise ExamplesError("the log holds no actions to learn from")
    scorer = _LoggedChoiceScorer(FeatureBuilder(policy.quiet_hours))
    deciding = Processor(Engine(catalog, policy, scorer))
    # Built directly, since a catalog file must name at least one action.
    silent = Processor(Engine(Catalog(actions=[]), policy))
    tables: dict[str, dict[bytes, bytes]] = {table: {} for table in TABLES}
    due = DueHolds()

    def keep_arm(subject: str, arm: str | None) -> None:
        """Decide in the arm the log names. The engine fixes a person's arm at
        their first decision, and a visitor keeps theirs after logging in; the
        log does not hold every decision, so the replay follows the logged arm
        as it follows the logged action."""
        key = subject.encode()
        profile = decode_state({"profile": tables["profile"].get(key)}).profile
        if arm is not None and subject and profile.arm != arm:
            profile.arm = arm
            tables["profile"][key] = encode_profile(profile)

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
    withheld: list[Example] = []
    responses: dict[str, float] = {}
    orders: dict[str, list[float]] = {}
    stats = {
        "events": 0,
        "invalid": 0,
        "logged_actions": len(logged),
        "diverged": 0,
        "logged_would_be": len(would_be),
        "would_be_diverged": 0,
        "logged_withdrawn": len(withdrawn),
        "withdrawn_diverged": 0,
    }
    times: list[float] = []
    for record in records:
        if record.kind in LOGGED_DECISIONS:
            continue
        try:
            header = msgspec.convert(record.event, Header)
        except msgspec.ValidationError:
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
        if header.type == "purchase" and header.customer_id:
            orders.setdefault(header.customer_id, []).append(ts)
        withheld_by = would_be.get(header.event_id)
        if withheld_by is not None and header.event_id not in logged:
            keep_arm(withheld_by.customer_id, withheld_by.experiment_arm)
            example = _replay_would_be(deciding, scorer, run, record, header, withheld_by)
            if example is None:
                stats["would_be_diverged"] += 1
            else:
                withheld.append(example)
            continue
        ended = withdrawn.get(header.event_id)
        if ended is not None and header.event_id not in logged:
            # Held, then withdrawn before it went out (a cart bought first):
            # held again here, so its reservation shapes what follows as it
            # did; withdrawn when due. Never sent, so no example.
            action_id, suppression = ended
            keep_arm(suppression.customer_id, suppression.experiment_arm)
            scorer.expected, scorer.captured = action_id, {}
            result = run(deciding, record.kind, header.key, record.value, header.ts)
            held = result.outcome.held if result.outcome else None
            if not (isinstance(held, Action) and held.action_id == action_id):
                stats["withdrawn_diverged"] += 1
            continue
        expected = logged.get(header.event_id)
        if expected is None:
            result = run(silent, record.kind, header.key, record.value, header.ts)
            stats["invalid"] += result.invalid_reason is not None
            continue
        keep_arm(expected.customer_id, expected.experiment_arm)
        scorer.expected, scorer.captured = expected.action_id, {}
        decided = expected.held_at or expected.decided_at  # when the scorer was asked
        result = run(deciding, record.kind, header.key, record.value, decided)
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
                Example(
                    decision.decision_id,
                    expected.decided_at.timestamp(),
                    features,
                    guess,
                    subject=result.subject or "",
                )
            )
        else:
            stats["diverged"] += 1
    subjects = sorted(tables["profile"].keys() | tables["recency"].keys())
    states = [decode_state({table: tables[table].get(key) for table in TABLES}) for key in subjects]
    return ExampleSet(examples, responses, states, min(times), max(times), stats, withheld, orders)


def _replay_would_be(
    deciding: Processor,
    scorer: _LoggedChoiceScorer,
    run: Callable[[Processor, str, bytes | None, bytes, datetime], Result],
    record: LoggedEvent,
    header: Header,
    logged: LoggedSuppression,
) -> Example | None:
    """Decide a holdout trigger again at its logged time, letting the logged
    would-be action win: its features are what a message would have been
    scored on. None if the replay does not reach the same suppression."""
    assert logged.would_be is not None
    scorer.expected, scorer.captured = logged.would_be.action_id, {}
    result = run(deciding, record.kind, header.key, record.value, logged.decided_at)
    decision = result.outcome.decision if result.outcome else None
    if not (
        isinstance(decision, Suppression)
        and decision.decision_id == logged.decision_id
        and decision.would_be is not None
        and decision.would_be.action_id == logged.would_be.action_id
        and decision.would_be.channel == logged.would_be.channel
    ):
        return None
    features, guess = scorer.captured[logged.would_be.action_id]
    at = logged.decided_at.timestamp()
    return Example(logged.decision_id, at, features, guess, subject=result.subject or "")
