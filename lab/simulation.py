"""A simulated customer population that reacts to being contacted.

Why: what nudge promises (fewer messages, at better moments, to the right
people) can only be judged against customers who buy on their own, respond
to relevant and well-timed messages, and get annoyed by the rest. This world
is seeded and reproducible, knows nothing about Kafka or the engine, and
talks to a policy only through events and action dicts:

- People of hidden archetypes browse, search, fill and abandon carts, buy,
  grant consent, state preferences and log in, in their own time zone.
  Existing customers arrive with their history (signup, consent, past orders)
  dated before the window; new visitors start anonymous and sign up later.
- Every input event goes to `policy.decide(kind, event, now)`. Each action it
  returns reaches the person at its send time (a suppression it returns is
  only logged), and `respond` turns it into channel feedback after a
  realistic delay, and sometimes a visit and an order.
- Annoyance builds with contacts per day and per week, more for messages that
  wake people up, miss their interests or promote what they just bought; it
  lowers attention and leads to unsubscribes, and on heavy over-contact to
  complaints.
- People also buy without any message (organic purchases, abandoned carts
  they come back to, air filters every ~90 days), so uplift is measurable. A
  message clicked just before an order the person was about to place anyway
  takes the credit for it: last-touch attribution, as channels report it.

Each person draws from two generators: one for their own life, one for their
reactions to messages. Two policies run on the same seed therefore meet the
same people doing the same things until a message changes what they do.
"""

from __future__ import annotations

import heapq
import math
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

import numpy as np

from nudge.lab.shop import CATEGORIES, HOUR_WEIGHTS, PAGES, ZONES
from nudge.lab.shoppers import (
    ARCHETYPES,
    ATTENTION_FATIGUE,
    CHANNEL_IRRITATION,
    CHANNEL_NAMES,
    CLICK_BY_CHANNEL,
    CLICK_FATIGUE,
    DELIVERY_DELAY,
    IGNORED_AFTER,
    INTERRUPTING,
    OPT_OUT_GROWTH,
    UNSUBSCRIBE_BASE,
    PendingOrder,
    Person,
)
from nudge.policy.clock import DAY, HOUR, MINUTE
from nudge.schemas.eventlog import LoggedEvent

if TYPE_CHECKING:
    from nudge.lab.baselines import DecisionPolicy

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday in spring: garden season
PROCESSING_DELAY = 0.05  # a policy decides 50 ms after the event happened
HISTORY_DAYS = 720  # existing customers signed up within the last two years
EXISTING_SHARE = 0.8  # the rest are new visitors who start anonymous


# -- the simulation ------------------------------------------------------------------------

# What sits in the event heap, besides (time, sequence):
EMIT, VISIT, DELIVER, REPLENISH, RETURN, RELEASE = range(6)


class Simulation:
    """A seeded world of `population_size` people over `days` from `start`.

    `run(policy)` plays it once and yields the event log; build a new
    Simulation (same arguments) to play the same world against another policy.
    """

    def __init__(
        self, population_size: int, days: float, seed: int, start: datetime = START
    ) -> None:
        if population_size < 1 or days <= 0:
            raise ValueError("population_size and days must be positive")
        self.seed = seed
        self.start = start.timestamp()
        self.end = self.start + days * DAY
        self.clock = self.start - HISTORY_DAYS * DAY  # the event time reached so far
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._event_ids = 0
        self._order_ids = 0
        self._started = False
        self._captured: list[tuple[float, int, Any]] | None = None
        self.products = self._make_products(np.random.default_rng([seed, 0]))
        population = np.random.default_rng([seed, 1])
        self.people = [self._make_person(i, population) for i in range(population_size)]
        self.by_id = {p.customer_id: p for p in self.people}

    # -- running -------------------------------------------------------------------------

    def run(self, policy: DecisionPolicy) -> Iterator[LoggedEvent]:
        """Play the world: every input event, then the actions the policy takes
        on it, in the order they happen."""
        if self._started:
            raise RuntimeError("a Simulation runs once; build a new one with the same seed")
        self._started = True
        for person in self.people:
            self._begin(person)
        releases: set[float] = set()  # when a RELEASE is in the heap
        next_due = getattr(policy, "next_due", None)
        while self._heap:
            t, _, tag, payload = heapq.heappop(self._heap)
            if t >= self.end:
                break
            self.clock = t
            if tag == EMIT:
                kind, event, person = payload
                self._observe(person, kind, event, t)
                yield LoggedEvent(kind, event)
                now = max(t, self.start) + PROCESSING_DELAY
                for action in policy.decide(kind, event, _utc(now)):
                    if action.get("kind") == "suppression":  # logged, never delivered
                        yield LoggedEvent("suppressions", action)
                        continue
                    yield LoggedEvent("actions", action)
                    self._push(max(now, delivery_time(action)), DELIVER, action)
            elif tag == RELEASE:  # the worker's timer: held actions go out when due
                releases.discard(t)
                for action in policy.release(_utc(t)):  # type: ignore[attr-defined]
                    if action.get("kind") == "suppression":  # withdrawn: logged only
                        yield LoggedEvent("suppressions", action)
                        continue
                    yield LoggedEvent("actions", action)
                    self._push(max(t, delivery_time(action)), DELIVER, action)
            elif tag == DELIVER:
                self._react(payload, t)
            elif tag == VISIT:
                self._visit(payload, t)
                self._push(self._next_visit(payload, t), VISIT, payload)
            elif tag == REPLENISH:
                person, version = payload
                if version == person.filter_version:
                    self._replenish(person, t)
            elif tag == RETURN:
                person, version = payload
                if version == person.cart_version and person.cart:
                    self._return_to_cart(person, t)
            if next_due is not None and tag in (EMIT, RELEASE):
                due = next_due()
                if due is not None and (at := max(due, t)) not in releases:
                    releases.add(at)
                    self._push(at, RELEASE, None)

    def respond(self, action: dict[str, Any]) -> list[LoggedEvent]:
        """The person's reaction to one action, as input events (channel
        feedback, and the visit and order a click may lead to), in time order.
        The action reaches them at its `send_after`, else its `decided_at`."""
        self._captured = []
        try:
            self._react(action, delivery_time(action))
            caught = sorted(self._captured, key=lambda entry: entry[:2])
        finally:
            self._captured = None
        records = []
        for t, _, (kind, event, person) in caught:
            self._observe(person, kind, event, t)
            records.append(LoggedEvent(kind, event))
        return records

    def _push(self, t: float, tag: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, tag, payload))

    def _emit(self, person: Person, t: float, kind: str, event: dict[str, Any]) -> None:
        self._event_ids += 1
        event = {"event_id": f"ev-{self._event_ids:09d}", "ts": _iso(t), **event}
        if self._captured is not None:  # respond() hands events back instead
            self._seq += 1
            self._captured.append((t, self._seq, (kind, event, person)))
        else:
            self._push(t, EMIT, (kind, event, person))

    def _click(self, person: Person, t: float, type_: str, **fields: Any) -> None:
        self._emit(person, t, "clickstream", {"type": type_, **person.subject(), **fields})

    def _feedback(self, person: Person, t: float, type_: str, action: dict, **extra: Any) -> None:
        event = {
            "type": type_,
            "customer_id": person.customer_id,
            "channel": action["channel"],
            "decision_id": action["decision_id"],
            "action_id": action["action_id"],
            **extra,
        }
        self._emit(person, t, "feedback", event)

    def _observe(self, person: Person, kind: str, event: dict[str, Any], t: float) -> None:
        """What the person's own events change about them, when they happen."""
        kind_type = event["type"]
        if kind == "clickstream":
            person.in_session_until = max(person.in_session_until, t + 10 * MINUTE)
            if kind_type == "add_to_cart":
                if not person.cart:
                    person.cart_since = t
                item = {k: event[k] for k in ("product_id", "category", "price", "quantity")}
                person.cart.append(item)
                person.cart_version += 1
            elif kind_type == "remove_from_cart":
                product = event["product_id"]
                person.cart = [item for item in person.cart if item["product_id"] != product]
                person.cart_version += 1
            elif kind_type == "checkout_started":
                person.checkout_until = t + 15 * MINUTE
        elif kind == "purchases":
            self._bought(person, event, t)
        elif kind == "consent" and event["purpose"] == "marketing":
            channels = CHANNEL_NAMES if event["channel"] == "all" else (event["channel"],)
            for channel in channels:
                person.consent[channel] = event["status"]
        elif kind_type in ("unsubscribed", "complained"):
            person.consent[event["channel"]] = "revoked"

    def _bought(self, person: Person, event: dict[str, Any], t: float) -> None:
        for item in event["items"]:
            person.last_bought[item["category"]] = t
        if person.pending is not None and person.pending.order_id == event["order_id"]:
            person.pending = None
        person.cart.clear()
        person.cart_version += 1
        bought_filters = any(item["category"] == "air_filters" for item in event["items"])
        if bought_filters and person.filter_cycle:
            cycle = person.filter_cycle * person.life.lognormal(0.0, 0.08)
            person.filter_due = t + cycle * DAY
            person.filter_version += 1
            # Some reorder a little early, most a few days late, a few forget for weeks.
            late = max(-5.0, person.life.normal(4.0, 7.0))
            self._push(person.filter_due + late * DAY, REPLENISH, (person, person.filter_version))

    # -- the world before the window ------------------------------------------------------

    def _make_products(self, rng: np.random.Generator) -> dict[str, list[tuple[str, float]]]:
        products = {}
        for name, category in CATEGORIES.items():
            low, high = math.log(category.low), math.log(category.high)
            prices = np.exp(rng.uniform(low, high, category.products))
            products[name] = [
                (f"sku-{name[:5]}-{n:03d}", round(float(prices[n]), 2))
                for n in range(category.products)
            ]
        return products

    def _make_person(self, index: int, rng: np.random.Generator) -> Person:
        archetype = ARCHETYPES[rng.choice(len(ARCHETYPES), p=[a.share for a in ARCHETYPES])]
        weights = dict(archetype.categories)
        if not weights:
            weights = {str(rng.choice(list(CATEGORIES)[2:])): 1.0}
        for name in weights:
            weights[name] *= rng.lognormal(0.0, 0.4)
        if rng.random() < 0.25:  # a side interest outside the archetype
            weights.setdefault(str(rng.choice(list(CATEGORIES)[2:])), 0.5)
        strongest = max(weights.values())
        interests = {name: w / strongest for name, w in weights.items()}
        zone = str(rng.choice(list(ZONES), p=list(ZONES.values())))
        sleep_start = int(rng.normal(23 * 60, 50)) % (24 * 60)
        sleep_end = int(rng.normal(7 * 60, 40)) % (24 * 60)
        reachable = ["email"]
        if rng.random() < 0.45:
            reachable.append("push")  # has the app
        if rng.random() < 0.5:
            reachable.append("sms")  # gave a phone number
        person = Person(
            index=index,
            customer_id=f"cust-{index:06d}",
            archetype=archetype,
            zone=zoneinfo.ZoneInfo(zone),
            interests=interests,
            opens={c: min(0.95, p * rng.lognormal(0.0, 0.3)) for c, p in archetype.opens.items()},
            sleep=(sleep_start, sleep_end),
            sessions_per_week=archetype.sessions_per_week * rng.lognormal(0.0, 0.4),
            day_tolerance=1.5 * archetype.patience * rng.lognormal(0.0, 0.3),
            week_tolerance=5.0 * archetype.patience * rng.lognormal(0.0, 0.3),
            touchiness=archetype.touchiness * rng.lognormal(0.0, 0.3),
            reachable=reachable,
            life=np.random.default_rng([self.seed, 2, index]),
            luck=np.random.default_rng([self.seed, 3, index]),
            bad_email=rng.random() < 0.02,
        )
        if rng.random() < archetype.purifier_share:
            person.filter_cycle = float(rng.normal(90, 10))
            person.interests["air_filters"] = 0.15  # checks prices now and then
            person.interests.setdefault("air_purifiers", 0.3)
        person.anonymous_id = self._anonymous_id(person)
        return person

    def _anonymous_id(self, person: Person) -> str:
        """A fresh device id that does not reveal whose it is."""
        self._seq += 1
        digest = blake2b(f"{self.seed}:{person.index}:{self._seq}".encode(), digest_size=8)
        return f"anon-{digest.hexdigest()}"

    def _begin(self, person: Person) -> None:
        """Schedule the person's history (existing customers) and first visit."""
        life = person.life
        if life.random() < EXISTING_SHARE:
            signup = self.start - life.uniform(14, HISTORY_DAYS) * DAY
            self._sign_up(person, signup)
            self._history(person, signup)
        elif person.filter_cycle:
            person.filter_due = self.start + life.uniform(0, person.filter_cycle) * DAY
            self._push(person.filter_due + abs(life.normal(4, 7)) * DAY, REPLENISH, (person, 0))
        self._push(self._next_visit(person, self.start), VISIT, person)

    def _history(self, person: Person, signup: float) -> None:
        """Past orders, imported when nudge goes live: purchase events dated back."""
        life = person.life
        since = max(signup, self.start - 365 * DAY)
        expected = person.archetype.orders_per_year * (self.start - since) / (365 * DAY)
        count = life.poisson(expected) if person.archetype.orders_per_year > 1 else 1
        for at in sorted(life.uniform(since + HOUR, self.start, count)):
            self._order(person, float(at), [self._item(person, self._category(person))])
        if person.filter_cycle:
            last = self.start - life.uniform(0, person.filter_cycle) * DAY
            self._order(person, max(last, signup + HOUR), [self._filter_item(person)])

    def _sign_up(self, person: Person, t: float) -> float:
        """Identify the anonymous visitor as a customer, then consent and
        preferences, as a signup form sends them. Returns the time it ends."""
        life = person.life
        person.identified = True
        person.logged_in = True
        self._emit(person, t, "identity", {
            "type": "identify",
            "customer_id": person.customer_id,
            "anonymous_id": person.anonymous_id,
            "reachable_channels": list(person.reachable),
        })  # fmt: skip
        t += 2.0
        draw = life.random()
        if draw < 0.72:
            self._consent(person, t, "email", "granted", "signup_form")
        elif draw < 0.84:  # double opt-in: confirmed a while later, or never
            self._consent(person, t, "email", "pending", "signup_form")
            if life.random() < 0.6:
                confirm = t + life.exponential(0.5 * DAY)
                self._consent(person, confirm, "email", "granted", "double_opt_in")
        if "push" in person.reachable and life.random() < 0.7:
            self._consent(person, t + 1, "push", "granted", "app_prompt")
        if "sms" in person.reachable and life.random() < 0.22:
            self._consent(person, t + 1, "sms", "granted", "checkout_checkbox")
        if life.random() < 0.7:
            self._consent(person, t + 1, "web", "granted", "cookie_banner")
        if life.random() < 0.05:
            self._emit(person, t + 2, "consent", {
                "type": "consent", "customer_id": person.customer_id, "channel": "all",
                "purpose": "profiling", "status": "revoked", "source": "privacy_center",
            })  # fmt: skip
        preferences = self._preferences(person)
        if preferences:
            self._emit(person, t + 3, "preferences", {
                "type": "preferences", "customer_id": person.customer_id, **preferences,
            })  # fmt: skip
        return t + 4

    def _consent(self, person: Person, t: float, channel: str, status: str, source: str) -> None:
        self._emit(person, t, "consent", {
            "type": "consent", "customer_id": person.customer_id, "channel": channel,
            "purpose": "marketing", "status": status, "source": source,
        })  # fmt: skip

    def _preferences(self, person: Person) -> dict[str, Any]:
        life = person.life
        preferences: dict[str, Any] = {}
        if life.random() < 0.25:
            start, end = (30 * round(m / 30) % (24 * 60) for m in person.sleep)
            preferences["quiet_hours"] = {
                "start": f"{start // 60:02d}:{start % 60:02d}",
                "end": f"{end // 60:02d}:{end % 60:02d}",
                "tz": person.zone.key,
            }
        if life.random() < 0.15:
            usable = [c for c in ("email", "push") if c in person.reachable]
            preferences["preferred_channel"] = max(usable, key=person.opens.__getitem__)
        if life.random() < 0.08 * person.touchiness:
            preferences["max_contacts_per_week"] = int(life.integers(1, 4))
        if life.random() < 0.15:
            top = sorted(person.interests, key=person.interests.__getitem__, reverse=True)
            preferences["interests"] = top[:2]
        return preferences

    # -- organic behaviour -------------------------------------------------------------------

    def _next_visit(self, person: Person, t: float) -> float:
        """Next visit of a Poisson process whose rate follows the local hour (thinning)."""
        life = person.life
        peak = max(HOUR_WEIGHTS)
        mean = sum(HOUR_WEIGHTS) / len(HOUR_WEIGHTS)
        rate = person.sessions_per_week / (7 * DAY) * peak / mean
        while True:
            t += life.exponential(1.0 / rate)
            if life.random() < HOUR_WEIGHTS[person.local(t).hour] / peak:
                return t

    def _category(self, person: Person) -> str:
        """A category to browse: mostly their interests, sometimes anything."""
        life = person.life
        if life.random() < 0.1:
            return str(life.choice(list(CATEGORIES)[1:]))
        names = list(person.interests)
        weights = np.array([person.interests[n] for n in names])
        return names[life.choice(len(names), p=weights / weights.sum())]

    def _item(self, person: Person, category: str) -> dict[str, Any]:
        life = person.life
        products = self.products[category]
        # A few best sellers get most of the attention.
        product, price = products[min(int(life.exponential(6)), len(products) - 1)]
        quantity = 1 if life.random() < 0.8 else 2
        return {"product_id": product, "category": category, "price": price, "quantity": quantity}

    def _filter_item(self, person: Person) -> dict[str, Any]:
        product, price = self.products["air_filters"][person.index % 8]  # their model's filter
        return {"product_id": product, "category": "air_filters", "price": price, "quantity": 2}

    def _start_session(self, person: Person, t: float, page: str) -> bool:
        """Open a visit; returns whether the person must still log in to buy."""
        life = person.life
        if person.identified:
            person.logged_in = life.random() < 0.85  # remembered on this device
            if not person.logged_in:
                person.anonymous_id = self._anonymous_id(person)
        elif life.random() < 0.3:
            person.anonymous_id = self._anonymous_id(person)  # cleared cookies
        self._click(person, t, "session_start", page=page)
        return not person.logged_in

    def _log_in(self, person: Person, t: float) -> float:
        """Log in (existing customer) or sign up (new visitor) mid-visit."""
        if not person.identified:
            return self._sign_up(person, t)
        person.logged_in = True
        self._emit(person, t, "identity", {
            "type": "identify", "customer_id": person.customer_id,
            "anonymous_id": person.anonymous_id, "reachable_channels": list(person.reachable),
        })  # fmt: skip
        return t + 1.0

    def _visit(self, person: Person, t: float) -> None:
        """An organic visit: browsing concentrated on one category, maybe a
        search, a cart, a checkout and an order; or an abandoned cart."""
        if t < person.in_session_until:
            return  # already on the site (came from a message)
        life = person.life
        anonymous = self._start_session(person, t, str(life.choice(PAGES)))
        focus = self._category(person)
        cart_rate = person.archetype.cart_rate
        if focus == "air_filters":
            cart_rate = 0.0  # filters are bought when due (see _replenish)
        else:
            cart_rate *= person.satiation(focus, t)
        viewed = []
        for _ in range(1 + life.poisson(4)):
            t += 5 + life.exponential(45)
            draw = life.random()
            if anonymous and draw < 0.05:
                t = self._log_in(person, t)
                anonymous = False
            elif draw < 0.65:
                category = focus if life.random() < 0.8 else self._category(person)
                item = self._item(person, category)
                viewed.append(item)
                self._click(person, t, "product_view", **_view(item))
            elif draw < 0.85:
                self._click(person, t, "page_view", page=str(life.choice(PAGES)))
            else:
                query = str(life.choice(CATEGORIES[focus].queries))
                self._click(person, t, "search", query=query)
        focus_items = [item for item in viewed if item["category"] == focus]
        if not focus_items or life.random() >= cart_rate:
            return
        t += 20 + life.exponential(40)
        self._click(person, t, "add_to_cart", **focus_items[-1])
        if life.random() < 0.1:  # changed their mind
            self._click(
                person, t + 10 + life.exponential(30), "remove_from_cart", **focus_items[-1]
            )
            return
        if life.random() < 0.55:
            t += 30 + life.exponential(60)
            if anonymous:
                t = self._log_in(person, t)
            self._checkout(person, t, [*person.cart, focus_items[-1]], buys=life.random() < 0.7)
        elif life.random() < 0.3:  # comes back for the cart later
            self._push(t + life.exponential(1.5 * DAY), RETURN, (person, person.cart_version + 1))

    def _checkout(self, person: Person, t: float, items: list[dict], buys: bool) -> None:
        self._click(person, t, "checkout_started", page="/checkout")
        if buys:
            t += 60 + person.life.exponential(120)
            order_id = self._order(person, t, items)
            value = sum(i["price"] * i["quantity"] for i in items)
            person.pending = PendingOrder(t, order_id, round(value, 2))

    def _order(self, person: Person, t: float, items: list[dict]) -> str:
        self._order_ids += 1
        order_id = f"ord-{self._order_ids:08d}"
        self._emit(person, t, "purchases", {
            "type": "purchase", "customer_id": person.customer_id, "order_id": order_id,
            "items": items, "currency": "EUR",
        })  # fmt: skip
        return order_id

    def _return_to_cart(self, person: Person, t: float) -> None:
        """Back for the abandoned cart: straight to checkout, usually buying."""
        if t < person.in_session_until:
            return
        anonymous = self._start_session(person, t, "/cart")
        t += 30 + person.life.exponential(60)
        if anonymous:
            t = self._log_in(person, t)
        self._checkout(person, t, list(person.cart), buys=person.life.random() < 0.8)

    def _replenish(self, person: Person, t: float) -> None:
        """The filter is dirty: look up the right one and buy it."""
        life = person.life
        t = person.awake_at(t)
        anonymous = self._start_session(person, t, "/")
        t += 10 + life.exponential(30)
        self._click(person, t, "search", query="air filter")
        item = self._filter_item(person)
        t += 10 + life.exponential(30)
        self._click(person, t, "product_view", **_view(item))
        t += 10 + life.exponential(30)
        self._click(person, t, "add_to_cart", **item)
        if anonymous:
            t = self._log_in(person, t + 5)
        self._checkout(person, t + 20, [*person.cart, item], buys=True)

    # -- reactions to messages ---------------------------------------------------------------

    def _react(self, action: dict[str, Any], t: float) -> None:
        """Schedule the feedback (and any visit and order) one action causes."""
        person = self.by_id.get(action.get("customer_id", ""))
        if person is None:  # addressed to an anonymous id: no channel reaches them
            return
        channel = action["channel"]
        luck = person.luck
        if action.get("message_class") == "transactional":
            self._feedback(person, t + DELIVERY_DELAY[channel], "delivered", action)
            return
        if channel == "email" and person.bad_email:
            self._feedback(person, t + 30, "bounced", action)
            return
        if channel == "web" and t > person.in_session_until:
            self._feedback(person, t + IGNORED_AFTER["web"], "ignored", action)  # left already
            return
        category = action.get("category")
        timing = self._timing(person, action, t)
        click_lift, buy_lift, irritation = person.timing_lifts(timing, t)
        relevance = 1.0 if timing == "due" else person.relevance(category)
        woken = channel in INTERRUPTING and person.asleep(t)
        weight = CHANNEL_IRRITATION[channel] * irritation * (1.6 - relevance)
        if woken:
            weight *= 2.5
        elif person.asleep(t):
            weight *= 1.2
        if person.consent.get(channel) == "revoked":
            weight *= 3.0  # told you to stop
        person.annoy(t, weight)
        level = person.annoyance(t)
        delivered = t + DELIVERY_DELAY[channel] * (0.5 + luck.random())
        self._feedback(person, delivered, "delivered", action)
        seen_at = self._seen_at(person, channel, delivered)
        if self._opts_out(person, action, level, seen_at):
            return
        attention = 1.0 / (1.0 + ATTENTION_FATIGUE * level)
        seen = luck.random() < person.opens[channel] * attention * (0.6 if woken else 1.0)
        if not seen:
            if channel in ("push", "web") and luck.random() < 0.4:
                self._feedback(person, seen_at + luck.exponential(MINUTE), "dismissed", action)
            else:
                self._feedback(person, delivered + IGNORED_AFTER[channel], "ignored", action)
            return
        if channel != "sms":  # SMS reads are not reported
            self._feedback(person, seen_at, "opened", action)
        click = person.archetype.click_rate * CLICK_BY_CHANNEL[channel] * (0.15 + 0.85 * relevance)
        if luck.random() >= min(0.9, click * click_lift / (1.0 + CLICK_FATIGUE * level)):
            if channel in ("push", "web") and luck.random() < 0.5:
                self._feedback(person, seen_at + 5 + luck.exponential(20), "dismissed", action)
            return
        clicked = seen_at + 5 + luck.exponential(MINUTE)
        self._feedback(person, clicked, "clicked", action)
        self._click_through(person, action, clicked, timing, buy_lift)

    def _timing(self, person: Person, action: dict[str, Any], t: float) -> str:
        category = action.get("category")
        if category == "air_filters" and person.filter_cycle:
            if t - person.last_bought.get("air_filters", -math.inf) < 30 * DAY:
                return "just_bought"
            return "due" if person.filter_due - t <= 14 * DAY else "early"
        cart_categories = {item["category"] for item in person.cart}
        if person.cart and (action["action_id"] == "cart_reminder" or category in cart_categories):
            return "cart"
        if action["action_id"] == "checkout_help" and t <= person.checkout_until:
            return "checkout"
        if category and t - person.last_bought.get(category, -math.inf) < 7 * DAY:
            return "just_bought"
        return "normal"

    def _seen_at(self, person: Person, channel: str, delivered: float) -> float:
        luck = person.luck
        if channel == "web":
            return delivered + 2
        if channel == "email":  # read at some point of the day, after waking up
            return person.awake_at(delivered + luck.lognormal(math.log(2 * HOUR), 1.0))
        return person.awake_at(delivered + luck.exponential(10 * MINUTE))

    def _opts_out(self, person: Person, action: dict, level: float, at: float) -> bool:
        """Unsubscribe from the channel, or on heavy over-contact complain (spam report)."""
        channel = action["channel"]
        luck = person.luck
        if channel in ("email", "sms"):
            over = max(0.0, level - 2.0) ** OPT_OUT_GROWTH
            complain = person.touchiness * (0.00005 + 0.0004 * over)
            if luck.random() < min(0.2, complain):
                self._feedback(person, at + 5, "complained", action)
                return True
        growth = 1.0 + level**OPT_OUT_GROWTH
        unsubscribe = UNSUBSCRIBE_BASE[channel] * person.touchiness * growth
        if luck.random() < min(0.3, unsubscribe):
            self._feedback(person, at + 10, "unsubscribed", action)
            return True
        return False

    def _click_through(
        self,
        person: Person,
        action: dict[str, Any],
        t: float,
        timing: str,
        buy_lift: float,
    ) -> None:
        """The visit a click leads to, and maybe an order credited to the message."""
        luck = person.luck
        category = action.get("category")
        pending = person.pending
        person.logged_in = True  # links in messages carry the customer's login
        if action["channel"] != "web":
            self._click(person, t + 3, "session_start", page=f"/c/{category or 'home'}")
        t += 3
        item = None
        if category == "air_filters" and person.filter_cycle:
            item = self._filter_item(person)
        elif category in self.products:
            products = self.products[category]
            product, price = products[min(int(luck.exponential(6)), len(products) - 1)]
            item = {"product_id": product, "category": category, "price": price, "quantity": 1}
        if item is not None:
            t += 10 + luck.exponential(40)
            self._click(person, t, "product_view", **_view(item))
        if pending is not None and pending.at > t:
            # They were about to order anyway: the message takes the credit.
            if not pending.attributed:
                pending.attributed = True
                self._feedback(person, pending.at + 1, "converted", action, value=pending.value)
            return
        satiation = person.satiation(category, t) if category in CATEGORIES else 1.0
        if timing == "due":
            satiation = 1.0
        buy = person.archetype.buy_rate * buy_lift * satiation
        if luck.random() >= min(0.8, buy):
            return
        items = list(person.cart) if timing == "cart" else []
        if item is not None and not items:
            items = [item]
        if not items:
            return
        t += 20 + luck.exponential(60)
        if timing != "cart":
            self._click(person, t, "add_to_cart", **items[0])
        t += 30 + luck.exponential(90)
        self._click(person, t, "checkout_started", page="/checkout")
        t += 60 + luck.exponential(120)
        order_id = self._order(person, t, items)
        value = round(sum(i["price"] * i["quantity"] for i in items), 2)
        person.pending = PendingOrder(t, order_id, value, attributed=True)
        self._feedback(person, t + 1, "converted", action, value=value)


# -- helpers --------------------------------------------------------------------------------


def _view(item: dict[str, Any]) -> dict[str, Any]:
    return {"product_id": item["product_id"], "category": item["category"], "price": item["price"]}


def _iso(t: float) -> str:
    return _utc(t).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def delivery_time(action: dict[str, Any]) -> float:
    """When an action reaches the person: its send_after, else when decided."""
    return _epoch(action.get("send_after") or action["decided_at"])
