"""Builders shared by the policy tests: configs, events and a customer harness.

Events are built as JSON dicts and decoded through `schemas.codec`, exactly as
the worker sees them, so a test cannot pass on a record the contract rejects.
`driver` and `feed` run them through nudge.testing.Driver (the worker in
memory); `Person` drives the engine alone, for tests of what happens inside it.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from nudge.policy.config import Catalog, ContactPolicy, load_catalog, load_policy
from nudge.policy.engine import Engine, Outcome
from nudge.policy.processor import Result
from nudge.policy.state import CustomerState
from nudge.schemas.codec import decode_event
from nudge.schemas.events import Event
from nudge.schemas.outputs import Action, Suppression
from nudge.testing import Driver, Outputs

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CATALOG = ROOT / "config" / "catalog.toml"
SHIPPED_POLICY = ROOT / "config" / "policy.toml"

# A Monday at noon in Berlin (UTC+1): outside the default quiet hours.
T0 = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CHANNELS = ("email", "sms", "push", "web")

TOPIC_OF = {
    "purchase": "purchases",
    "consent": "consent",
    "preferences": "preferences",
    "identify": "identity",
    "alias": "identity",
    "erasure": "privacy",
    "delivered": "feedback",
    "opened": "feedback",
    "clicked": "feedback",
    "converted": "feedback",
    "ignored": "feedback",
    "dismissed": "feedback",
    "bounced": "feedback",
    "unsubscribed": "feedback",
    "complained": "feedback",
}


def topic_of(event: dict[str, Any]) -> str:
    return TOPIC_OF.get(event["type"], "clickstream")


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def key_of(event: dict[str, Any]) -> bytes:
    if event["type"] in ("identify", "alias"):
        return event["anonymous_id"].encode()
    return (event.get("customer_id") or event["anonymous_id"]).encode()


def decode(event: dict[str, Any], now: datetime) -> Event:
    """The event as the worker would see it (validated by the codec)."""
    raw = json.dumps(event).encode()
    return decode_event(topic_of(event), raw, key_of(event), now)


# -- configuration -------------------------------------------------------------


def catalog(*actions: dict[str, Any]) -> Catalog:
    return msgspec.convert({"actions": list(actions)}, Catalog)


def policy(**fields: Any) -> ContactPolicy:
    """A policy with no default quiet hours, holdout or exploration unless asked."""
    base: dict[str, Any] = {
        "quiet_hours": {"start": "00:00", "end": "00:00", "tz": "UTC"},
        "holdout": {"share": 0.0},
        "exploration": {"epsilon": 0.0},
    }
    base.update(fields)
    return msgspec.convert(base, ContactPolicy)


def marketing(id: str = "promo", **fields: Any) -> dict[str, Any]:
    """A marketing action triggered by a product view, easy to reach."""
    action: dict[str, Any] = {
        "id": id,
        "message_class": "marketing",
        "channels": ["email"],
        "triggers": [{"event": "product_view"}],
        "value": 10.0,
        "cooldown_hours": 0,
    }
    action.update(fields)
    return action


def transactional(id: str = "receipt", **fields: Any) -> dict[str, Any]:
    action: dict[str, Any] = {
        "id": id,
        "message_class": "transactional",
        "channels": ["email"],
        "triggers": [{"event": "purchase"}],
        "value": 1.0,
        "cooldown_hours": 0,
    }
    action.update(fields)
    return action


def shipped_engine() -> Engine:
    return Engine(load_catalog(SHIPPED_CATALOG), load_policy(SHIPPED_POLICY))


# -- events --------------------------------------------------------------------

_ids = itertools.count(1)


def _base(kind: str, customer: str, at: datetime, event_id: str | None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"e-{next(_ids)}",
        "type": kind,
        "customer_id": customer,
        "ts": iso(at),
    }


def click(
    customer: str, at: datetime, kind: str = "product_view", *, event_id: str | None = None, **kw
) -> dict[str, Any]:
    event = _base(kind, customer, at, event_id)
    event.setdefault("category", "lighting")
    event.update(kw)
    return {k: v for k, v in event.items() if v is not None}


def purchase(
    customer: str, at: datetime, *categories: str, event_id: str | None = None, price: float = 30.0
) -> dict[str, Any]:
    event = _base("purchase", customer, at, event_id)
    event["order_id"] = f"o-{event['event_id']}"
    event["items"] = [
        {"product_id": f"p-{category}", "category": category, "price": price}
        for category in categories or ("lighting",)
    ]
    return event


def consent(
    customer: str,
    at: datetime,
    channel: str = "email",
    status: str = "granted",
    purpose: str = "marketing",
    *,
    source: str = "preference_centre",
    event_id: str | None = None,
) -> dict[str, Any]:
    event = _base("consent", customer, at, event_id)
    event.update(channel=channel, purpose=purpose, status=status, source=source)
    return event


def preferences(
    customer: str, at: datetime, *, event_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    event = _base("preferences", customer, at, event_id)
    event.update(fields)
    return event


def feedback(
    customer: str,
    at: datetime,
    kind: str,
    channel: str = "email",
    *,
    decision_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    event = _base(kind, customer, at, event_id)
    event["channel"] = channel
    if decision_id is not None:
        event["decision_id"] = decision_id
    return event


def erasure(customer: str, at: datetime, *, event_id: str | None = None) -> dict[str, Any]:
    return _base("erasure", customer, at, event_id)


# -- the worker in memory --------------------------------------------------------


def driver(*actions: dict[str, Any], start: datetime = T0, **policy_fields: Any) -> Driver:
    """A Driver on a catalog of `actions` (one `marketing()` if none) and
    `policy(**policy_fields)`, its clock at `start`."""
    return Driver(catalog(*(actions or (marketing(),))), policy(**policy_fields), start=start)


def feed(driver: Driver, event: dict[str, Any], now: datetime | None = None) -> Outputs:
    """Publish `event` on its topic when the clock reaches `now`: by default
    its own time, or the driver's clock if that is later (a late arrival)."""
    driver.advance_to(max(driver.now, now or datetime.fromisoformat(event["ts"])))
    return driver.send(topic_of(event), event)


def acted(outputs: Outputs) -> Action:
    """The one action published."""
    (action,) = outputs.actions
    return action


def suppressed(outputs: Outputs) -> Suppression:
    """The one suppression published."""
    (suppression,) = outputs.suppressions
    return suppression


def held(outputs: Outputs) -> Action:
    """The action decided but held (nothing published): its `send_after` says until when."""
    assert outputs == [], f"expected a hold, got {outputs!r}"
    action = outputs.results[0].outcome.held
    assert isinstance(action, Action), "expected a held action"
    return action


def opt_in(driver: Driver, customer: str, at: datetime, *channels: str) -> None:
    for channel in channels or CHANNELS:
        feed(driver, consent(customer, at, channel))


# -- a customer, step by step --------------------------------------------------


class Person:
    """One customer's state driven through an engine, event by event."""

    def __init__(self, engine: Engine, customer: str = "c-1") -> None:
        self.engine = engine
        self.id = customer
        self.state = CustomerState()
        self.outcomes: list[Outcome] = []

    def send(self, event: dict[str, Any], now: datetime | None = None) -> Outcome:
        """Process `event`; `now` defaults to one second after its event time."""
        if now is None:
            now = datetime.fromisoformat(event["ts"]) + timedelta(seconds=1)
        outcome = self.engine.process(self.state, decode(event, now), now, self.id)
        self.outcomes.append(outcome)
        return outcome

    def act(self, event: dict[str, Any], now: datetime | None = None) -> Action:
        """Process `event` and insist that it produced an action."""
        decision = self.send(event, now).decision
        assert isinstance(decision, Action), f"expected an action, got {decision!r}"
        return decision

    def hold(self, event: dict[str, Any], now: datetime | None = None) -> Action:
        """Process `event` and insist that it decided an action that must wait:
        held in state (its `send_after` says until when), nothing published."""
        outcome = self.send(event, now)
        assert outcome.decision is None, f"expected a hold, got {outcome.decision!r}"
        assert isinstance(outcome.held, Action), "expected a held action"
        return outcome.held

    def release(self, now: datetime) -> list[Action | Suppression]:
        """Release the held actions due by `now` (Engine.release_due)."""
        return self.engine.release_due(self.state, now, self.id)

    def suppress(self, event: dict[str, Any], now: datetime | None = None) -> Suppression:
        """Process `event` and insist that it produced a suppression."""
        decision = self.send(event, now).decision
        assert isinstance(decision, Suppression), f"expected a suppression, got {decision!r}"
        return decision

    def opt_in(self, at: datetime, *channels: str) -> None:
        for channel in channels or CHANNELS:
            self.send(consent(self.id, at, channel))


def reasons_of(suppression: Suppression, action_id: str) -> list[str]:
    """The reason codes one candidate was ruled out by."""
    for verdict in suppression.candidates:
        if verdict.action_id == action_id:
            return list(verdict.reasons)
    raise AssertionError(f"{action_id} was not a candidate: {suppression.candidates}")


def store(tables: dict[str, dict[str, bytes]], result: Result) -> None:
    """Apply a Processor result's writes to tables kept as key -> table -> bytes,
    as the worker's tables would: the subject's and other keys' (markers)."""
    groups = dict(result.other_writes)
    if result.subject is not None:
        groups[result.subject] = result.writes
    for key, writes in groups.items():
        stored = tables.setdefault(key, {})
        for table, value in writes.items():
            if value is None:
                stored.pop(table, None)
            else:
                stored[table] = value
