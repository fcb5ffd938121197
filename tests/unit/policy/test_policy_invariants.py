"""The design's invariants, proved over random event sequences and clocks.

Hypothesis generates realistic days in the life of a few customers: browsing,
carts, orders, consent changes (per channel and `all`, pending double opt-in,
late arrivals), preferences (quiet hours in several zones, snooze, weekly
limits), every kind of channel feedback, erasure and redelivered duplicates.
A small independent model in this file follows what the person asked for;
every decision the engine makes is checked against it. Each invariant runs
against a policy built here (tight caps, exploration on) and the shipped one.
"""

from __future__ import annotations

import json
import math
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nudge.policy import erasure, locality
from nudge.policy.clock import DAY, WEEK
from nudge.policy.config import ContactPolicy
from nudge.policy.engine import Engine, Outcome
from nudge.policy.ids import decision_id, in_holdout
from nudge.policy.processor import Processor
from nudge.policy.state import (
    MAX_CATEGORIES,
    MAX_CONTACTS,
    MAX_ORDER_IDS,
    MAX_PROCESSED_IDS,
    RECENT_VIEWS,
    TABLES,
    CustomerState,
    Profile,
    decode_state,
    encode_state,
)
from nudge.schemas.codec import encode
from nudge.schemas.events import ClickType
from nudge.schemas.outputs import Action, Decision, Suppression
from tests.unit.policy_kit import CHANNELS, catalog, decode, key_of, shipped_engine, store, topic_of

# -- the two configurations under test -----------------------------------------

TEST_CATALOG = catalog(
    {
        "id": "browse_promo",
        "message_class": "marketing",
        "channels": ["email", "push", "web", "sms"],
        "category": "$event",
        "value": 5.0,
        "cooldown_hours": 0,
        "expiry_hours": 12,
        "triggers": [{"event": "product_view"}, {"event": "page_view"}, {"event": "add_to_cart"}],
    },
    {
        "id": "garden_tip",
        "message_class": "marketing",
        "channels": ["email", "web"],
        "category": "garden",
        "value": 8.0,
        "cooldown_hours": 1,
        "max_per_week": 3,
        "expiry_hours": 6,
        "triggers": [{"event": "session_start"}, {"event": "search"}],
    },
    {
        "id": "flash_sale",
        "message_class": "marketing",
        "channels": ["sms", "push"],
        "category": "$event",
        "value": 12.0,
        "cooldown_hours": 2,
        "expiry_hours": 2,
        "triggers": [{"event": "add_to_cart"}, {"event": "checkout_started"}],
    },
    {
        "id": "night_owl",
        "message_class": "marketing",
        "channels": ["push", "email"],
        "value": 3.0,
        "cooldown_hours": 0,
        "expiry_hours": 0.5,
        "triggers": [{"event": "page_view"}, {"event": "session_start"}],
    },
    {
        "id": "more_of_the_same",
        "message_class": "marketing",
        "channels": ["email", "push", "web"],
        "category": "$event",
        "value": 4.0,
        "cooldown_hours": 0,
        "triggers": [{"event": "purchase"}],
    },
    {
        "id": "thanks_for_reading",
        "message_class": "marketing",
        "channels": ["email", "web"],
        "value": 2.0,
        "cooldown_hours": 0,
        "triggers": [{"event": "opened"}, {"event": "clicked"}],
    },
    {
        "id": "receipt",
        "message_class": "transactional",
        "channels": ["email", "sms"],
        "value": 1.0,
        "cooldown_hours": 0,
        "expiry_hours": 2,
        "triggers": [{"event": "purchase"}],
    },
)
TEST_POLICY = msgspec.convert(
    {
        "channel_caps": {
            "email": {"hour": 1, "day": 2, "week": 4},
            "sms": {"day": 1, "week": 2},
            "push": {"hour": 2, "day": 3, "week": 8},
            "web": {"hour": 3, "day": 8, "week": 20},
        },
        "global_caps": {"hour": 3, "day": 6, "week": 14},
        "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"},
        "fatigue": {
            "ignored_threshold": 2,
            "backoff_hours": 6,
            "max_backoff_hours": 48,
            "complaint_backoff_hours": 72,
        },
        "purchase_cooldown": {
            "default_days": 3,
            "categories": {"garden": 1, "appliances": 10, "air_filters": 5},
        },
        "holdout": {"share": 0.0},
        "exploration": {"epsilon": 0.2},
    },
    ContactPolicy,
)
ENGINES = {"built": Engine(TEST_CATALOG, TEST_POLICY), "shipped": shipped_engine()}
SHIPPED_HOLDOUT = ENGINES["shipped"].policy.holdout


def _customers() -> tuple[str, ...]:
    """Two people in the treatment arm of the shipped policy and one in its
    holdout, so both arms are exercised."""
    names = [f"cust-{i}" for i in range(200)]
    treated = [n for n in names if not in_holdout(n, SHIPPED_HOLDOUT.share, SHIPPED_HOLDOUT.salt)]
    held = [n for n in names if in_holdout(n, SHIPPED_HOLDOUT.share, SHIPPED_HOLDOUT.salt)]
    return (treated[0], treated[1], held[0])


CUSTOMERS = _customers()
CATEGORIES = ("lighting", "garden", "air_filters", "appliances", "kitchen", "air_purifiers")
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Pacific/Chatham",
    "UTC",
)
CLOCK_TIMES = ("00:00", "02:30", "06:30", "07:00", "08:00", "12:00", "21:00", "22:30", "23:59")
# Starts just before the EU and US daylight-saving changes, and in a plain week.
STARTS = (
    datetime(2026, 3, 6, 18, 0, tzinfo=UTC),
    datetime(2026, 3, 27, 19, 30, tzinfo=UTC),
    datetime(2026, 6, 15, 9, 0, tzinfo=UTC),
    datetime(2026, 10, 23, 20, 0, tzinfo=UTC),
)

# -- the strategy ------------------------------------------------------------------
#
# Hypothesis draws the start, the opening consents, a length and a seed; the
# steps are grown from the seed (see Scenario). Drawing each step from
# Hypothesis made it reuse a few favourite steps hundreds of times; a seeded
# stream is diverse and fast, and still shrinks: a shorter length replays a
# prefix of the same life. The distributions below are the realistic part.

CLICK_TYPES = get_args(ClickType)  # every click the contract knows
FEEDBACK_TYPES = (
    *("delivered", "opened", "clicked", "converted", "ignored", "dismissed") * 2,
    *("bounced", "unsubscribed", "complained"),
)
KINDS = ("click",) * 6 + ("consent",) * 3 + ("feedback",) * 2 + (
    "purchase", "preferences", "repeat", "erasure",
)  # fmt: skip
# Consent churn: opt-ins and opt-outs out of order, redelivered, unsubscribes.
CONSENT_CHURN = ("click",) * 3 + ("consent",) * 4 + ("feedback",) * 2 + ("repeat", "erasure")


def _gap(rng: Random) -> int:
    """Seconds the world clock advances: seconds, minutes, hours or days."""
    scale = rng.choice((90, 90, 3600, 3600, 86400, 3 * 86400))
    return rng.randint(0, scale)


def _quiet_hours(rng: Random) -> dict[str, str] | None:
    """A window in some zone, or null (clearing it). It may cross midnight,
    be empty (start = end), or end in a daylight-saving gap."""
    if rng.random() < 0.25:
        return None
    return {
        "start": rng.choice(CLOCK_TIMES),
        "end": rng.choice(CLOCK_TIMES),
        "tz": rng.choice(ZONES),
    }


def _payload(rng: Random, kinds: tuple[str, ...]) -> dict[str, Any]:
    """One event's fields (without id, customer and time) of a random kind."""
    kind = rng.choice(kinds)
    if kind == "click":
        return {
            "type": rng.choice(CLICK_TYPES),
            "category": rng.choice(CATEGORIES),
            "product_id": rng.choice(("p-1", "p-2", "p-3", "p-4")),
            "price": rng.choice((4.5, 25.0, 60.0)),
            "quantity": rng.randint(1, 3),
        }
    if kind == "purchase":
        items = [
            {
                "product_id": rng.choice(("p-1", "p-2", "p-3")),
                "category": rng.choice(CATEGORIES),
                "price": rng.choice((9.0, 30.0, 120.0)),
            }
            for _ in range(rng.randint(1, 3))
        ]
        return {"type": "purchase", "items": items}
    if kind == "consent":
        return {
            "type": "consent",
            "channel": rng.choice((*CHANNELS, "all", "all")),
            "purpose": rng.choice(("marketing", "marketing", "transactional", "profiling")),
            "status": rng.choice(("granted", "granted", "granted", "revoked", "pending")),
            "source": rng.choice(("signup", "preference_centre")),
        }
    if kind == "preferences":
        optional: dict[str, Any] = {
            "preferred_channel": rng.choice((None, *CHANNELS)),
            "quiet_hours": _quiet_hours(rng),
            "max_contacts_per_week": rng.choice((None, 0, 1, 2, 3, 5, 8, 12)),
            "interests": rng.sample(("garden", "outdoor", "lighting"), rng.randint(0, 2)),
            "snooze_hours": rng.choice((None, rng.randint(1, 96))),  # -> snooze_until
        }
        chosen = rng.sample(sorted(optional), rng.randint(1, 3))
        return {"type": "preferences", **{name: optional[name] for name in chosen}}
    if kind == "feedback":
        return {
            "type": rng.choice(FEEDBACK_TYPES),
            "channel": rng.choice(CHANNELS),
            "refers": rng.random() < 0.7,  # to the customer's last action, resolved when run
        }
    if kind == "repeat":
        return {"type": "repeat", "back": rng.randint(1, 60)}
    return {"type": "erasure"}


@dataclass(frozen=True)
class Step:
    """One event in a plan, relative to the clock of the previous one."""

    customer: int
    gap: int  # seconds the world clock advances
    lag: int  # how late the event arrives (event time = clock - lag)
    delay_ms: int  # processing delay after the clock
    payload: dict[str, Any]

    @classmethod
    def grow(cls, gene: int, kinds: tuple[str, ...] = KINDS) -> Step:
        rng = Random(gene)
        # One busy customer, so long histories build up; the others interleave.
        customer = rng.choices(range(len(CUSTOMERS)), weights=(6, 3, 1))[0]
        gap, payload = _gap(rng), _payload(rng, kinds)
        # Consent often comes from batch systems: half of it arrives late.
        late = rng.random() < (0.5 if payload["type"] == "consent" else 0.2)
        return cls(
            customer=customer,
            gap=gap,
            lag=rng.randint(0, 2 * 86400) if late else 0,
            delay_ms=rng.randint(0, 5000),
            payload=payload,
        )


MIXES = {"everyday": KINDS, "consent churn": CONSENT_CHURN}


@dataclass(frozen=True)
class Scenario:
    """A few people's lives from `start`: opt-ins first (without consent
    nothing could be sent and there would be little to prove), then `size`
    steps grown from `seed`. Small to print; `plan()` gives the steps."""

    start: datetime
    opt_ins: tuple[tuple[int, str], ...]  # (customer, channel) marketing grants
    size: int
    seed: int
    mix: str = "everyday"

    def plan(self) -> list[Step]:
        grants = [
            Step(customer, 1, 0, 0, {"type": "consent", "channel": channel,
                                     "purpose": "marketing", "status": "granted",
                                     "source": "signup"})
            for customer, channel in self.opt_ins
        ]  # fmt: skip
        rng = Random(self.seed)
        kinds = MIXES[self.mix]
        return grants + [Step.grow(rng.getrandbits(64), kinds) for _ in range(self.size)]


@st.composite
def scenarios(
    draw: st.DrawFn, min_size: int = 20, max_size: int = 100, mix: str = "everyday"
) -> Scenario:
    start = draw(st.sampled_from(STARTS)) + timedelta(seconds=draw(st.integers(0, 86400)))
    opt_ins = tuple(
        (customer, channel)
        for customer in range(len(CUSTOMERS))
        for channel in sorted(draw(st.sets(st.sampled_from([*CHANNELS, "all"]), max_size=3)))
    )
    size = draw(st.integers(min_size, max_size))
    return Scenario(start, opt_ins, size, draw(st.integers(0, 2**64 - 1)), mix)


# -- driving the engine ----------------------------------------------------------


@dataclass
class Processed:
    """One input and what the system made of it."""

    event: dict[str, Any]
    now: datetime
    outcome: Outcome


Handler = Callable[[dict[str, Any], datetime], Outcome]


def drive(scenario: Scenario, handle: Handler) -> list[Processed]:
    """Turn the plan into events on a clock and feed them to `handle`.
    Processing time never goes backwards; event time may (late arrivals)."""
    clock = now = scenario.start
    sent: list[dict[str, Any]] = []
    last_action: dict[str, str] = {}
    log: list[Processed] = []
    for index, step in enumerate(scenario.plan()):
        clock += timedelta(seconds=step.gap)
        now = max(now, clock + timedelta(milliseconds=step.delay_ms))
        customer = CUSTOMERS[step.customer]
        payload = dict(step.payload)
        if payload["type"] == "repeat":
            if not sent:
                continue
            event = sent[max(0, len(sent) - payload["back"])]  # redelivered as it was
        else:
            event = _materialize(payload, customer, index, clock - timedelta(seconds=step.lag))
            if event.pop("refers", False) and customer in last_action:
                event["decision_id"] = last_action[customer]
            sent.append(event)
        outcome = handle(event, now)
        for decision in (*outcome.released, outcome.decision):
            if isinstance(decision, Action):
                last_action[decision.customer_id] = decision.decision_id
        log.append(Processed(event, now, outcome))
    return log


def _materialize(payload: dict[str, Any], customer: str, index: int, ts: datetime) -> dict:
    event = {"event_id": f"{customer}-{index}", "customer_id": customer, "ts": _iso(ts)}
    event.update(payload)
    if event["type"] == "purchase":
        event["order_id"] = f"o-{index}"
    if "snooze_hours" in event:
        hours = event.pop("snooze_hours")
        event["snooze_until"] = None if hours is None else _iso(ts + timedelta(hours=hours))
    return event


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


class InMemory:
    """The engine on long-lived state objects (what a single process would do)."""

    def __init__(self, engine: Engine, round_trip: bool = False) -> None:
        self.engine = engine
        self.round_trip = round_trip
        self.states: dict[str, CustomerState] = {}

    def __call__(self, event: dict[str, Any], now: datetime) -> Outcome:
        decoded = decode(event, now)
        subject = decoded.subject_id or ""
        state = self.states.setdefault(subject, CustomerState())
        outcome = self.engine.process(state, decoded, now, subject)
        if self.round_trip:  # through bytes, as the worker's tables do
            self.states[subject] = decode_state(encode_state(state, set(TABLES)))
        return outcome


class ThroughProcessor:
    """Bytes in, bytes out, the tables as subject -> table -> bytes: the
    worker without Kafka."""

    def __init__(self, engine: Engine) -> None:
        self.processor = Processor(engine)
        self.tables: dict[str, dict[str, bytes]] = {}
        self.emitted: list[list[tuple[str, bytes | None, bytes]]] = []
        self.writes: list[dict[str, bytes | None]] = []
        self.offset = 0

    def load(self, subject: str) -> dict[str, bytes | None]:
        return dict(self.tables.get(subject, {}))

    def __call__(self, event: dict[str, Any], now: datetime) -> Outcome:
        topic, raw = topic_of(event), json.dumps(event).encode()
        self.offset += 1
        result = self.processor.process(
            topic, key_of(event), raw, (topic, 0, self.offset), self.load, now
        )
        assert result.invalid_reason is None, result.emits
        assert result.outcome is not None and result.subject is not None
        store(self.tables, result)
        self.emitted.append([(e.kind, e.key, e.value) for e in result.emits])
        self.writes.append(result.writes)
        return result.outcome


# -- the independent model of what the person asked for -----------------------------


@dataclass
class Person:
    """What the person allowed and asked, from the events alone. Deliberately
    simpler than the engine: it only says what must NOT happen."""

    marketing_ok: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(CHANNELS, False))
    revoked_at: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CHANNELS, -math.inf))
    transactional_revoked: dict[str, float | None] = field(
        default_factory=lambda: dict.fromkeys(CHANNELS)
    )
    blocked: dict[str, float] = field(default_factory=dict)  # channel -> since
    purchases: list[tuple[str, float]] = field(default_factory=list)
    sent: list[tuple[float, str]] = field(default_factory=list)  # marketing (at, channel)
    max_per_week: int | None = None
    quiet: tuple[int, int, str] | None = None
    snooze_until: float = 0.0
    # The person's clock: stated and device zones, and browsing hours while
    # profiling (`all` and `web`, each as (status, at)) allows them to be counted.
    clock: Profile = field(default_factory=Profile)
    profiling: dict[str, tuple[str, float]] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        kind, ts = event["type"], datetime.fromisoformat(event["ts"]).timestamp()
        if topic_of(event) == "clickstream":
            if all(status != "revoked" for status, _ in self.profiling.values()):
                locality.observe_activity(self.clock, ts, event.get("time_zone"))
            elif event.get("time_zone"):
                self.clock.device_zone = event["time_zone"]
        if kind == "consent":
            if event["purpose"] == "profiling" and event["channel"] in ("all", "web"):
                # An `all` change speaks for each channel too (set_consent).
                for scope in {"all", "web"} if event["channel"] == "all" else {"web"}:
                    if _overrides(self.profiling.get(scope), event["status"], ts):
                        self.profiling[scope] = (event["status"], ts)
            targets = CHANNELS if event["channel"] == "all" else (event["channel"],)
            if event["purpose"] == "marketing":
                if event["status"] == "revoked":
                    self.revoke(targets, ts)
                elif event["status"] == "granted":
                    for channel in targets:
                        # A grant never beats a revocation at the same time or later.
                        if ts > self.revoked_at[channel]:
                            self.marketing_ok[channel] = True
                        if ts > self.blocked.get(channel, math.inf):
                            del self.blocked[channel]  # a fresh opt-in lifts a block
            elif event["purpose"] == "transactional":
                for channel in targets:
                    revoked = self.transactional_revoked[channel]
                    if event["status"] == "revoked":
                        self.transactional_revoked[channel] = max(ts, revoked or ts)
                    elif event["status"] == "granted" and revoked is not None and ts > revoked:
                        self.transactional_revoked[channel] = None
        elif kind in ("unsubscribed", "complained"):
            self.revoke((event["channel"],), ts)
            if kind == "complained":
                self.block(event["channel"], ts)
        elif kind == "bounced":
            self.block(event["channel"], ts)
        elif kind == "purchase":
            self.purchases.extend((item["category"], ts) for item in event["items"])
        elif kind == "preferences":
            if "max_contacts_per_week" in event:
                self.max_per_week = event["max_contacts_per_week"]
            if "quiet_hours" in event:
                q = event["quiet_hours"]
                self.quiet = (
                    None if q is None else (_minute(q["start"]), _minute(q["end"]), q["tz"])
                )
                if q is not None and "time_zone" not in event:
                    self.clock.time_zone = q["tz"]
            if "time_zone" in event:
                self.clock.time_zone = event["time_zone"]
            if "snooze_until" in event:
                until = event["snooze_until"]
                self.snooze_until = datetime.fromisoformat(until).timestamp() if until else 0.0

    def block(self, channel: str, ts: float) -> None:
        self.blocked[channel] = max(ts, self.blocked.get(channel, ts))

    def revoke(self, channels: tuple[str, ...], ts: float) -> None:
        for channel in channels:
            self.marketing_ok[channel] = False
            self.revoked_at[channel] = max(self.revoked_at[channel], ts)


def _overrides(current: tuple[str, float] | None, status: str, ts: float) -> bool:
    """A revocation always applies; a grant only over an older entry and
    never over a revocation at the same moment; pending never lifts one."""
    if status == "revoked" or current is None:
        return True
    if current[0] == "revoked":
        return status == "granted" and ts > current[1]
    return ts >= current[1]


def _minute(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


Check = Callable[[Person, Processed, Decision], None]


def follow(log: list[Processed], check: Check) -> int:
    """Replay the log through the model; call `check` for every decision, with
    the model as it stood once the triggering event was applied, and for every
    held action released (or withdrawn) before the event, with the model as it
    stood before it. A failure shows the customer's history. Returns the
    number of actions seen."""
    people: dict[str, Person] = {}
    history: dict[str, list[str]] = {}
    issued: dict[str, Action] = {}
    actions = 0

    def judge(person: Person, item: Processed, decision: Decision) -> None:
        nonlocal actions
        try:
            check(person, item, decision)
        except AssertionError as exc:
            lines = "\n  ".join(history[item.event["customer_id"]])
            raise AssertionError(f"{exc}\nhistory:\n  {lines}") from None
        if isinstance(decision, Action):
            actions += 1
            issued[decision.decision_id] = decision
            if decision.message_class == "marketing":
                person.sent.append((_delivery(decision), decision.channel))

    erased_at: dict[str, float] = {}  # the model never forgets an erasure
    for item in log:
        customer = item.event["customer_id"]
        history.setdefault(customer, []).append(_line(item))
        stamped = datetime.fromisoformat(item.event["ts"]).timestamp()
        if stamped <= erased_at.get(customer, -math.inf):
            # From before the erasure, whatever the redelivery: never applied.
            outcome = item.outcome
            assert outcome.dropped == "erased", history[customer]
            assert outcome.decision is None and not outcome.records and not outcome.released
            continue
        if item.outcome.duplicate:
            assert not item.outcome.records and not item.outcome.released
            if item.outcome.decision is not None:
                _check_reissue(people.get(customer, Person()), issued, item.outcome.decision)
            continue
        if item.event["type"] == "erasure":
            # Held actions are withdrawn, never sent, when the person is forgotten.
            assert all(isinstance(d, Suppression) for d in item.outcome.released)
            assert all(d.reasons == ["erased"] for d in item.outcome.released)
            people[customer] = Person()  # forgotten: back to "no consent"
            erased_at[customer] = max(stamped, erased_at.get(customer, -math.inf))
            continue
        person = people.setdefault(customer, Person())
        for released in item.outcome.released:  # due before this event
            judge(person, item, released)
        person.apply(item.event)
        if item.outcome.decision is not None:
            judge(person, item, item.outcome.decision)
    return actions


#: What consent_reason (policy/rules.py) can answer.
CONSENT_REASONS = {"consent", "channel_blocked"}


def _check_reissue(person: Person, issued: dict[str, Action], again: Decision) -> None:
    """A redelivered trigger may only issue again the very action it led to
    (Engine._reissue), and only while its channel may still be used; once it
    may not, the copy is withheld, with the consent reason, as a suppression
    of the same trigger and action."""
    if isinstance(again, Suppression):
        [candidate] = again.candidates
        assert decision_id(again.trigger_event_id, candidate.action_id) in issued, again
        assert again.reasons == candidate.reasons, again
        assert set(again.reasons) <= CONSENT_REASONS, again
        return
    assert isinstance(again, Action), again
    first = issued[again.decision_id]
    same = ("action_id", "channel", "trigger_event_id", "send_after", "expires_at")
    assert all(getattr(again, f) == getattr(first, f) for f in same), (first, again)
    assert abs((again.decided_at - first.decided_at).total_seconds()) <= 1, (first, again)
    assert again.channel not in person.blocked, again
    if again.message_class == "marketing":
        assert person.marketing_ok[again.channel], f"re-issued without consent: {again}"
    else:
        assert person.transactional_revoked[again.channel] is None, again


def _line(item: Processed) -> str:
    """One event and its decision, for failure messages."""
    fields = {k: v for k, v in item.event.items() if k not in ("customer_id", "event_id", "ts")}
    decision = item.outcome.decision
    released = [
        f"{d.action_id} on {d.channel}" if isinstance(d, Action) else f"withdrawn {d.reasons}"
        for d in item.outcome.released
    ]
    if item.outcome.held is not None:
        decision = item.outcome.held
    if item.outcome.duplicate:
        verdict = "duplicate"
    elif isinstance(decision, Action):
        when = f"HELD until {decision.send_after.isoformat()}" if decision.send_after else "now"
        verdict = f"ACTION {decision.action_id} on {decision.channel} {when}"
    elif isinstance(decision, Suppression):
        verdict = f"suppressed {decision.reasons}"
    else:
        verdict = "-"
    before = f"released {released}, then " if released else ""
    return f"{item.event['ts']} (now {item.now.isoformat()}) {before}{fields} -> {verdict}"


def _delivery(action: Action) -> float:
    return (action.send_after or action.decided_at).timestamp()


def _worst_window(times: list[float], at: float, length: float) -> int:
    """Brute force: most messages in any window [s, s + length) containing `at`
    (the maximum over such windows is reached with s at a message time)."""
    starts = [t for t in times if at - length < t <= at]
    return max(sum(1 for u in times if s <= u < s + length) for s in starts)


PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
configs = pytest.mark.parametrize("config", list(ENGINES))


# -- the invariants ------------------------------------------------------------------


@configs
@settings(PROPERTY, max_examples=250)
@given(scenario=scenarios() | scenarios(mix="consent churn"))
def test_no_marketing_after_revocation_opt_out_or_erasure(config: str, scenario: Scenario) -> None:
    """Consent is authoritative: a revoked channel (or `all`), an unsubscribe or
    complaint, or an erasure stops marketing until a later grant; bounces and
    complaints block even transactional messages; a revoked transactional
    consent stops transactional messages."""
    log = drive(scenario, InMemory(ENGINES[config]))

    def check(person: Person, item: Processed, decision: Decision) -> None:
        if not isinstance(decision, Action):
            return
        channel = decision.channel
        assert channel not in person.blocked, f"message on blocked {channel}: {decision}"
        if decision.message_class == "marketing":
            assert person.marketing_ok[channel], f"marketing without consent: {decision}"
        else:
            assert person.transactional_revoked[channel] is None, decision

    follow(log, check)


@configs
@PROPERTY
@given(scenario=scenarios() | scenarios(mix="consent churn"))
def test_a_held_action_goes_out_once_and_never_after_a_revocation(
    config: str, scenario: Scenario
) -> None:
    """An action that must wait is held, not published; it ends once, when
    due, with the decision id it was held under: released, or withdrawn with
    a reason. Never released after a revocation, an opt-out, a block or an
    erasure processed before it was due (an erasure withdraws it at once)."""
    log = drive(scenario, InMemory(ENGINES[config]))
    held: dict[str, float] = {}  # decision id -> due
    ended: set[str] = set()
    for item in log:
        for end in item.outcome.released:
            assert end.decision_id in held and end.decision_id not in ended, end
            if end.reasons != ["erased"]:
                assert end.decided_at.timestamp() >= held[end.decision_id], end
            ended.add(end.decision_id)
        hold = item.outcome.held
        if hold is not None:
            assert hold.send_after is not None and hold.send_after > item.now
            held[hold.decision_id] = hold.send_after.timestamp()
            ended.discard(hold.decision_id)  # decided again after an erasure

    def check(person: Person, item: Processed, decision: Decision) -> None:
        if not isinstance(decision, Action) or decision.decision_id not in held:
            return
        assert decision.send_after is None, decision  # deliverable on receipt
        assert decision.channel not in person.blocked, f"released on a blocked channel: {decision}"
        if decision.message_class == "marketing":
            assert person.marketing_ok[decision.channel], f"released after a revocation: {decision}"
        else:
            assert person.transactional_revoked[decision.channel] is None, decision

    follow(log, check)


@configs
@PROPERTY
@given(scenario=scenarios())
def test_no_frequency_cap_is_ever_exceeded(config: str, scenario: Scenario) -> None:
    """Every per-channel cap, every global cap and the person's own weekly
    limit hold in every rolling window, counting deferred deliveries where
    they will land. (An erasure forgets past contacts, as it must.)"""
    engine = ENGINES[config]
    policy = engine.policy
    log = drive(scenario, InMemory(engine))

    def check(person: Person, item: Processed, decision: Decision) -> None:
        if not isinstance(decision, Action) or decision.message_class != "marketing":
            return
        at = _delivery(decision)
        everything = [t for t, _ in person.sent] + [at]
        same_channel = [t for t, ch in person.sent if ch == decision.channel] + [at]
        caps = policy.channel_caps.get(decision.channel)  # type: ignore[call-overload]
        for length, cap in caps.windows() if caps else []:
            assert _worst_window(same_channel, at, length) <= cap, (decision.channel, length)
        for length, cap in policy.global_caps.windows():
            assert _worst_window(everything, at, length) <= cap, ("global", length)
        if person.max_per_week is not None:
            assert _worst_window(everything, at, WEEK) <= person.max_per_week, "personal"

    follow(log, check)


@configs
@PROPERTY
@given(scenario=scenarios())
def test_no_promotion_inside_a_purchase_cooldown(config: str, scenario: Scenario) -> None:
    engine = ENGINES[config]
    cooldown = engine.policy.purchase_cooldown
    log = drive(scenario, InMemory(engine))

    def check(person: Person, item: Processed, decision: Decision) -> None:
        if not isinstance(decision, Action) or decision.message_class != "marketing":
            return
        decided = decision.decided_at.timestamp()
        for category, bought in person.purchases:
            if category == decision.category:
                assert decided >= bought + cooldown.seconds_for(category), (
                    f"{category} promoted {(decided - bought) / DAY:.2f} days after purchase"
                )

    follow(log, check)


@configs
@PROPERTY
@given(scenario=scenarios())
def test_quiet_hours_snooze_and_holdout_are_honoured(config: str, scenario: Scenario) -> None:
    """No interrupting channel lands inside the person's quiet hours (their
    own or the policy's), and `quiet_hours` is only blamed inside them (at
    the decision, or when a trigger that waits would send); no marketing
    while snoozed, none in the holdout."""
    engine = ENGINES[config]
    policy = engine.policy
    log = drive(scenario, InMemory(engine))
    actions = {action.id: action for action in engine.catalog.actions}

    def check(person: Person, item: Processed, decision: Decision) -> None:
        if isinstance(decision, Suppression):
            now = item.now.timestamp()
            for verdict in decision.candidates:
                waits = {
                    (t.send_after_minutes or 0) * 60
                    for t in actions[verdict.action_id].triggers
                    if t.event == item.event["type"]
                }
                for channel, reasons in verdict.channel_reasons.items():
                    if "quiet_hours" in reasons:
                        assert any(
                            _in_quiet_hours(person, policy, channel, now + wait) for wait in waits
                        )
            return
        if decision.message_class == "marketing":
            assert decision.decided_at.timestamp() >= person.snooze_until, "sent while snoozed"
            holdout = policy.holdout
            assert not in_holdout(decision.customer_id, holdout.share, holdout.salt)
        delivery = _delivery(decision)
        assert not _in_quiet_hours(person, policy, decision.channel, delivery), (
            f"{decision.channel} lands in quiet hours at {decision.send_after}"
        )

    follow(log, check)


def _in_quiet_hours(person: Person, policy: ContactPolicy, channel: str, at: float) -> bool:
    """Would a message on `channel` at `at` interrupt the person's quiet hours?"""
    default = policy.quiet_hours
    if channel in default.silent_channels:
        return False
    start, end, _ = person.quiet or (_minute(default.start), _minute(default.end), default.tz)
    # Always in the person's own zone (policy/locality.py has its own tests).
    tz, _ = locality.person_zone(person.clock, default.tz)
    local = datetime.fromtimestamp(at, zoneinfo.ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    return start <= minute < end if start <= end else minute >= start or minute < end


HARD_LIMITS = {"channel_blocked", "consent", "relationship_level", "not_interested"}
HARD_LIMITS |= {"expired", "no_channel"}


@configs
@PROPERTY
@given(scenario=scenarios())
def test_transactional_messages_are_only_stopped_by_hard_limits(
    config: str, scenario: Scenario
) -> None:
    """No cap, cooldown, fatigue, snooze, holdout or quiet hours ever stops a
    transactional message; consent only when its transactional consent was
    revoked."""
    engine = ENGINES[config]
    transactional = {a.id for a in engine.catalog.actions if a.message_class == "transactional"}
    log = drive(scenario, InMemory(engine))

    def check(person: Person, item: Processed, decision: Decision) -> None:
        if not isinstance(decision, Suppression):
            return
        for verdict in decision.candidates:
            if verdict.action_id not in transactional:
                continue
            assert set(verdict.reasons) <= HARD_LIMITS, verdict
            for channel, reasons in verdict.channel_reasons.items():
                if "consent" in reasons:
                    assert person.transactional_revoked[channel] is not None, verdict

    follow(log, check)


@configs
@PROPERTY
@given(scenario=scenarios())
def test_every_decision_explains_itself(config: str, scenario: Scenario) -> None:
    """A suppression names its reasons (each candidate at least one); an
    action names its model version, why it won, and is well formed."""
    engine = ENGINES[config]
    holdout = engine.policy.holdout
    log = drive(scenario, InMemory(engine))
    for item in log:
        for released in item.outcome.released:  # held actions due before this event
            assert (
                released.decided_at == item.now
                and released.customer_id == item.event["customer_id"]
            )
            if isinstance(released, Action):
                assert released.send_after is None and released.reasons[-1].startswith("held")
                assert released.decision_id == decision_id(
                    released.trigger_event_id, released.action_id
                )
                assert _delivery(released) < released.expires_at.timestamp()
            else:
                [verdict] = released.candidates
                assert released.reasons and verdict.reasons == released.reasons
                assert released.decision_id == decision_id(
                    released.trigger_event_id, verdict.action_id
                )
        decision = item.outcome.decision
        if decision is None:
            continue
        held = in_holdout(decision.customer_id, holdout.share, holdout.salt)
        assert decision.experiment_arm == ("holdout" if held else "treatment")
        assert decision.model_version == engine.scorer.version
        assert decision.trigger_event_id == item.event["event_id"]
        if not item.outcome.duplicate:  # a re-issue keeps its decision time (_check_reissue)
            assert decision.decided_at == item.now
        if isinstance(decision, Suppression):
            assert decision.reasons and decision.candidates
            union: set[str] = set()
            for verdict in decision.candidates:
                assert verdict.reasons, f"{verdict.action_id} ruled out without a reason"
                assert all(verdict.channel_reasons.values())
                union.update(verdict.reasons)
            assert set(decision.reasons) == union
            # What a held-out person would have got, whenever only the holdout stopped it.
            held_only = any(v.reasons == ["holdout"] for v in decision.candidates)
            assert (decision.would_be is not None) == held_only
        else:
            assert decision.reasons and all(decision.reasons)
            assert decision.decision_id == decision_id(item.event["event_id"], decision.action_id)
            assert 0 < decision.selection_probability <= 1
            if decision.send_after is not None:
                assert decision.send_after > decision.decided_at
            assert _delivery(decision) < decision.expires_at.timestamp()


@configs
@PROPERTY
@given(scenario=scenarios())
def test_a_redelivered_event_is_recognised_and_changes_nothing(
    config: str, scenario: Scenario
) -> None:
    """At-least-once delivery: an event id seen among a customer's last
    MAX_PROCESSED_IDS events, or a purchase whose order id is among their last
    MAX_ORDER_IDS orders, is a duplicate (no write, no record, at most the
    action it led to issued again with the same decision id, or withheld as a
    suppression once consent no longer allows it); any other is processed.
    Erasure forgets the ids with everything else."""
    recent: dict[str, list[str]] = {}
    orders: dict[str, list[str]] = {}
    first: dict[str, str] = {}  # event id -> decision id of its action
    worker = ThroughProcessor(ENGINES[config])
    for item, writes in zip(drive(scenario, worker), worker.writes, strict=True):
        seen = recent.setdefault(item.event["customer_id"], [])
        ordered = orders.setdefault(item.event["customer_id"], [])
        event_id, order_id = item.event["event_id"], item.event.get("order_id")
        decision = item.outcome.decision
        if item.outcome.dropped:  # stamped before an erasure: nothing stored
            assert writes == {}
            continue
        repeated = event_id in seen[-MAX_PROCESSED_IDS:] or order_id in ordered[-MAX_ORDER_IDS:]
        assert item.outcome.duplicate == repeated, event_id
        if item.outcome.duplicate:
            assert not item.outcome.records
            if isinstance(decision, Suppression):  # the copy withheld (Engine._withheld)
                assert first[event_id] == decision_id(event_id, decision.candidates[0].action_id)
            else:
                assert decision is None or decision.decision_id == first[event_id]
            assert writes == {}
            continue
        if isinstance(decision, Action):
            first[event_id] = decision.decision_id
        for released in item.outcome.released:  # a held trigger's action, when it went out
            if isinstance(released, Action):
                first[released.trigger_event_id] = released.decision_id
        if item.event["type"] == "erasure":
            seen.clear()
            ordered.clear()
        else:
            seen.append(event_id)
        if order_id is not None:
            ordered.append(order_id)


@configs
@settings(PROPERTY, max_examples=60)
@given(scenario=scenarios())
def test_decisions_replay_identically_and_survive_the_state_round_trip(
    config: str, scenario: Scenario
) -> None:
    """Same events, same clocks: byte-identical outputs and tables, through the
    Processor (bytes in, state through bytes after every event) and in memory."""
    engine = ENGINES[config]
    first, second = ThroughProcessor(engine), ThroughProcessor(engine)
    drive(scenario, first)
    drive(scenario, second)
    assert first.emitted == second.emitted
    assert first.tables == second.tables

    memory = InMemory(engine)
    log = drive(scenario, memory)
    assert len(log) == len(first.emitted)
    for item, emits in zip(log, first.emitted, strict=True):
        published = [v for kind, _, v in emits if not kind.startswith("actions.")]
        assert published == _encoded(item.outcome), item.event
    for subject, state in memory.states.items():
        parts = dict(first.tables.get(subject, {}))
        stored = decode_state(parts)
        if not parts.get("profile"):  # erased: the worker keeps when, as a marker
            marker = first.tables.get(erasure.marker_key(subject, None), {})
            kept = erasure.live_marker(marker.get(erasure.MARKER_TABLE), 0.0)
            stored.profile.erased_at = kept.erased_at if kept else 0.0
        assert encode_state(stored, set(TABLES)) == encode_state(state, set(TABLES)), subject

    rebuilt = InMemory(engine, round_trip=True)
    replayed = drive(scenario, rebuilt)
    for a, b in zip(log, replayed, strict=True):
        assert _encoded(a.outcome) == _encoded(b.outcome), a.event


def _encoded(outcome: Outcome) -> list[bytes]:
    records = [*outcome.released, outcome.decision, *outcome.records]
    return [encode(r) for r in records if r is not None]


LONG = settings(PROPERTY, max_examples=20, phases=[Phase.generate])  # no shrinking of 400 steps


@configs
@LONG
@given(scenario=scenarios(min_size=200, max_size=400))
def test_every_state_record_stays_within_its_bounds(config: str, scenario: Scenario) -> None:
    """Ring buffers and capped maps, never growing lists: after long
    histories every collection in the four records is within its limit."""
    engine = ENGINES[config]
    memory = InMemory(engine)
    drive(scenario, memory)
    for state in memory.states.values():
        recency, fatigue, profile = state.recency, state.fatigue, state.profile
        assert len(recency.recent_views) <= RECENT_VIEWS
        assert len(recency.affinity) <= MAX_CATEGORIES
        assert len(recency.last_purchase) <= MAX_CATEGORIES
        assert len(recency.last_seen) <= len(CLICK_TYPES) + 1
        assert len(fatigue.contacts) <= MAX_CONTACTS
        assert len(fatigue.last_action) <= len(engine.catalog.actions)
        assert set(fatigue.sent) | set(fatigue.engaged) <= set(CHANNELS)
        assert len(state.consent.entries) <= 5 * 3  # (4 channels + all) x 3 purposes
        assert len(profile.processed) <= 4 * MAX_PROCESSED_IDS


@configs
@LONG
@given(scenario=scenarios(min_size=200, max_size=400))
def test_state_size_has_a_hard_bound(config: str, scenario: Scenario) -> None:
    """After long, adversarial histories (every channel x purpose consented,
    every category bought) a customer's four records stay under 2 KB as the
    tables store them. The 1 KB target is for realistic customers and is
    measured by `python -m bench.engine` (mean state size)."""
    engine = ENGINES[config]
    memory = InMemory(engine)
    drive(scenario, memory)
    for subject, state in memory.states.items():
        sizes = {t: len(b) for t, b in encode_state(state, set(TABLES)).items()}
        assert sum(sizes.values()) < 2048, f"{subject}: {sum(sizes.values())} bytes {sizes}"
