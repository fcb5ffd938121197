"""Synthetic upstream traffic: a seeded, realistic mix of input events for many customers.

The one traffic generator of the project. The benchmarks (bench/) time the
engine and the worker with it, and the reliability tier (tests/reliability)
drives workers through faults with it, so it lives in the installed package,
where both can import it (tests do not import from the unpackaged bench/
tree). It is not part of the shipped worker: no module of streams/ imports
it. Nor is it the simulator (lab/simulation.py), which models how shoppers
respond to the nudges they get, for evaluation; this only says what upstream
systems publish, deterministically from a seed.

`Generator` writes browsing sessions concentrated on a few categories per
person, carts and checkouts, purchases, consent grants and revocations,
preferences with quiet hours in several time zones, channel feedback of every
kind, anonymous visitors who later log in, a few erasures and at-least-once
redeliveries, with event times spread over a span (a fortnight by default) and
shaped by each person's local hour. `Mix` sets how much of each there is.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from nudge.policy.clock import DAY, HOUR

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday

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
ID_FIELDS = ("event_id", "customer_id", "anonymous_id")


@dataclass(frozen=True)
class Mix:
    """How much of each kind of traffic: shares of all generated events by
    input topic (clickstream takes the rest), except `anonymous_sessions`, a
    share of browsing sessions. The defaults are the shop the published
    benchmark figures were measured on."""

    purchases: float = 0.03
    consent: float = 0.03
    preferences: float = 0.01
    feedback: float = 0.05
    identity: float = 0.005  # anonymous visitors logging in
    anonymous_sessions: float = 0.06
    erasure: float = 0.00002
    duplicate: float = 0.002  # at-least-once redeliveries


#: Only what a shopper does on the site and at the till (sessions, carts,
#: purchases, redeliveries): the traffic a test adds its own consent story to.
SHOPPING = Mix(
    purchases=0.05,
    consent=0.0,
    preferences=0.0,
    feedback=0.0,
    identity=0.0,
    anonymous_sessions=0.0,
    erasure=0.0,
)


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
    """A generated event: `body` is the event as upstream publishes it, with
    `ts` (and a `snooze_until`) as epoch seconds, for the caller to format;
    `key` is the subject the topic is keyed by."""

    ts: float
    seq: int
    kind: str
    key: str
    body: dict


def product_id(category: str, n: int) -> str:
    return f"sku-{category[:4]}-{n:03d}"


def any_product(rng: random.Random) -> dict:
    """Product fields of one product of the shop: the category by popularity,
    the product and its price uniformly within it."""
    category = rng.choices(list(CATEGORIES), CATEGORY_WEIGHTS)[0]
    low, high, count = CATEGORIES[category]
    return {
        "product_id": product_id(category, rng.randrange(count)),
        "category": category,
        "price": round(rng.uniform(low, high), 2),
    }


def consent(
    customer_id: str,
    event_id: str,
    ts: float | str,
    channel: str,
    status: str = "granted",
    source: str = "signup",
    purpose: str = "marketing",
) -> dict:
    """A consent event's body."""
    return {
        "event_id": event_id,
        "type": "consent",
        "customer_id": customer_id,
        "ts": ts,
        "channel": channel,
        "purpose": purpose,
        "status": status,
        "source": source,
    }


def iso(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds, as upstream systems write it."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_prefix(body: dict, prefix: str) -> dict:
    """A copy of `body` whose event and subject ids start with `prefix`: the
    same traffic for fresh customers (each trial or test its own)."""
    body = dict(body)
    for name in ID_FIELDS:
        if name in body:
            body[name] = f"{prefix}{body[name]}"
    return body


class Generator:
    """Seeded generator of a realistic input stream (see the module docstring)."""

    def __init__(
        self,
        customers: int,
        events: int,
        seed: int,
        days: float = 14.0,
        mix: Mix = Mix(),  # frozen: one shared default is safe
        start: datetime = START,
    ) -> None:
        if customers < 1 or events < 1:
            raise ValueError("customers and events must be positive")
        self.n_customers = customers
        self.n_events = events
        self.mix = mix
        self.rng = random.Random(seed)
        self.seed = seed
        self.start = start.timestamp()
        self.span = days * DAY
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.raw: list[Raw] = []
        self.customers = [self._customer(i) for i in range(customers)]
        # Heavy-tailed activity: most people visit now and then, a few very often
        # (capped at 40x the least active, so nobody behaves like a bot).
        weights = [min(self.rng.paretovariate(1.8), 40.0) for _ in self.customers]
        self._cum = list(itertools.accumulate(weights))
        self.products = {
            category: [product_id(category, n) for n in range(count)]
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
        day = rng.randrange(max(1, int(self.span // DAY)))
        local_hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        t = day * DAY + (local_hour - offset_hours) * HOUR + rng.uniform(0, HOUR)
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

    def generate(self) -> list[Raw]:
        """Every event, in event-time order (ties in the order they were made)."""
        rng = self.rng
        n = self.n_events
        mix = self.mix
        budget = {
            "purchases": round(n * mix.purchases),
            "consent": round(n * mix.consent),
            "preferences": round(n * mix.preferences),
            "feedback": round(n * mix.feedback),
        }
        n_identity = round(n * mix.identity)
        n_erasure = round(n * mix.erasure)
        n_duplicate = round(n * mix.duplicate)
        n_click = n - sum(budget.values()) - n_identity - n_erasure - n_duplicate

        sessions: list[Session] = []
        anonymous = 0
        identified = 0
        while len(self.raw) < n_click:
            if rng.random() < mix.anonymous_sessions:
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
        self.raw.sort(key=lambda r: (r.ts, r.seq))
        return self.raw

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
                ts = (customer.first_seen or self.start) - rng.uniform(30, HOUR)
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
        body = consent(customer.id, self._event_id(), ts, channel, status, source, purpose)
        self._add(ts, "consent", customer.id, body)

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
            body["snooze_until"] = ts + rng.uniform(1, 10) * DAY
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
