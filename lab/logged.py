"""Logged decisions for off-policy evaluation (lab/ope.py), from a policy at work.

`DecisionRecorder` stands where a worker stands: every input event goes to
the logging engine (policy.inmemory.InMemoryWorker, the worker's loop without
Kafka); a trigger goes first to the candidate engine, on the same state
bytes, whose writes are thrown away. So the candidate decides on the logged
state at decision time, and both engines' chances of every (action, channel)
pair come from Engine.choices, not from a model of them.

A decision is a trigger at which either engine had a marketing candidate; its
reward is 1 when a `converted` feedback (or, asked for, `clicked`) names the
logging decision's id.
Nothing sent (a suppression, or no candidate) has probability 1 (nudge never
explores into a suppression) and reward 0.

`from_log` replays an event log (as `nudge simulate` writes it) through a
recorder. The log does not say when the worker processed each event: a
trigger with a logged action is decided at the action's decision time
(`held_at` for a held one), any other event at its own time, and events
before the log's first decision (a simulated world's imported history) at
that decision's time, as a worker started then would. Every logged action the
replay does not reproduce (id, channel and selection probability) is counted:
a log made with another catalog, policy or model cannot be evaluated this way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from nudge.errors import UserError
from nudge.lab.ope import LoggedDecision, Pair
from nudge.policy.clock import HOUR
from nudge.policy.engine import Engine, Outcome
from nudge.policy.inmemory import InMemoryWorker, event_key
from nudge.policy.processor import Processor, Result
from nudge.schemas.eventlog import LoggedEvent
from nudge.schemas.events import EVENT_TYPES_BY_TOPIC
from nudge.schemas.outputs import Action

#: Decisions this close to the log's end are left out: their conversions may
#: not have come in yet.
SETTLE_HOURS = 24.0
#: Feedback that can serve as the reward.
REWARDS = ("converted", "clicked")


@dataclass(frozen=True, slots=True)
class _Seen:
    """A decision as it happened; its reward is known only later."""

    person: str
    decision_id: str | None  # of the logged action, None: nothing sent
    logged: Pair
    logging: dict[Pair, float]
    target: dict[Pair, float]
    at: float


@dataclass
class DecisionRecorder:
    """A logging engine at work, and the candidate's choices beside it."""

    logging: Engine
    target: Engine
    seen: list[_Seen] = field(default_factory=list)
    # feedback type (REWARDS) -> the decision ids it named
    responses: dict[str, set[str]] = field(default_factory=dict)
    # trigger event id -> (decision id, channel, selection probability)
    actions: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.worker = InMemoryWorker(self.logging)
        self._candidate = Processor(self.target)
        self._triggers = _trigger_types(self.logging) | _trigger_types(self.target)

    def process(self, kind: str, event: dict[str, Any], now: datetime) -> Result:
        """One input event through the logging engine, as InMemoryWorker.process."""
        if event.get("type") in REWARDS and event.get("decision_id"):
            self.responses.setdefault(event["type"], set()).add(str(event["decision_id"]))
        target: Outcome | None = None
        if event.get("type") in self._triggers:
            value = msgspec.json.encode(event)
            result = self._candidate.process(
                kind, event_key(event), value, ("candidate", 0, 0), self.worker.load, now
            )
            target = result.outcome
        result = self.worker.process(kind, event, now)
        if target is not None and result.outcome is not None and not result.duplicate:
            self._note(result, target, now)
        return result

    def decisions(
        self, until: float = float("inf"), reward: str = "converted"
    ) -> list[LoggedDecision]:
        """Every decision made by `until` (epoch seconds), with its reward:
        whether a `reward` feedback named it."""
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}")
        responded = self.responses.get(reward, set())
        return [
            LoggedDecision(
                person=s.person,
                logged=s.logged,
                logging=s.logging,
                target=s.target,
                reward=float(s.decision_id in responded),
            )
            for s in self.seen
            if s.at <= until
        ]

    def _note(self, result: Result, target: Outcome, now: datetime) -> None:
        outcome = result.outcome
        assert outcome is not None and result.subject is not None
        action = outcome.decision if isinstance(outcome.decision, Action) else outcome.held
        logged: Pair = None
        did = None
        if isinstance(action, Action):
            logged, did = _pair(action.action_id, action.channel), action.decision_id
            entry = (did, action.channel, action.selection_probability)
            self.actions[action.trigger_event_id] = entry
        if not (_marketing(outcome) or _marketing(target)):
            return
        seen = _Seen(
            result.subject, did, logged, _chances(outcome), _chances(target), now.timestamp()
        )
        self.seen.append(seen)


@dataclass
class Replayed:
    """An event log's decisions, and how faithfully the replay reproduced it."""

    decisions: list[LoggedDecision]
    logged_actions: int
    diverged: int  # logged actions the replay did not reproduce
    left_out: int  # decisions within SETTLE_HOURS of the log's end


def from_log(
    log: Iterable[LoggedEvent],
    logging: Engine,
    target: Engine,
    settle_hours: float = SETTLE_HOURS,
    reward: str = "converted",
) -> Replayed:
    """Replay an event log (input events and `actions`) through a recorder."""
    records = list(log)
    logged = {r.event["trigger_event_id"]: r.event for r in records if r.kind == "actions"}
    if not logged:
        raise UserError("the log holds no actions: nothing was decided to learn from")
    times = {tid: _decided(action) for tid, action in logged.items()}
    first = min(times.values())
    recorder = DecisionRecorder(logging, target)
    last = first
    for record in records:
        if record.kind not in EVENT_TYPES_BY_TOPIC:
            continue  # outputs: actions, suppressions
        event = record.event
        ts = _epoch(event.get("ts"), last)
        last = max(last, ts)
        at = times.get(event.get("event_id", ""), max(ts, first))
        recorder.process(record.kind, event, datetime.fromtimestamp(at, UTC))
    diverged = sum(
        recorder.actions.get(tid)
        != (a["decision_id"], a["channel"], round(a["selection_probability"], 6))
        for tid, a in logged.items()
    )
    until = last - settle_hours * HOUR
    decisions = recorder.decisions(until, reward)
    return Replayed(decisions, len(logged), diverged, len(recorder.seen) - len(decisions))


def _decided(action: dict[str, Any]) -> float:
    return _epoch(action.get("held_at") or action["decided_at"], 0.0)


def _epoch(text: Any, default: float) -> float:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return default  # the worker deadletters it; its time does not matter


def _pair(action_id: str, channel: str) -> str:
    return f"{action_id}@{channel}"


def _chances(outcome: Outcome) -> dict[Pair, float]:
    """Each pair's chance (Engine.choices); nothing eligible: nothing sent, surely."""
    if not outcome.choices:
        return {None: 1.0}
    return {_pair(c.candidate.action.id, c.channel): c.probability for c in outcome.choices}


def _marketing(outcome: Outcome) -> bool:
    return any(c.action.message_class == "marketing" for c in outcome.trace)


def _trigger_types(engine: Engine) -> set[str]:
    return {t.event for action in engine.catalog.actions for t in action.triggers}
