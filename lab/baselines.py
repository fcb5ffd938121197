"""Decision policies to compare, behind the one small protocol the simulator calls.

- `NudgePolicy`: the real engine, run exactly as the worker runs it
  (`policy.inmemory.InMemoryWorker`: the worker's loop without Kafka), with
  the heuristic scorer or any `policy.scoring.Scorer`.
- `BlastPolicy`: every triggered catalog action on every channel the person
  legally consented to; no caps, cooldowns, quiet hours, fatigue, targeting.
- `AutopilotPolicy`: a product-centric recommender: after any product view or
  purchase, the same category on the first consented channel; no fatigue or
  cooldown rules.
- `SilentPolicy`: no marketing at all, the control that shows what messages add.

Every policy sends the same order confirmations (transactional) as nudge, and
keeps the customer's state with the same engine, so consent (including
unsubscribes and complaints reported as feedback) is honoured the same way:
they differ only in which marketing messages they send.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import msgspec

from nudge.config import CATALOG as SHIPPED_CATALOG
from nudge.config import POLICY as SHIPPED_POLICY
from nudge.config import shipped
from nudge.policy import rules
from nudge.policy.clock import HOUR
from nudge.policy.config import (
    Caps,
    Catalog,
    CatalogAction,
    ContactPolicy,
    load_catalog,
    load_policy,
)
from nudge.policy.engine import Engine
from nudge.policy.experiments import load_experiments
from nudge.policy.ids import decision_id, withdrawn_action
from nudge.policy.inmemory import InMemoryWorker, event_key
from nudge.policy.processor import Result
from nudge.policy.scoring import Scorer
from nudge.schemas.codec import encode
from nudge.schemas.outputs import Action

CATALOG = shipped(SHIPPED_CATALOG)
POLICY = shipped(SHIPPED_POLICY)

ActionDict = dict[str, Any]


class DecisionPolicy(Protocol):
    """What the simulator needs from a policy: given one input event (as its
    JSON dict) at processing time `now`, the actions to deliver (as the
    `actions` topic carries them, decoded to dicts). A policy that holds
    actions also has `next_due()` and `release(now)` (`Releasing`), and the
    simulator releases them on time, as the worker's timer does."""

    name: str

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[ActionDict]: ...


class Releasing:
    """A policy whose worker holds actions: `release` publishes those due by
    `now` as of their due times, as the worker's timer (ticking every second)
    does, so a held action never waits for the next event to arrive."""

    worker: InMemoryWorker

    def next_due(self) -> float | None:
        """When the earliest held action is due (epoch seconds); None if none is."""
        return self.worker.due.next()

    def release(self, now: datetime) -> list[ActionDict]:
        """The held actions due by `now` that go out, and (`kind`
        "suppression", logged, never delivered) those withdrawn."""
        decisions = []
        for result in self.worker.release_due(now, as_of_due=True):
            decisions += self.delivered(emitted_actions(result)) + withdrawn_holds(result)
        return decisions

    def delivered(self, actions: list[ActionDict]) -> list[ActionDict]:
        """Which released actions this policy sends: all of them."""
        return actions


class NudgePolicy(Releasing):
    """nudge itself: the shipped catalog and contact policy, any scorer, and
    the experiments of an experiments file (policy/experiments.py), if given.

    With `log_would_be`, `decide` also returns the holdout's suppressions that
    name what would have been sent (`kind` "suppression"): the simulator logs
    them, undelivered, so an uplift model can learn from the holdout."""

    name = "nudge"

    def __init__(
        self,
        scorer: Scorer | None = None,
        catalog: Path | str = CATALOG,
        policy: Path | str = POLICY,
        *,
        log_would_be: bool = False,
        experiments: Path | str | None = None,
    ) -> None:
        shipped, contact = load_catalog(catalog), load_policy(policy)
        arms = load_experiments(experiments, shipped, contact)  # none without a file
        self.worker = InMemoryWorker(Engine(shipped, contact, scorer, arms))
        self.log_would_be = log_would_be

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[ActionDict]:
        result = self.worker.process(kind, event, now)
        decided = emitted_actions(result) + withdrawn_holds(result)
        return decided + holdout_would_be(result) if self.log_would_be else decided


class BlastPolicy:
    """Spray: every action whose trigger holds, on every channel with marketing
    consent (and contact details), at once. Legal, and nothing more."""

    name = "blast"

    def __init__(self, catalog: Path | str = CATALOG, policy: Path | str = POLICY) -> None:
        self.worker = InMemoryWorker(
            Engine(_unrestricted(load_catalog(catalog)), _unrestricted_policy(load_policy(policy)))
        )

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[ActionDict]:
        outcome = self.worker.process(kind, event, now).outcome
        if outcome is None:
            return []
        return [
            build_action(
                event,
                candidate.action,
                channel,
                candidate.category,
                now,
                model_version=self.name,
                propensity=candidate.propensity,
                reasons=["blast: every triggered action on every consented channel"],
            )
            for candidate in outcome.trace
            if not candidate.reasons  # only "expired" or "snooze" remain possible
            for channel in candidate.send_times
        ]


class AutopilotPolicy:
    """Product-centric: after a product view or a purchase, recommend the same
    category on the first channel with marketing consent. Acts only on fresh
    events (within the hour), like any live recommender."""

    name = "autopilot"
    fresh_seconds = HOUR

    def __init__(self, catalog: Path | str = CATALOG, policy: Path | str = POLICY) -> None:
        shipped = load_catalog(catalog)
        contact = load_policy(policy)
        self.worker = InMemoryWorker(Engine(shipped, contact))
        self.recommendation = _find(shipped, "category_inspiration")
        self.channels = list(contact.channel_order)
        self.policy = contact

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[ActionDict]:
        result = self.worker.process(kind, event, now)
        actions = transactional(emitted_actions(result))
        category = _category(event)
        customer = event.get("customer_id")
        if result.invalid_reason or result.duplicate or not category or not customer:
            return actions
        if (now - _time(event["ts"])).total_seconds() > self.fresh_seconds:
            return actions
        state = self.worker.state(customer)
        for channel in self.channels:
            if rules.reachable(channel, state, self.policy) and not rules.consent_reason(
                self.recommendation, channel, state
            ):
                reasons = [f"autopilot: more {category} after a {event['type']}"]
                actions.append(
                    build_action(
                        event,
                        self.recommendation,
                        channel,
                        category,
                        now,
                        model_version=self.name,
                        reasons=reasons,
                    )
                )
                break
        return actions


class SilentPolicy(Releasing):
    """No marketing: only the order confirmations every policy sends."""

    name = "silent"

    def __init__(self, catalog: Path | str = CATALOG, policy: Path | str = POLICY) -> None:
        self.worker = InMemoryWorker(Engine(load_catalog(catalog), load_policy(policy)))

    def decide(self, kind: str, event: dict[str, Any], now: datetime) -> list[ActionDict]:
        return transactional(emitted_actions(self.worker.process(kind, event, now)))

    def delivered(self, actions: list[ActionDict]) -> list[ActionDict]:
        return transactional(actions)


# -- helpers ----------------------------------------------------------------------------

_action_dict = msgspec.json.Decoder(dict[str, Any])


def emitted_actions(result: Result) -> list[ActionDict]:
    """The actions a processed message publishes, as the `actions` topic has them."""
    return [_action_dict.decode(emit.value) for emit in result.emits if emit.kind == "actions"]


def withdrawn_holds(result: Result) -> list[ActionDict]:
    """The suppressions a processed message publishes for held actions it
    withdrew (a cart bought before its reminder was due): the worker publishes
    them, and a replay of the log needs them to hold what the worker held."""
    decisions = [
        _action_dict.decode(emit.value) for emit in result.emits if emit.kind == "suppressions"
    ]
    return [d for d in decisions if withdrawn_action(d) is not None]


def holdout_would_be(result: Result) -> list[ActionDict]:
    """The holdout suppressions a processed message publishes that say what
    would have been sent."""
    decisions = [
        _action_dict.decode(emit.value) for emit in result.emits if emit.kind == "suppressions"
    ]
    return [d for d in decisions if d["experiment_arm"] == "holdout" and d.get("would_be")]


def transactional(actions: list[ActionDict]) -> list[ActionDict]:
    return [a for a in actions if a["message_class"] == "transactional"]


def build_action(
    event: dict[str, Any],
    action: CatalogAction,
    channel: str,
    category: str | None,
    now: datetime,
    *,
    model_version: str,
    reasons: list[str],
    propensity: float = 0.0,
) -> ActionDict:
    """An action record for a baseline, in the same shape nudge publishes. One
    decision id per (trigger, action, channel): a baseline may send several."""
    trigger_ts = _time(event["ts"])
    record = Action(
        decision_id=decision_id(event["event_id"], f"{action.id}.{channel}"),
        customer_id=event_key(event).decode(),
        trigger_event_id=event["event_id"],
        trigger_type=event["type"],
        trigger_ts=trigger_ts,
        decided_at=now,
        model_version=model_version,
        experiment_arm="treatment",
        action_id=action.id,
        channel=channel,  # type: ignore[arg-type]
        message_class=action.message_class,
        category=category,
        score=round(propensity * action.value * action.lever, 6),
        propensity=round(propensity, 6),
        selection_probability=1.0,
        explored=False,
        reasons=reasons,
        send_after=None,
        expires_at=trigger_ts + timedelta(hours=action.expiry_hours),
    )
    return _action_dict.decode(encode(record))


def _unrestricted(catalog: Catalog) -> Catalog:
    """The catalog without targeting, cooldowns or per-action caps."""
    actions = [
        msgspec.structs.replace(
            action, cooldown_hours=0.0, max_per_week=None, min_level="unknown", interests=[]
        )
        for action in catalog.actions
    ]
    return Catalog(actions=actions)


def _unrestricted_policy(policy: ContactPolicy) -> ContactPolicy:
    """A contact policy that only keeps consent: no caps, no quiet hours, no
    fatigue or purchase cooldown, no holdout, no exploration."""
    return msgspec.structs.replace(
        policy,
        channel_caps={},
        global_caps=Caps(),
        quiet_hours=msgspec.structs.replace(
            policy.quiet_hours, silent_channels=["email", "sms", "push", "web"]
        ),
        fatigue=msgspec.structs.replace(
            policy.fatigue, ignored_threshold=1_000_000, complaint_backoff_hours=0.0
        ),
        purchase_cooldown=msgspec.structs.replace(
            policy.purchase_cooldown, default_days=0.0, categories={}, floor_days=0.0
        ),
        holdout=msgspec.structs.replace(policy.holdout, share=0.0),
        exploration=msgspec.structs.replace(policy.exploration, epsilon=0.0),
    )


def _find(catalog: Catalog, action_id: str) -> CatalogAction:
    for action in catalog.actions:
        if action.id == action_id:
            return action
    raise ValueError(f"the catalog has no action {action_id!r}")


def _category(event: dict[str, Any]) -> str | None:
    if event.get("type") == "product_view":
        return event.get("category")
    if event.get("type") == "purchase" and event.get("items"):
        return event["items"][0].get("category")
    return None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
