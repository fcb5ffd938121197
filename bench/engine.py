"""Benchmark of the pure engine: decisions per second and latency, without Kafka.

    python -m bench.engine [--customers 5000 --events 200000 --seed 7
                            --out bench/results/engine.json]

A seeded generator writes a realistic mix of input messages (JSON bytes, keyed
by subject id, event times advancing over a fortnight) for many customers:
browsing sessions concentrated on a few categories per person, carts and
checkouts, purchases, consent grants and revocations, preferences with quiet
hours in several time zones, channel feedback of every kind, anonymous
visitors who later log in, a few erasures and at-least-once redeliveries.

The messages go through `policy.processor.Processor` exactly as the Faust agent
calls it (streams/app.py): the state loader reads one dict per table holding
bytes, the writes go back as bytes (so decoding and encoding state is timed),
identity merges are fed back in as the worker's internal topic would, and
`now` is the event time + 50 ms. Publishing to Kafka is not included.

Two phases, each timed per message with `time.perf_counter_ns`:

1. mixed: the realistic stream above (after a warm-up). Most messages are not
   triggers, so it reports messages/s, and latency per message and per
   decision (a message that produced an action or a suppression).
2. triggers: only trigger events (session starts and product views in their
   favourite category) of customers with marketing consent, on the state the
   mixed phase left. Nearly every message is a decision, so this is the
   throughput the 20,000 decisions/s target refers to.

Targets (one core, no Kafka): >= 20,000 decisions/s and p99 decision latency < 1 ms.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import random
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.processor import MERGE_KIND, Processor
from nudge.policy.state import TABLES, decode_state
from nudge.schemas.outputs import Action, Suppression

REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOG = REPO_ROOT / "config" / "catalog.toml"
POLICY = REPO_ROOT / "config" / "policy.toml"
DEFAULT_OUT = (
    REPO_ROOT / ".results" / "bench" / "engine.json"
)  # published figures: --out bench/results/...

TARGET_DECISIONS_PER_SECOND = 20_000
TARGET_P99_US = 1_000.0

PROCESSING_DELAY = timedelta(milliseconds=50)  # now = event time + 50 ms
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
PARTITIONS = 8

# The retailer of config/catalog.toml: category -> (lowest price, highest price, products).
CATEGORIES: dict[str, tuple[float, float, int]] = {
    "air_filters": (12.0, 45.0, 40),
    "air_purifiers": (89.0, 499.0, 25),
    "garden": (5.0, 180.0, 120),
    "outdoor": (15.0, 650.0, 80),
    "appliances": (49.0, 899.0, 90),
    "kitchen": (4.0, 150.0, 150),
    "lighting": (9.0, 220.0, 100),
    "bathroom": (6.0, 300.0, 70),
    "bedding": (15.0, 260.0, 60),
    "storage": (8.0, 120.0, 50),
    "tools": (7.0, 390.0, 110),
    "decor": (5.0, 140.0, 130),
}
# Popularity of categories as someone's favourite.
CATEGORY_WEIGHTS = [6, 2, 9, 5, 4, 8, 6, 4, 4, 3, 6, 7]
# (IANA zone, rough UTC offset in hours for the activity pattern, share of customers)
ZONES = [
    ("Europe/Berlin", 1, 0.45),
    ("Europe/London", 0, 0.20),
    ("America/New_York", -5, 0.18),
    ("Asia/Tokyo", 9, 0.10),
    ("Australia/Sydney", 11, 0.07),
]
# Sessions by local hour: quiet at night, peaks at lunch and in the evening.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 8, 9, 8, 7, 7, 7, 8, 10, 12, 12, 10, 6, 3]
SEARCHES = ["hedge trimmer", "hepa filter", "led bulb", "garden hose", "duvet", "shelf", "drill"]
PAGES = ["/", "/sale", "/garden", "/inspiration", "/delivery", "/account", "/blog/spring"]
FEEDBACK_TYPES = {  # realistic funnel of what channels report back
    "delivered": 40,
    "opened": 22,
    "clicked": 10,
    "converted": 3,
    "ignored": 12,
    "dismissed": 8,
    "bounced": 2,
    "unsubscribed": 2,
    "complained": 1,
}
MARKETING_ACTIONS = [
    "cart_reminder",
    "checkout_help",
    "category_inspiration",
    "air_filter_replenishment",
    "garden_seasonal",
]
# Mix by input topic, as a share of all generated events (clickstream takes the rest).
MIX = {"purchases": 0.03, "consent": 0.03, "preferences": 0.01, "feedback": 0.05}
IDENTITY_SHARE = 0.005  # anonymous visitors logging in
ANONYMOUS_SESSION_SHARE = 0.06
ERASURE_SHARE = 0.00002
DUPLICATE_SHARE = 0.002  # at-least-once redeliveries


@dataclass(slots=True)
class Message:
    """One input message as the agent sees it."""

    kind: str
    key: bytes
    value: bytes
    now: datetime
    source: tuple[str, int, int]


@dataclass(slots=True)
class Customer:
    id: str
    zone: str
    offset_hours: int
    favourites: list[str]
    favourite_weights: list[float]
    grants: list[str]  # channels the person grants marketing consent on
    first_seen: float | None = None


@dataclass(slots=True)
class Session:
    subject: str
    customer: Customer | None  # None: an anonymous visitor
    start: float
    end: float
    cart: list[dict]
    checkout: bool


@dataclass
class Raw:
    """A generated event before encoding: sorted by time, then encoded."""

    ts: float
    seq: int
    kind: str
    key: str
    body: dict


class Generator:
    """Seeded generator of a realistic input stream (see the module docstring)."""

    def __init__(self, customers: int, events: int, seed: int, days: float = 14.0) -> None:
        if customers < 1 or events < 1:
            raise ValueError("customers and events must be positive")
        self.n_customers = customers
        self.n_events = events
        self.rng = random.Random(seed)
        self.seed = seed
        self.start = START.timestamp()
        self.span = days * 86400.0
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.raw: list[Raw] = []
        self.customers = [self._customer(i) for i in range(customers)]
        # Heavy-tailed activity: most people visit now and then, a few very often
        # (capped at 40x the least active, so nobody behaves like a bot).
        weights = [min(self.rng.paretovariate(1.8), 40.0) for _ in self.customers]
        self._cum = list(itertools.accumulate(weights))
        self.products = {
            category: [f"sku-{category[:4]}-{n:03d}" for n in range(count)]
            for category, (_low, _high, count) in CATEGORIES.items()
        }
        self.prices = {
            product: round(self.rng.uniform(low, high), 2)
            for category, (low, high, _count) in CATEGORIES.items()
            for product in self.products[category]
        }

    # -- building blocks ---------------------------------------------------------------

    def _customer(self, i: int) -> Customer:
        rng = self.rng
        zone, offset, _share = rng.choices(ZONES, weights=[z[2] for z in ZONES])[0]
        favourites = []
        while len(favourites) < rng.choice((2, 2, 3, 3, 4)):
            category = rng.choices(list(CATEGORIES), weights=CATEGORY_WEIGHTS)[0]
            if category not in favourites:
                favourites.append(category)
        odds = {"email": 0.7, "push": 0.45, "web": 0.35, "sms": 0.12}
        grants = [channel for channel, p in odds.items() if rng.random() < p]
        if rng.random() < 0.1:
            grants = []  # never opts in
        return Customer(
            id=f"cust-{i:06d}",
            zone=zone,
            offset_hours=offset,
            favourites=favourites,
            favourite_weights=[0.6, 0.25, 0.1, 0.05][: len(favourites)],
            grants=grants,
        )

    def _pick_customer(self) -> Customer:
        x = self.rng.random() * self._cum[-1]
        return self.customers[bisect.bisect_right(self._cum, x)]

    def _event_id(self) -> str:
        return f"ev-{self.seed}-{next(self._ids):08d}"

    def _add(self, ts: float, kind: str, key: str, body: dict) -> None:
        self.raw.append(Raw(ts, next(self._seq), kind, key, body))

    def _session_time(self, offset_hours: int) -> float:
        rng = self.rng
        day = rng.randrange(max(1, int(self.span // 86400)))
        local_hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        t = day * 86400 + (local_hour - offset_hours) * 3600 + rng.uniform(0, 3600)
        return self.start + (t % self.span)

    def _category(self, customer: Customer | None) -> str:
        rng = self.rng
        if customer is None or rng.random() < 0.12:  # browsing outside one's favourites
            return rng.choices(list(CATEGORIES), weights=CATEGORY_WEIGHTS)[0]
        return rng.choices(customer.favourites, weights=customer.favourite_weights)[0]

    def _product(self, category: str) -> tuple[str, float]:
        products = self.products[category]
        # A few best sellers per category get most views.
        index = min(int(self.rng.expovariate(1 / 6)), len(products) - 1)
        product = products[index]
        return product, self.prices[product]

    @staticmethod
    def _subject(customer: Customer | None, anonymous_id: str | None) -> dict:
        if customer is not None:
            return {"customer_id": customer.id}
        return {"anonymous_id": anonymous_id}

    # -- sessions (clickstream) -------------------------------------------------------

    def _session(self, customer: Customer | None, anonymous_id: str | None) -> Session:
        rng = self.rng
        offset = customer.offset_hours if customer else rng.choice(ZONES)[1]
        t = self._session_time(offset)
        subject = customer.id if customer else anonymous_id or ""
        who = self._subject(customer, anonymous_id)
        session = Session(subject, customer, t, t, [], False)
        self._click(t, subject, who, "session_start", page=rng.choice(PAGES))
        last_viewed: tuple[str, str, float] | None = None
        for _ in range(1 + min(int(rng.expovariate(1 / 6)), 40)):
            t += 4 + rng.expovariate(1 / 40)
            r = rng.random()
            if r < 0.58 or (r >= 0.90 and not session.cart):  # no cart: browse on
                category = self._category(customer)
                product, price = self._product(category)
                last_viewed = (product, category, price)
                self._click(
                    t,
                    subject,
                    who,
                    "product_view",
                    product_id=product,
                    category=category,
                    price=price,
                )
            elif r < 0.70:
                self._click(t, subject, who, "page_view", page=rng.choice(PAGES))
            elif r < 0.78:
                self._click(t, subject, who, "search", query=rng.choice(SEARCHES))
            elif r < 0.90:
                if last_viewed is None:
                    category = self._category(customer)
                    product, price = self._product(category)
                    last_viewed = (product, category, price)
                product, category, price = last_viewed
                quantity = rng.choice((1, 1, 1, 2, 3))
                session.cart.append(
                    {
                        "product_id": product,
                        "category": category,
                        "price": price,
                        "quantity": quantity,
                    }
                )
                self._click(
                    t,
                    subject,
                    who,
                    "add_to_cart",
                    product_id=product,
                    category=category,
                    price=price,
                    quantity=quantity,
                )
            elif r < 0.93 and session.cart:
                item = session.cart.pop(rng.randrange(len(session.cart)))
                self._click(
                    t,
                    subject,
                    who,
                    "remove_from_cart",
                    product_id=item["product_id"],
                    category=item["category"],
                    price=item["price"],
                    quantity=item["quantity"],
                )
            else:
                session.checkout = True
                self._click(t, subject, who, "checkout_started", page="/checkout")
        session.end = t
        if customer is not None and (
            customer.first_seen is None or session.start < customer.first_seen
        ):
            customer.first_seen = session.start
        return session

    def _click(self, ts: float, key: str, who: dict, kind: str, **fields) -> None:
        body = {"event_id": self._event_id(), "type": kind, **who, "ts": ts, **fields}
        self._add(ts, "clickstream", key, body)

    # -- the stream -------------------------------------------------------------------

    def generate(self) -> list[Message]:
        """Every message, in event-time order, encoded and keyed."""
        rng = self.rng
        n = self.n_events
        budget = {kind: round(n * share) for kind, share in MIX.items()}
        n_identity = round(n * IDENTITY_SHARE)
        n_erasure = round(n * ERASURE_SHARE)
        n_duplicate = round(n * DUPLICATE_SHARE)
        n_click = n - sum(budget.values()) - n_identity - n_erasure - n_duplicate

        sessions: list[Session] = []
        anonymous = 0
        identified = 0
        while len(self.raw) < n_click:
            if rng.random() < ANONYMOUS_SESSION_SHARE:
                anonymous += 1
                anonymous_id = f"anon-{self.seed}-{anonymous:06d}"
                session = self._session(None, anonymous_id)
                if identified < n_identity:  # logs in at the end of the visit
                    identified += 1
                    self._identity(session)
            else:
                session = self._session(self._pick_customer(), None)
            sessions.append(session)
        del self.raw[n_click + identified :]  # the last session may overshoot

        seen = [c for c in self.customers if c.first_seen is not None]
        if not seen:
            seen = self.customers[:1]
            seen[0].first_seen = self.start
        self._purchases(sessions, budget["purchases"])
        self._consents(seen, budget["consent"])
        for _ in range(budget["preferences"]):
            self._preferences(rng.choice(seen))
        for _ in range(budget["feedback"]):
            self._feedback(self._pick_seen(seen))
        for customer in rng.sample(seen, min(n_erasure, len(seen))):
            ts = rng.uniform(self.start + self.span * 0.6, self.start + self.span)
            self._add(
                ts,
                "privacy",
                customer.id,
                {
                    "event_id": self._event_id(),
                    "type": "erasure",
                    "customer_id": customer.id,
                    "ts": ts,
                },
            )
        for original in rng.sample(self.raw, min(n_duplicate, len(self.raw))):
            self._add(
                original.ts + rng.uniform(0.5, 5.0), original.kind, original.key, original.body
            )
        return self._encode()

    def _pick_seen(self, seen: list[Customer]) -> Customer:
        for _ in range(20):
            customer = self._pick_customer()
            if customer.first_seen is not None:
                return customer
        return self.rng.choice(seen)

    def _after_first_seen(self, customer: Customer) -> float:
        first = customer.first_seen or self.start
        return self.rng.uniform(first, max(first + 60, self.start + self.span))

    def _identity(self, session: Session) -> None:
        rng = self.rng
        customer = self._pick_customer()
        ts = session.end + rng.uniform(5, 60)
        channels = rng.sample(["email", "push", "sms", "web"], rng.randint(1, 3))
        self._add(
            ts,
            "identity",
            session.subject,
            {
                "event_id": self._event_id(),
                "type": "identify",
                "customer_id": customer.id,
                "anonymous_id": session.subject,
                "ts": ts,
                "reachable_channels": channels,
            },
        )

    def _purchases(self, sessions: list[Session], count: int) -> None:
        rng = self.rng
        known = [s for s in sessions if s.customer is not None]
        checkouts = [s for s in known if s.cart and s.checkout]
        carts = [s for s in known if s.cart and not s.checkout]
        rng.shuffle(checkouts)
        rng.shuffle(carts)
        buying = (checkouts + carts)[:count]
        for session in buying:
            self._purchase(session.customer, session.end + rng.uniform(30, 600), session.cart)
        for _ in range(count - len(buying)):  # orders from the app, the phone ...
            customer = self._pick_customer()
            category = self._category(customer)
            product, price = self._product(category)
            item = {"product_id": product, "category": category, "price": price, "quantity": 1}
            ts = self._session_time(customer.offset_hours)
            customer.first_seen = min(customer.first_seen or ts, ts)
            self._purchase(customer, ts, [item])

    def _purchase(self, customer: Customer | None, ts: float, items: list[dict]) -> None:
        assert customer is not None
        self._add(
            ts,
            "purchases",
            customer.id,
            {
                "event_id": self._event_id(),
                "type": "purchase",
                "customer_id": customer.id,
                "ts": ts,
                "order_id": f"o-{self._event_id()}",
                "items": items[:200],
            },
        )

    def _consents(self, seen: list[Customer], budget: int) -> None:
        """Mostly grants when people sign up (just before their first visit),
        some revocations later, a few profiling opt-outs and pending double opt-ins."""
        rng = self.rng
        n_revoke = round(budget * 0.15)
        n_profiling = round(budget * 0.03)
        n_pending = round(budget * 0.04)
        grants_left = budget - n_revoke - n_profiling - n_pending
        granted: list[tuple[Customer, str, float]] = []
        for customer in rng.sample(seen, len(seen)):
            for channel in customer.grants:
                if grants_left <= 0:
                    break
                ts = (customer.first_seen or self.start) - rng.uniform(30, 3600)
                self._consent(customer, ts, channel, "marketing", "granted", "signup")
                granted.append((customer, channel, ts))
                grants_left -= 1
        for _ in range(n_revoke):
            if granted:
                customer, channel, at = rng.choice(granted)
                channel = "all" if rng.random() < 0.1 else channel
            else:
                customer, channel, at = rng.choice(seen), "email", self.start
            ts = rng.uniform(at, max(at + 60, self.start + self.span))
            source = rng.choice(("preference_center", "email_footer", "support"))
            self._consent(customer, ts, channel, "marketing", "revoked", source)
        for _ in range(n_profiling):
            customer = rng.choice(seen)
            self._consent(
                customer,
                self._after_first_seen(customer),
                "all",
                "profiling",
                "revoked",
                "privacy_center",
            )
        for _ in range(n_pending + max(0, grants_left)):
            customer = rng.choice(seen)
            self._consent(
                customer,
                self._after_first_seen(customer),
                "sms",
                "marketing",
                "pending",
                "checkout",
            )

    def _consent(
        self, customer: Customer, ts: float, channel: str, purpose: str, status: str, source: str
    ) -> None:
        self._add(
            ts,
            "consent",
            customer.id,
            {
                "event_id": self._event_id(),
                "type": "consent",
                "customer_id": customer.id,
                "ts": ts,
                "channel": channel,
                "purpose": purpose,
                "status": status,
                "source": source,
            },
        )

    def _preferences(self, customer: Customer) -> None:
        rng = self.rng
        ts = self._after_first_seen(customer)
        body: dict = {
            "event_id": self._event_id(),
            "type": "preferences",
            "customer_id": customer.id,
            "ts": ts,
        }
        if rng.random() < 0.5:
            body["quiet_hours"] = {
                "start": rng.choice(("21:00", "22:00", "22:30", "23:00")),
                "end": rng.choice(("06:30", "07:00", "08:00")),
                "tz": customer.zone,
            }
        if rng.random() < 0.4:
            body["preferred_channel"] = rng.choice(customer.grants or ["email"])
        if rng.random() < 0.2:
            body["max_contacts_per_week"] = rng.choice((1, 2, 3, 5))
        if rng.random() < 0.3:
            body["interests"] = rng.sample(["garden", "outdoor", "kitchen", "decor"], 2)
        if rng.random() < 0.08:
            body["snooze_until"] = ts + rng.uniform(1, 10) * 86400
        if len(body) == 4:
            body["preferred_channel"] = "email"
        self._add(ts, "preferences", customer.id, body)

    def _feedback(self, customer: Customer) -> None:
        rng = self.rng
        ts = self._after_first_seen(customer)
        kind = rng.choices(list(FEEDBACK_TYPES), weights=list(FEEDBACK_TYPES.values()))[0]
        channel = rng.choice(customer.grants or ["email", "push"])
        body = {
            "event_id": self._event_id(),
            "type": kind,
            "customer_id": customer.id,
            "ts": ts,
            "channel": channel,
            "decision_id": f"{rng.getrandbits(128):032x}",
            "action_id": rng.choice(MARKETING_ACTIONS),
        }
        if kind == "converted":
            body["value"] = round(rng.uniform(10, 200), 2)
        self._add(ts, "feedback", customer.id, body)

    def _encode(self) -> list[Message]:
        self.raw.sort(key=lambda r: (r.ts, r.seq))
        return encode_messages(self.raw)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_messages(raw: Iterable[Raw]) -> list[Message]:
    """JSON bytes with RFC 3339 times, keyed, with a (topic, partition, offset) source."""
    encoder = msgspec.json.Encoder()
    offsets: collections.Counter = collections.Counter()
    messages = []
    for r in raw:
        body = dict(r.body)
        body["ts"] = _iso(r.ts)
        if isinstance(body.get("snooze_until"), float):
            body["snooze_until"] = _iso(body["snooze_until"])
        key = r.key.encode()
        partition = zlib.crc32(key) % PARTITIONS
        topic = f"nudge.{r.kind}"
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] += 1
        now = datetime.fromtimestamp(r.ts, UTC) + PROCESSING_DELAY
        messages.append(Message(r.kind, key, encoder.encode(body), now, (topic, partition, offset)))
    return messages


def trigger_messages(
    tables: dict[str, dict[bytes, bytes]], after: float, count: int, seed: int
) -> list[Message]:
    """Only triggers, for customers with marketing consent on some channel:
    session starts, and product views in the person's strongest category."""
    rng = random.Random(seed * 7919 + 1)
    eligible: list[tuple[str, str | None]] = []
    for key, raw_consent in sorted(tables["consent"].items()):
        state = decode_state({"consent": raw_consent, "recency": tables["recency"].get(key)})
        entries = state.consent.entries
        overall = entries.get("all:marketing")
        if overall is not None and overall.status == "revoked":
            continue
        if any(k.endswith(":marketing") and e.status == "granted" for k, e in entries.items()):
            affinity = state.recency.affinity
            top = max(affinity, key=affinity.__getitem__) if affinity else None
            eligible.append((key.decode(), top))
    if not eligible:
        return []
    products = {c: [f"sku-{c[:4]}-{n:03d}" for n in range(5)] for c in CATEGORIES}
    raw = []
    t = after + 60.0
    gap = 2 * 86400.0 / max(count, 1)  # spread over two days
    for i in range(count):
        customer, top = rng.choice(eligible)
        t += rng.expovariate(1 / gap)
        body: dict = {"event_id": f"tr-{seed}-{i:08d}", "customer_id": customer, "ts": t}
        if top is None or rng.random() < 0.4:
            body.update(type="session_start", page="/")
        else:
            body.update(
                type="product_view", product_id=rng.choice(products[top]), category=top, price=19.9
            )
        raw.append(Raw(t, i, "clickstream", customer, body))
    return encode_messages(raw)


# -- running and measuring -------------------------------------------------------------------


@dataclass
class PhaseStats:
    """What one phase measured; latencies in nanoseconds."""

    name: str
    latencies: list[int] = field(default_factory=list)
    decision_latencies: list[int] = field(default_factory=list)
    by_type: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    wall_ns: int = 0
    cpu_ns: int = 0  # process CPU time: what a busy neighbour on the core cannot inflate
    messages: int = 0
    merges: int = 0
    actions: collections.Counter = field(default_factory=collections.Counter)
    channels: collections.Counter = field(default_factory=collections.Counter)
    suppressions: int = 0
    suppression_reasons: collections.Counter = field(default_factory=collections.Counter)
    deadletters: collections.Counter = field(default_factory=collections.Counter)
    duplicates: int = 0
    mix: collections.Counter = field(default_factory=collections.Counter)

    @property
    def decisions(self) -> int:
        return sum(self.actions.values()) + self.suppressions

    def summary(self) -> dict:
        seconds, cpu, busy = self.wall_ns / 1e9, self.cpu_ns / 1e9, sum(self.latencies) / 1e9
        decisions = self.decisions
        return {
            "messages": self.messages,
            "merges_fed_back": self.merges,
            "decisions": decisions,
            "decision_share": round(decisions / self.messages, 4) if self.messages else 0.0,
            "actions": sum(self.actions.values()),
            "suppressions": self.suppressions,
            "duplicates": self.duplicates,
            "deadletters": sum(self.deadletters.values()),
            "deadletter_reasons": dict(self.deadletters),
            "wall_seconds": round(seconds, 4),
            "cpu_seconds": round(cpu, 4),
            "messages_per_second": rate(self.messages, seconds),
            "decisions_per_second": rate(decisions, seconds),
            "decisions_per_cpu_second": rate(decisions, cpu),
            "messages_per_busy_second": rate(self.messages, busy),
            "latency_us": latency_summary(self.latencies),
            "decision_latency_us": latency_summary(self.decision_latencies),
            "latency_by_type_us": {
                kind: {"count": len(values), **latency_summary(values, ("p50", "p99"))}
                for kind, values in sorted(self.by_type.items())
            },
            "actions_by_action": dict(self.actions.most_common()),
            "actions_by_channel": dict(self.channels.most_common()),
            "suppression_reasons": dict(self.suppression_reasons.most_common()),
            "input_mix": {k: round(v / self.messages, 4) for k, v in self.mix.most_common()}
            if self.messages
            else {},
        }


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def percentile(sorted_values: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return float(sorted_values[int(rank) - 1])


def latency_summary(
    values_ns: Sequence[int], which: Sequence[str] = ("p50", "p95", "p99", "max")
) -> dict[str, float]:
    """Microseconds; None where there is nothing to measure."""
    ordered = sorted(values_ns)
    points = {"p50": 50, "p95": 95, "p99": 99, "max": 100}
    out: dict[str, float | None] = {
        name: round(percentile(ordered, points[name]) / 1000, 1) if ordered else None
        for name in which
    }
    if "max" in which:
        out["mean"] = round(sum(ordered) / len(ordered) / 1000, 1) if ordered else None
    return out


def new_tables() -> dict[str, dict[bytes, bytes]]:
    return {name: {} for name in TABLES}


def run_phase(
    name: str,
    messages: Sequence[Message],
    processor: Processor,
    tables: dict[str, dict[bytes, bytes]],
    warmup: int = 0,
) -> PhaseStats:
    """Process every message like the agent does; time all but the first `warmup`.

    Identity merges the processor emits are processed right after the message
    that produced them, as the worker would consume them from its internal topic."""
    stats = PhaseStats(name)
    perf = time.perf_counter_ns
    process = processor.process

    def load(subject: str) -> dict[str, bytes | None]:
        subject_key = subject.encode()
        return {table: tables[table].get(subject_key) for table in TABLES}

    pending: collections.deque[Message] = collections.deque()
    feed = iter(messages)
    index = 0
    started = cpu_started = 0
    cpu = time.process_time_ns
    while True:
        if pending:
            message = pending.popleft()
        else:
            message = next(feed, None)
            if message is None:
                break
            index += 1
            if index == warmup + 1:
                started, cpu_started = perf(), cpu()
        t0 = perf()
        result = process(
            message.kind, message.key, message.value, message.source, load, message.now
        )
        if result.subject is not None:
            subject_key = result.subject.encode()
            for table, data in result.writes.items():
                if data is None:
                    tables[table].pop(subject_key, None)
                else:
                    tables[table][subject_key] = data
        elapsed = perf() - t0
        for emit in result.emits:
            if emit.kind == MERGE_KIND:
                pending.append(
                    Message(
                        MERGE_KIND,
                        emit.key or b"",
                        emit.value,
                        message.now,
                        ("nudge.identity-merges", 0, 0),
                    )
                )
        if index <= warmup:
            continue
        stats.messages += 1
        stats.latencies.append(elapsed)
        stats.mix[message.kind] += 1
        stats.by_type[result.event_type or "invalid"].append(elapsed)
        if message.kind == MERGE_KIND:
            stats.merges += 1
        if result.invalid_reason is not None:
            stats.deadletters[result.invalid_reason] += 1
            continue
        if result.duplicate and message.kind != MERGE_KIND:
            stats.duplicates += 1
        decision = result.outcome.decision if result.outcome else None
        if decision is None:
            continue
        stats.decision_latencies.append(elapsed)
        if isinstance(decision, Action):
            stats.actions[decision.action_id] += 1
            stats.channels[decision.channel] += 1
        elif isinstance(decision, Suppression):
            stats.suppressions += 1
            stats.suppression_reasons.update(decision.reasons)
    if started:
        stats.wall_ns, stats.cpu_ns = perf() - started, cpu() - cpu_started
    return stats


def state_sizes(tables: dict[str, dict[bytes, bytes]]) -> dict:
    """Encoded bytes per subject (all four tables), customers and anonymous visitors."""
    per_subject: collections.Counter = collections.Counter()
    per_table = {}
    for table, rows in tables.items():
        per_table[table] = round(sum(map(len, rows.values())) / len(rows), 1) if rows else 0.0
        for key, value in rows.items():
            per_subject[key] += len(value)
    customers = sorted(v for k, v in per_subject.items() if k.startswith(b"cust-"))
    return {
        "subjects": len(per_subject),
        "customers": len(customers),
        "mean_bytes_per_customer": round(sum(customers) / len(customers), 1) if customers else 0,
        "p99_bytes_per_customer": percentile(customers, 99) if customers else 0,
        "max_bytes_per_customer": max(customers, default=0),
        "mean_bytes_per_row_by_table": per_table,
    }


def machine_info(pinned: int | None) -> dict:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "nproc": os.cpu_count(),
        "pinned_core": pinned,
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "msgspec": msgspec.__version__,
        "git_commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def pin_to_one_core(core: int | None) -> int | None:
    """Pin this process to one core (default: the last one it may use)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if core is None else core
    try:
        os.sched_setaffinity(0, {chosen})
    except OSError:
        return None
    return chosen


def build_processor() -> Processor:
    return Processor(Engine(load_catalog(CATALOG), load_policy(POLICY)))


def run_benchmark(
    customers: int, events: int, seed: int, trigger_events: int, warmup: int | None
) -> tuple[dict, list[Message], list[Message]]:
    """Generate, run both phases; returns the result dict (without machine info)
    and the two streams (for profiling)."""
    began = time.perf_counter()
    messages = Generator(customers, events, seed).generate()
    generated = time.perf_counter() - began
    warmup = min(len(messages) // 10, 10_000) if warmup is None else warmup
    processor = build_processor()
    tables = new_tables()
    gc.collect()
    gc.freeze()  # the generated stream is harness data: keep it out of the worker's GC work
    mixed = run_phase("mixed", messages, processor, tables, warmup=warmup)
    sizes = state_sizes(tables)
    last_ts = max((m.now for m in messages), default=START).timestamp()
    triggers = trigger_messages(tables, last_ts, trigger_events, seed)
    gc.collect()
    gc.freeze()
    trigger_stats = run_phase("triggers", triggers, processor, tables)
    gc.unfreeze()
    mixed_summary = mixed.summary()
    trigger_summary = trigger_stats.summary()
    checks = {
        "trigger_decisions_per_second": {
            "target": f">= {TARGET_DECISIONS_PER_SECOND}",
            "value": trigger_summary["decisions_per_second"],
            "pass": trigger_summary["decisions_per_second"] >= TARGET_DECISIONS_PER_SECOND,
        },
        "trigger_decision_p99_us": p99_check(trigger_summary),
        "mixed_decision_p99_us": p99_check(mixed_summary),
    }
    result = {
        "benchmark": "engine",
        "description": "policy.processor.Processor on in-memory byte tables, no Kafka",
        "params": {
            "customers": customers,
            "events": events,
            "seed": seed,
            "trigger_events": trigger_events,
            "warmup_messages": warmup,
            "now": "event ts + 50 ms",
            "catalog": str(CATALOG.relative_to(REPO_ROOT)),
            "policy": str(POLICY.relative_to(REPO_ROOT)),
            "generation_seconds": round(generated, 2),
        },
        "mixed": mixed_summary,
        "triggers": trigger_summary,
        "state_size": sizes,
        "targets": checks,
        "pass": all(check["pass"] for check in checks.values()),
    }
    return result, messages, triggers


def p99_check(summary: dict) -> dict:
    p99 = summary["decision_latency_us"]["p99"]
    return {
        "target": f"< {TARGET_P99_US:g}",
        "value": p99,
        "pass": p99 is not None and p99 < TARGET_P99_US,
    }


def profile(
    messages: Sequence[Message], triggers: Sequence[Message], top: int = 15
) -> tuple[str, list[dict]]:
    """Both phases again on fresh tables under cProfile: the top functions."""
    processor = build_processor()
    tables = new_tables()
    profiler = cProfile.Profile()
    profiler.enable()
    run_phase("profile-mixed", messages, processor, tables)
    run_phase("profile-triggers", triggers, processor, tables)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    rows = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda item: item[1][2], reverse=True
    )[:top]:
        where = Path(filename)
        if REPO_ROOT in where.parents:
            where = where.relative_to(REPO_ROOT)
        rows.append(
            {
                "function": f"{where}:{line}({function})",
                "calls": calls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
            }
        )
    return out.getvalue(), rows


def render(result: dict) -> str:
    """A readable table of the figures."""
    lines = []
    params, machine = result["params"], result.get("machine", {})
    lines.append(
        f"nudge engine benchmark: {params['customers']} customers, {params['events']} events, "
        f"seed {params['seed']}, warm-up {params['warmup_messages']} messages"
    )
    if machine:
        lines.append(
            f"{machine['cpu_model']}, {machine['nproc']} CPUs, pinned to core "
            f"{machine['pinned_core']}, Python {machine['python']}"
        )
    header = f"{'':32}{'mixed stream':>16}{'triggers only':>16}"
    lines += ["", header, "-" * len(header)]
    mixed, trig = result["mixed"], result["triggers"]

    def row(label: str, a: object, b: object) -> None:
        lines.append(f"{label:32}{a!s:>16}{b!s:>16}")

    row("messages", mixed["messages"], trig["messages"])
    row(
        "decisions (share)",
        f"{mixed['decisions']} ({mixed['decision_share']:.0%})",
        f"{trig['decisions']} ({trig['decision_share']:.0%})",
    )
    row("  actions", mixed["actions"], trig["actions"])
    row("  suppressions", mixed["suppressions"], trig["suppressions"])
    row(
        "duplicates / deadletters",
        f"{mixed['duplicates']} / {mixed['deadletters']}",
        f"{trig['duplicates']} / {trig['deadletters']}",
    )
    row("messages/s", f"{mixed['messages_per_second']:,.0f}", f"{trig['messages_per_second']:,.0f}")
    row(
        "decisions/s",
        f"{mixed['decisions_per_second']:,.0f}",
        f"{trig['decisions_per_second']:,.0f}",
    )
    row(
        "decisions per CPU second",
        f"{mixed['decisions_per_cpu_second']:,.0f}",
        f"{trig['decisions_per_cpu_second']:,.0f}",
    )
    for label, key in (("per message", "latency_us"), ("per decision", "decision_latency_us")):
        for point in ("p50", "p95", "p99", "max"):
            row(f"latency {label} {point} (µs)", mixed[key][point], trig[key][point])
    lines.append("")
    lines.append("latency by input type, mixed stream (p50 / p99 µs):")
    for kind, figures in mixed["latency_by_type_us"].items():
        lines.append(f"  {kind:20}{figures['count']:>8}  {figures['p50']:>7} / {figures['p99']}")
    lines.append(
        "actions (mixed): " + ", ".join(f"{k} {v}" for k, v in mixed["actions_by_action"].items())
    )
    lines.append(
        "suppression reasons (mixed): "
        + ", ".join(f"{k} {v}" for k, v in mixed["suppression_reasons"].items())
    )
    lines.append(
        "suppression reasons (triggers): "
        + ", ".join(f"{k} {v}" for k, v in trig["suppression_reasons"].items())
    )
    sizes = result["state_size"]
    lines.append(
        f"state per customer: mean {sizes['mean_bytes_per_customer']} B, "
        f"p99 {sizes['p99_bytes_per_customer']:.0f} B, max {sizes['max_bytes_per_customer']} B "
        f"({sizes['customers']} customers, {sizes['subjects']} subjects)"
    )
    lines.append("")
    for name, check in result["targets"].items():
        verdict = "PASS" if check["pass"] else "FAIL"
        value = "n/a" if check["value"] is None else f"{check['value']:,}"
        lines.append(f"{verdict}  {name}: {value} (target {check['target']})")
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--trigger-events",
        type=int,
        default=None,
        help="messages in the triggers-only phase (default: events / 2)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed first messages (default: min(10%%, 10000))",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    parser.add_argument(
        "--profile", action="store_true", help="afterwards, rerun both phases under cProfile"
    )
    parser.add_argument("--quiet", action="store_true", help="no table on stdout")
    args = parser.parse_args(argv)

    pinned = None if args.no_pin else pin_to_one_core(args.core)
    trigger_events = args.events // 2 if args.trigger_events is None else args.trigger_events
    result, messages, triggers = run_benchmark(
        args.customers, args.events, args.seed, trigger_events, args.warmup
    )
    result["machine"] = machine_info(pinned)
    if args.profile:
        text, rows = profile(messages, triggers)
        result["profile_top_tottime"] = rows
        if not args.quiet:
            print(text)
    write_json(result, args.out)
    if not args.quiet:
        print(render(result))
        print(f"\nresult written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
